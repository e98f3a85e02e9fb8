"""`bastion restore`: a new data directory from an archive, checked before anything is made.

1. The target folder must be new or empty, the master key available (and the one the
   archive's data keys are wrapped with), the target database empty.
2. The whole archive is decrypted, authenticated and checked into a private staging
   folder beside the target; a fault removes it and stops here, so a bad archive
   creates nothing.
3. The data directory is set up as `bastion init` does (fresh session key; the master
   key file copied in when one was given; the audit chain's keys unwrapped from the
   archive), the database, audit anchors and settings are
   put in place, migrations run if the backup is older, the search index is rebuilt.
4. The restore is audited in the restored chain; the chain is verified and the record
   counts and definitions are compared with the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from bastion import audit
from bastion.backup.archive import read_archive
from bastion.backup.carried import CARRIED_NAME, install_secrets, unwrap_secrets
from bastion.backup.errors import BackupError
from bastion.backup.facts import DatabaseFacts, read_facts
from bastion.backup.keysource import KeySource, MasterKeySource
from bastion.backup.manifest import (
    AUDIT_PREFIX,
    CONFIG_PREFIX,
    DEFINITIONS_NAME,
    Manifest,
    is_safe_member_name,
)
from bastion.backup.pg_restore import check_empty_target, restore_dump
from bastion.config import CONFIG_FILE_NAME, ConfigError, Settings, load_settings
from bastion.keys.master import KEY_FILE_NAME, MasterKey, MasterKeyError, load_master_key


@dataclass
class RestoreReport:
    data_dir: Path
    manifest: Manifest
    facts: DatabaseFacts
    migrated_from: str | None
    indexed: int
    audit_ok: bool
    audit_message: str
    definitions_match: bool

    @property
    def counts_match(self) -> bool:
        return self.facts.record_counts == self.manifest.record_counts

    @property
    def ok(self) -> bool:
        return self.counts_match and self.audit_ok and self.definitions_match


def _check_target_dir(data_dir: Path) -> Path:
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} is not empty; restore into a new or empty folder.")
    existing = data_dir.parent
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise BackupError(f"{existing} is not writable by this user.")
    return existing


def _master_key(settings: Settings, key_file: Path | None) -> MasterKey:
    try:
        if key_file is not None:
            # The file given wins over the environment: it is the one being restored.
            file_settings = dataclasses.replace(settings, master_key_file=str(key_file))
            return load_master_key(file_settings, environ={})
        # No application exists yet: ask the installed plugins (an HSM or KMS provider)
        # directly, then the environment.
        from bastion import __version__
        from bastion.plugins.registry import PluginRegistry

        registry = PluginRegistry(__version__)
        registry.discover()
        return load_master_key(settings, registry=registry)
    except MasterKeyError as exc:
        raise BackupError(
            f"{exc} A restore needs the installation's master key: set BASTION_MASTER_KEY "
            "or give --master-key-file."
        ) from None


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    try:
        return load_settings(
            data_dir, overrides={"database_url": database_url} if database_url else None
        )
    except ConfigError as exc:
        raise BackupError(str(exc)) from None


def _check_database(manifest: Manifest, settings: Settings) -> None:
    target = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest.database_kind != target:
        hint = (
            "give --database-url of an empty PostgreSQL database"
            if manifest.database_kind == "postgresql"
            else "leave out --database-url (and BASTION_DATABASE_URL) to restore into SQLite"
        )
        raise BackupError(
            f"The backup holds a {manifest.database_kind} database and the target is "
            f"{target}; {hint}."
        )
    from bastion import schema

    revision = manifest.schema_revision
    if revision and not _known_revision(revision):
        raise BackupError(
            f"The backup's database is at revision {revision}, which this version of "
            f"Bastion does not know (newest: {schema.head_revision()}); restore it with "
            f"Bastion {manifest.bastion_version} or newer."
        )


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from bastion.schema import _config

    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _write_config(staging: Path, manifest: Manifest, settings: Settings, data_dir: Path) -> None:
    """The archived bastion.toml, pointing at the restored database instead of the old one."""
    member = CONFIG_PREFIX + CONFIG_FILE_NAME
    lines: list[str] = []
    if manifest.member(member) is not None:
        # Top-level keys come before the first [table]; only there is database_url a setting.
        in_table = False
        for line in (staging / member).read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            in_table = in_table or stripped.startswith("[")
            if not in_table and stripped.replace(" ", "").startswith("database_url="):
                continue
            lines.append(line)
    if settings.database_url:
        # json.dumps yields a valid TOML basic string.
        lines.insert(0, f"database_url = {json.dumps(settings.database_url)}")
    if not lines:
        return
    path = data_dir / CONFIG_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _place_files(staging: Path, manifest: Manifest, data_dir: Path) -> None:
    for member in manifest.members:
        if member.name.startswith(AUDIT_PREFIX):
            target = data_dir / "audit" / member.name[len(AUDIT_PREFIX) :]
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(staging / member.name, target)


def _install_master_key(key_file: Path, data_dir: Path) -> None:
    from bastion.keyfiles import ensure_secrets_dir

    secrets_dir = data_dir / "secrets"
    ensure_secrets_dir(secrets_dir)
    fd = os.open(secrets_dir / KEY_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_file.read_bytes())


def restore_backup(
    archive: Path,
    *,
    data_dir: Path,
    database_url: str | None = None,
    passphrase: KeySource | None = None,
    master_key_file: Path | None = None,
    actor: str = "system",
) -> RestoreReport:
    """Restore ``archive`` into the new data directory ``data_dir``; see the module doc."""
    parent = _check_target_dir(data_dir)
    settings = _settings(data_dir, database_url)
    master = _master_key(settings, master_key_file)
    keys = passphrase or MasterKeySource(master)
    if not settings.is_sqlite:
        check_empty_target(settings.effective_database_url)

    staging = Path(tempfile.mkdtemp(prefix=".bastion-restore-", dir=parent))
    try:

        def destination(name: str) -> Path:
            if not is_safe_member_name(name):
                raise BackupError(f"The archive holds an unsafe name {name!r}.")
            return staging / name

        manifest = read_archive(archive, keys, destination).manifest
        if manifest.master_key_id and manifest.master_key_id != master.key_id:
            raise BackupError(
                f"The backed-up database's data keys are wrapped by the master key "
                f"{manifest.master_key_id}, but the master key supplied is {master.key_id}; "
                "supply the installation's original master key."
            )
        _check_database(manifest, settings)
        carried = {}
        if manifest.member(CARRIED_NAME) is not None:
            carried = unwrap_secrets((staging / CARRIED_NAME).read_bytes(), master)
        existed = data_dir.exists()
        try:
            return _install(
                staging, manifest, settings, master_key_file, carried, archive.name, actor
            )
        except Exception as exc:
            # Leave no half-made installation that `bastion serve` would start on.
            _empty(data_dir, remove=not existed)
            if isinstance(exc, BackupError):
                raise
            where = (
                ""
                if settings.is_sqlite
                else (
                    " The target database may hold restored tables: empty it before trying again."
                )
            )
            raise BackupError(
                f"The restore failed ({type(exc).__name__}: {exc}) and {data_dir} was "
                f"emptied.{where}"
            ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _empty(data_dir: Path, *, remove: bool) -> None:
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for entry in data_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _install(
    staging: Path,
    manifest: Manifest,
    settings: Settings,
    master_key_file: Path | None,
    carried: dict[str, bytes],
    archive_name: str,
    actor: str,
) -> RestoreReport:
    from bastion.provision import MARKER, prepare_data_dir

    data_dir = settings.data_dir
    prepare_data_dir(data_dir, force=False)
    if master_key_file is not None:
        _install_master_key(master_key_file, data_dir)
    install_secrets(settings.secrets_dir, carried)
    _write_config(staging, manifest, settings, data_dir)
    _place_files(staging, manifest, data_dir)
    database = staging / manifest.database_member
    if manifest.database_kind == "sqlite":
        os.replace(database, settings.sqlite_path)
        os.chmod(settings.sqlite_path, 0o600)
    else:
        restore_dump(database, settings.effective_database_url, manifest.database_schema)
    # Settings again, now with the restored bastion.toml.
    settings = _settings(data_dir, settings.database_url or None)
    from bastion.app import create_app

    app = create_app(settings)
    try:
        with app.app_context():
            report = _finish(app, manifest, staging, archive_name, actor)
        (data_dir / MARKER).write_text("initialized\n", encoding="ascii")
        return report
    finally:
        with app.app_context():
            from bastion.db import db

            db.session.remove()
            db.engine.dispose()


def _finish(
    app: Flask, manifest: Manifest, staging: Path, archive_name: str, actor: str
) -> RestoreReport:
    from bastion import schema
    from bastion.db import db
    from bastion.search import indexer_for

    migrated_from = None
    if not schema.is_current():
        migrated_from = schema.current_revision()
        _upgrade(app)
    indexed = indexer_for(app).rebuild()
    audit.record(
        "backup.restore",
        actor=actor,
        object_type="backup",
        object_id=archive_name,
        changes={
            "created_at": manifest.created_at,
            "bastion_version": manifest.bastion_version,
            "records": manifest.record_total,
            "migrated_from": migrated_from,
        },
    )
    db.session.commit()
    with db.engine.connect() as connection:
        facts = read_facts(connection)
    definitions = json.loads((staging / DEFINITIONS_NAME).read_text(encoding="utf-8"))
    audit_ok, audit_message = _verify_audit(app)
    return RestoreReport(
        data_dir=app.extensions["bastion"].settings.data_dir,
        manifest=manifest,
        facts=facts,
        migrated_from=migrated_from,
        indexed=indexed,
        audit_ok=audit_ok,
        audit_message=audit_message,
        # After migrations the definitions may legitimately differ; compare when not.
        definitions_match=migrated_from is not None or facts.definitions == definitions,
    )


def _upgrade(app: Flask) -> None:
    """What `bastion upgrade` does to an older database."""
    from bastion import schema
    from bastion.data.setup import DeclarationsHeld, sync_definitions
    from bastion.db import db
    from bastion.default_roles import ensure_default_roles
    from bastion.plugins import state
    from bastion.runtime import platform

    schema.upgrade()
    ensure_default_roles()
    db.session.commit()
    try:
        sync_definitions(app)
    except DeclarationsHeld as exc:
        raise BackupError(
            f"The database was restored and migrated, but some plugins' definitions were "
            f"held back: {exc} Then run `bastion upgrade`."
        ) from None
    state.sync_new_plugins(platform(app).registry)


def _verify_audit(app: Flask) -> tuple[bool, str]:
    """The restored chain checked as `bastion audit verify` checks it."""
    from bastion.audit.anchors import anchors_for
    from bastion.audit.verify import verify_chain

    result = verify_chain(anchors_for(app))
    if result.ok:
        return True, f"OK {result.count}"
    return False, f"FAILED after {result.count} entries: {result.problem}"
