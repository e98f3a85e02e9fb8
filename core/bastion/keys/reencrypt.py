"""Online re-encryption: every stored ciphertext moved to one data key version, in batches.

Each batch is its own short transaction. A row is rewritten with compare-and-set
(``UPDATE ... WHERE id = :id AND col = :old``) and without bumping the record's version:
a user's concurrent edit is never overwritten (their new value wins and is already
under the active version) and never refused as stale. A pass that was interrupted is
simply run again: rows already on the target version are skipped, so a rerun never loses
or double-encrypts a value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.engine import Connection

from bastion.db import db
from bastion.encryption import DecryptionError
from bastion.keys.cipher import EnvelopeCipher, version_of
from bastion.keys.locks import share_with_writers

log = logging.getLogger("bastion.keys")
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True)
class Target:
    """One column holding ciphertexts, and how each row's context is named."""

    label: str  # "contacts.national_id", or "users.mfa_secret" for credentials
    table: Table
    column: str
    context: Callable[[int], str]
    credential: bool = False


def _field_context(object_name: str, field_name: str) -> Callable[[int], str]:
    return lambda record_id: f"{object_name}.{field_name}:{record_id}"


def field_targets() -> list[Target]:
    """Every encrypted field of every object (base and custom, removed but not purged)."""
    from bastion.data.catalog import current_catalog
    from bastion.keys.fields import migrating_fields

    catalog = current_catalog()
    # A field turning plain still holds ciphertexts until its migration is done.
    moving = migrating_fields()
    found = []
    for meta in catalog.objects.values():
        table = catalog.tables.get(meta.name)
        if table is None:
            continue
        for item in meta.all_fields.values():
            wanted = item.encrypted or (meta.name, item.name) in moving
            if wanted and item.in_row and not item.purged and item.name in table.c:
                found.append(
                    Target(
                        f"{meta.name}.{item.name}",
                        table,
                        item.name,
                        _field_context(meta.name, item.name),
                    )
                )
    return found


def credential_targets() -> list[Target]:
    from bastion.mfa import secret_context
    from bastion.models import User

    return [Target("users.mfa_secret", User.__table__, "mfa_secret", secret_context, True)]


def all_targets() -> list[Target]:
    return field_targets() + credential_targets()


@dataclass
class Progress:
    target: str
    scanned: int = 0
    rewritten: int = 0
    #: Rows found in the old form, rewritten or not (a concurrent write won the
    #: compare-and-set): a pass is clean only when it found none.
    found: int = 0


#: Decides a row's new stored value from its id and old one; None leaves the row alone.
Transform = Callable[[int, str], "str | None"]


def rewrite(
    target: Target,
    transform: Transform,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_going: Callable[[], bool] | None = None,
    on_batch: Callable[[Connection], None] | None = None,
) -> Iterator[Progress]:
    """Apply ``transform`` to every non-empty value of ``target``, batch by batch.

    Each batch is one transaction; each row is compare-and-set, so a value a user wrote
    meanwhile is kept. ``keep_going`` is asked before every batch (a superseded job
    stops). ``on_batch`` runs first in each batch's transaction, after the writers'
    lock (bastion.keys.locks) is taken. Yields the progress after each batch.
    """
    table, column = target.table, target.table.c[target.column]
    progress = Progress(target.label)
    last_id = 0
    while keep_going is None or keep_going():
        with db.engine.begin() as connection:
            # The batch writes ciphertexts: a key retirement must wait for it.
            share_with_writers(connection)
            if on_batch is not None:
                on_batch(connection)
            rows = connection.execute(
                select(table.c.id, column)
                .where(table.c.id > last_id, column.is_not(None))
                .order_by(table.c.id)
                .limit(batch_size)
            ).all()
            if not rows:
                return
            for row_id, old in rows:
                progress.scanned += 1
                new = transform(row_id, old)
                if new is None or new == old:
                    continue
                progress.found += 1
                result = connection.execute(
                    update(table)
                    .where(table.c.id == row_id, column == old)
                    .values({target.column: new})
                )
                # 0 rows: a user wrote a new value meanwhile, which is kept.
                progress.rewritten += result.rowcount
            last_id = rows[-1][0]
        yield progress


def reencrypt(
    target: Target,
    version: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cipher: EnvelopeCipher | None = None,
) -> Iterator[Progress]:
    """Move every ciphertext of ``target`` to ``version``; yields progress after each batch.

    A value that is not a ciphertext (a field being migrated), or does not decrypt under
    its row's context, is left as it is; the latter is logged by row id only: rewriting
    it would hide the problem.
    """
    cipher = cipher or EnvelopeCipher()

    def transform(row_id: int, old: str) -> str | None:
        current = version_of(old)
        if current is None or current == version:
            return None
        context = target.context(row_id)
        try:
            plain = cipher.decrypt(old, context=context)
        except DecryptionError:
            log.error("%s of row %s does not decrypt; left as it is.", target.label, row_id)
            return None
        return cipher.encrypt(plain, context=context, version=version)

    return rewrite(target, transform, batch_size=batch_size)


def count_versions(target: Target, versions: list[int]) -> dict[int | None, int]:
    """How many values of ``target`` use each of ``versions`` (None: anything else).

    One query: a sum per version of the rows whose value starts with ``v<version>:``.
    """
    column = target.table.c[target.column]
    sums = [
        func.coalesce(func.sum(case((column.like(f"v{v}:%"), 1), else_=0)), 0) for v in versions
    ]
    row = db.session.execute(select(func.count(column), *sums).select_from(target.table)).one()
    counts: dict[int | None, int] = dict(zip(versions, (int(n) for n in row[1:]), strict=True))
    counts[None] = int(row[0]) - sum(counts.values())
    return counts
