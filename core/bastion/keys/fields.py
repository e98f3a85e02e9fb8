"""Turning encryption of an existing field on or off, with its values migrated online.

The definition change takes effect at once (new writes are stored the new way) and, in
the same transaction, records a job; the job's batches then rewrite the existing values
(``bastion.keys.reencrypt.rewrite``: compare-and-set, resumable) from a background
thread, from `bastion keys migrate`, or from another process. While a field has a
running job, reads accept both states: plain text in an encrypted field, and ciphertext
in a plain one (only if it decrypts under the row's context). Without a job they are
strict: plain text in an encrypted field is an error, never silently accepted.

Only fields whose plain column holds text can change: an integer, decimal or date
column is typed on PostgreSQL, and ciphertext cannot live in it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import inspect, select, text, update
from sqlalchemy.engine import Connection

from bastion import audit
from bastion.db import db
from bastion.encryption import DecryptionError
from bastion.keys.cipher import EnvelopeCipher, version_of
from bastion.keys.keyring import DATA
from bastion.keys.models import ACTIVE, EncryptionJob, EncryptionKey
from bastion.keys.reencrypt import DEFAULT_BATCH_SIZE, Progress, Target, rewrite

log = logging.getLogger("bastion.keys")

ENCRYPT_FIELD = "encrypt_field"
DECRYPT_FIELD = "decrypt_field"
RUNNING = "running"
DONE = "done"
SUPERSEDED = "superseded"
#: Types whose plain column holds text on both databases.
TOGGLEABLE = frozenset({"text", "long_text", "email", "phone", "url"})
#: Passes over the column before giving up for now: a write by a process that had not
#: seen the change yet can land behind a pass; a later pass picks it up. The job is done
#: only after a pass found no value left in the old form; otherwise it stays running
#: and `bastion keys migrate` or the next start carries on.
MAX_PASSES = 20
#: Pause between passes that still found values: lets stale writers catch up.
PASS_PAUSE_SECONDS = 0.2
_THREADS = "bastion.keys.migrations"


def toggle_problem(label: str, field_type: str) -> str | None:
    """Why a field's encryption cannot be turned on or off, or None."""
    if field_type in TOGGLEABLE:
        return None
    kinds = ", ".join(sorted(TOGGLEABLE))
    return (
        f"{label}: the encryption of an existing {field_type} field cannot change, because "
        f"its column is typed; only {kinds} fields can. Add a new field with the encryption "
        "you want and copy the values over (for example by export and import)."
    )


def _now() -> datetime:
    return datetime.now(UTC)


def plan(object_name: str, field_name: str, *, encrypt: bool) -> None:
    """Record the migration in the caller's (the definition change's) transaction."""
    db.session.execute(
        update(EncryptionJob)
        .where(
            EncryptionJob.object_name == object_name,
            EncryptionJob.field_name == field_name,
            EncryptionJob.state == RUNNING,
        )
        .values(state=SUPERSEDED, finished_at=_now())
    )
    db.session.add(
        EncryptionJob(
            kind=ENCRYPT_FIELD if encrypt else DECRYPT_FIELD,
            object_name=object_name,
            field_name=field_name,
            state=RUNNING,
            migrated=0,
            started_at=_now(),
        )
    )
    audit.record(
        "keys.field_encrypt" if encrypt else "keys.field_decrypt",
        object_type=object_name,
        changes={"field": field_name},
    )


def prepare_column(connection: Connection, table_name: str, column: str) -> None:
    """On PostgreSQL, let the column hold ciphertext (longer than a varchar's limit).

    The column stays text when the field turns plain again: the field's max_length is
    enforced when values are checked, as on SQLite.
    """
    if connection.dialect.name != "postgresql":
        return
    found = [c for c in inspect(connection).get_columns(table_name) if c["name"] == column]
    if found and getattr(found[0]["type"], "length", None) is not None:
        quote = connection.dialect.identifier_preparer.quote
        connection.execute(
            text(f"ALTER TABLE {quote(table_name)} ALTER COLUMN {quote(column)} TYPE TEXT")
        )


# -- reading while a migration runs ---------------------------------------------------


def migrating(object_name: str, field_name: str) -> bool:
    """Whether the field has a running migration (asked only for values in the other state)."""
    cache: set[tuple[str, str]] | None = g.get("_bastion_migrating") if has_app_context() else None
    if cache is not None and (object_name, field_name) in cache:
        return True
    found = db.session.scalar(
        select(EncryptionJob.id)
        .where(
            EncryptionJob.object_name == object_name,
            EncryptionJob.field_name == field_name,
            EncryptionJob.state == RUNNING,
        )
        .limit(1)
    )
    if found is not None and has_app_context():
        # Only "yes" is remembered: both states read correctly while it is true.
        g.setdefault("_bastion_migrating", set()).add((object_name, field_name))
    return found is not None


def migrating_fields() -> set[tuple[str, str]]:
    """(object, field) of every running field migration."""
    rows = db.session.execute(
        select(EncryptionJob.object_name, EncryptionJob.field_name).where(
            EncryptionJob.state == RUNNING,
            EncryptionJob.kind.in_((ENCRYPT_FIELD, DECRYPT_FIELD)),
        )
    ).all()
    return {(o, f) for o, f in rows if o and f}


def context(object_name: str, field_name: str, record_id: int) -> str:
    return f"{object_name}.{field_name}:{record_id}"


def read_encrypted(object_name: str, field_name: str, record_id: int, stored: str) -> str:
    """The plain text of an encrypted field's stored value."""
    cipher = EnvelopeCipher()
    where = context(object_name, field_name, record_id)
    if version_of(stored) is None:
        if migrating(object_name, field_name):
            return stored  # written before encryption was turned on, not migrated yet
        raise DecryptionError("The stored value is not a ciphertext of this format.")
    try:
        return cipher.decrypt(stored, context=where)
    except DecryptionError:
        if migrating(object_name, field_name):
            return stored  # plain text that happens to look like a ciphertext
        raise


def read_plain(object_name: str, field_name: str, record_id: int, stored: object) -> object:
    """A plain field's stored value, decrypted if it is still a ciphertext of a migration."""
    if not isinstance(stored, str) or version_of(stored) is None:
        return stored
    if not migrating(object_name, field_name):
        return stored
    try:
        return EnvelopeCipher().decrypt(stored, context=context(object_name, field_name, record_id))
    except DecryptionError:
        return stored


# -- the migration itself -----------------------------------------------------------------


@dataclass
class MigrationResult:
    object_name: str
    field_name: str
    kind: str
    rewritten: int = 0
    finished: bool = False
    #: Values in the old form kept appearing: the job stays running, to be resumed.
    incomplete: bool = False


def _still_running(job_id: int) -> Callable[[], bool]:
    def ask() -> bool:
        with db.engine.connect() as connection:
            state = connection.execute(
                select(EncryptionJob.state).where(EncryptionJob.id == job_id)
            ).scalar()
        return state == RUNNING

    return ask


def _target(job: EncryptionJob) -> Target | None:
    from bastion.data.catalog import current_catalog

    catalog = current_catalog()
    meta = catalog.objects.get(job.object_name or "")
    if meta is None or meta.name not in catalog.tables:
        return None
    item = meta.all_fields.get(job.field_name or "")
    if item is None or item.purged:
        return None
    object_name, field_name = meta.name, item.name
    return Target(
        f"{object_name}.{field_name}",
        catalog.tables[object_name],
        field_name,
        lambda record_id: context(object_name, field_name, record_id),
    )


def run_job(
    job: EncryptionJob,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[Progress], None] | None = None,
) -> MigrationResult:
    """Migrate one field's values; marks the job done unless it was superseded."""
    result = MigrationResult(job.object_name or "", job.field_name or "", job.kind)
    target = _target(job)
    encrypt = job.kind == ENCRYPT_FIELD
    cipher = EnvelopeCipher()
    job_id = job.id
    if target is not None:
        active: list[int] = []

        def read_active(connection: Connection) -> None:
            if encrypt and connection.dialect.name == "sqlite":
                # Pages freed by the rewrite are zeroed instead of keeping the plain text.
                connection.exec_driver_sql("PRAGMA secure_delete=ON")
            # Read under the batch's writers' lock, on its connection: the version
            # cannot be retired before the batch commits.
            active[:] = [
                connection.execute(
                    select(EncryptionKey.version).where(
                        EncryptionKey.purpose == DATA, EncryptionKey.state == ACTIVE
                    )
                ).scalar_one()
            ]

        def transform(row_id: int, old: str) -> str | None:
            where = target.context(row_id)
            if version_of(old) is not None:
                try:
                    plain = cipher.decrypt(old, context=where)
                except DecryptionError:
                    plain = None  # plain text that looks like a ciphertext
                if plain is not None:
                    return None if encrypt else plain
            return cipher.encrypt(old, context=where, version=active[0]) if encrypt else None

        keep_going = _still_running(job_id)
        clean = False
        for attempt in range(MAX_PASSES):
            if attempt:
                time.sleep(PASS_PAUSE_SECONDS)
            found = done = 0
            for progress in rewrite(
                target,
                transform,
                batch_size=batch_size,
                keep_going=keep_going,
                on_batch=read_active,
            ):
                found, done = progress.found, progress.rewritten
                if on_progress is not None:
                    on_progress(progress)
            result.rewritten += done
            if not keep_going():
                break
            # Finished only when a whole pass found nothing left in the old form, not
            # merely when it rewrote nothing (a concurrent old-form write may have won).
            if found == 0:
                clean = True
                break
        if not clean:
            result.incomplete = keep_going()
            _record_progress(job_id, result.rewritten)
            return result
    with db.engine.begin() as connection:
        finished = connection.execute(
            update(EncryptionJob)
            .where(EncryptionJob.id == job_id, EncryptionJob.state == RUNNING)
            .values(
                state=DONE,
                finished_at=_now(),
                migrated=EncryptionJob.migrated + result.rewritten,
            )
        )
    result.finished = finished.rowcount == 1
    if result.finished and encrypt and target is not None:
        scrub_old_values(target.table.name)
    return result


def scrub_old_values(table_name: str) -> None:
    """After a field turned encrypted: remove the plain values' old copies from disk.

    SQLite: VACUUM rebuilds the file from live rows only, and the checkpoints move its
    pages into the database file and truncate the WAL. PostgreSQL: VACUUM removes the
    table's dead row versions. Audit entries and backups made before keep their values
    (docs/encryption.md). A failure is logged, never fatal: the migration itself is done.
    """
    try:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                connection.exec_driver_sql("VACUUM")
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            elif connection.dialect.name == "postgresql":
                quote = connection.dialect.identifier_preparer.quote
                connection.exec_driver_sql(f"VACUUM {quote(table_name)}")
    except Exception:
        log.warning(
            "Could not vacuum after turning a field of %s encrypted; run VACUUM to remove "
            "the old plain values from disk.",
            table_name,
            exc_info=True,
        )


def _record_progress(job_id: int, rewritten: int) -> None:
    with db.engine.begin() as connection:
        connection.execute(
            update(EncryptionJob)
            .where(EncryptionJob.id == job_id)
            .values(migrated=EncryptionJob.migrated + rewritten)
        )


def running_jobs() -> list[EncryptionJob]:
    db.session.rollback()  # see jobs other connections committed
    return list(
        db.session.scalars(
            select(EncryptionJob)
            .where(
                EncryptionJob.state == RUNNING,
                EncryptionJob.kind.in_((ENCRYPT_FIELD, DECRYPT_FIELD)),
            )
            .order_by(EncryptionJob.id)
        )
    )


def run_pending(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[MigrationResult]:
    """Run every field migration that has not finished (several processes may: the
    compare-and-set writes make that safe)."""
    return [run_job(job, batch_size=batch_size, on_progress=on_progress) for job in running_jobs()]


def start_background(app: Flask | None = None) -> threading.Thread:
    """Run the pending field migrations in a daemon thread of this process."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]

    def work() -> None:
        with app.app_context():
            try:
                for result in run_pending():
                    log.info(
                        "Field %s.%s: %s, %s values rewritten.",
                        result.object_name,
                        result.field_name,
                        result.kind,
                        result.rewritten,
                    )
            except Exception:  # logged; `bastion keys migrate` or a restart resumes
                log.exception("A field encryption migration stopped; it resumes later.")
            finally:
                db.session.remove()

    thread = threading.Thread(target=work, name="bastion-field-migration", daemon=True)
    app.extensions.setdefault(_THREADS, []).append(thread)
    thread.start()
    return thread


def wait_for_background(app: Flask, timeout: float = 60.0) -> None:
    """Join the migration threads this process started (tests, orderly shutdown)."""
    for thread in list(app.extensions.get(_THREADS, [])):
        thread.join(timeout)


@dataclass(frozen=True)
class PendingMigration:
    label: str
    kind: str
    #: Values still in the old state (plain text to encrypt, or ciphertexts to decrypt).
    left: int


def pending_migrations() -> list[PendingMigration]:
    """Every running field migration with how many values it still has to rewrite."""
    from bastion.keys.keyring import keyring
    from bastion.keys.reencrypt import count_versions

    numbers = [v.version for v in keyring().versions()]
    found = []
    for job in running_jobs():
        target = _target(job)
        if target is None:
            continue
        counts = count_versions(target, numbers)
        ciphertexts = sum(n for version, n in counts.items() if version is not None)
        left = counts.get(None, 0) if job.kind == ENCRYPT_FIELD else ciphertexts
        found.append(PendingMigration(target.label, job.kind, left))
    return found


def resume_at_start(app: Flask) -> bool:
    """At server start-up: carry on with field migrations an earlier process left.

    Every serving process may do so; the compare-and-set writes make that safe.
    """
    with app.app_context():
        try:
            pending = bool(running_jobs())
        except Exception:  # a database not upgraded yet: `bastion upgrade` says so
            log.warning("Could not look for pending field migrations.", exc_info=True)
            return False
        finally:
            db.session.remove()
    if pending:
        start_background(app)
    return pending
