"""`bastion backup`: one encrypted archive of the database, definitions, audit anchors, settings.

Order matters for the audit anchors: the audit folder is copied *before* the database,
so every checkpoint in the copy describes a chain the copied database contains; an
archive file written between the two copies (its entries pruned from the database) is
added afterwards, from the names the copied database lists.

Secret files (``secrets/``) are never included as such: the session key is made anew
at restore, the master key must be supplied separately, and the audit chain's keys
travel wrapped by the master key (``carried``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from bastion import __version__, audit
from bastion.backup.archive import write_archive
from bastion.backup.carried import CARRIED_NAME, wrap_secrets
from bastion.backup.errors import BackupError
from bastion.backup.keysource import KeySource
from bastion.backup.manifest import (
    AUDIT_PREFIX,
    CONFIG_PREFIX,
    DEFINITIONS_NAME,
    Manifest,
    describe_file,
)
from bastion.backup.snapshot import Snapshot, postgres_snapshot, sqlite_snapshot
from bastion.config import CONFIG_FILE_NAME
from bastion.keys.master import MasterKey, MasterKeyError, load_master_key

BACKUPS_DIR = "backups"
SUFFIX = ".bbak"
AUDIT_DIR = "audit"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    manifest: Manifest


def default_name(now: datetime) -> str:
    return f"bastion-{now.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def _free_name(folder: Path, now: datetime) -> Path:
    """The default name in ``folder``, numbered when a backup of the same second exists."""
    path = folder / default_name(now)
    number = 1
    while path.exists():
        number += 1
        path = folder / default_name(now).replace(SUFFIX, f"-{number}{SUFFIX}")
    return path


def _output_path(destination: Path | None, data_dir: Path, now: datetime) -> Path:
    if destination is None:
        folder = data_dir / BACKUPS_DIR
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _free_name(folder, now)
    if destination.is_dir():
        return _free_name(destination, now)
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose a new file name.")
    if not destination.parent.is_dir():
        raise BackupError(f"The folder {destination.parent} does not exist; create it first.")
    return destination


def _copy_audit_folder(source: Path, target: Path) -> None:
    """Copy the anchors; a checkpoint line being appended right now is left out."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.name.startswith("."):
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(path, destination)
        if path.suffix == ".jsonl":
            _drop_partial_line(destination)


def _drop_partial_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _add_late_archives(source: Path, target: Path, names: list[str]) -> None:
    """Archive files the copied database names but the earlier folder copy missed."""
    if not source.is_dir():
        return
    copied = {path.name for path in target.rglob("*") if path.is_file()}
    for name in set(names) - copied:
        for original in source.rglob(name):
            if original.is_file() and not original.is_symlink():
                destination = target / original.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.copyfile(original, destination)


def _snapshot(app: Flask, folder: Path) -> Snapshot:
    from bastion.db import db
    from bastion.runtime import platform

    settings = platform(app).settings
    if settings.is_sqlite:
        return sqlite_snapshot(settings, folder)
    return postgres_snapshot(db.engine, settings.effective_database_url, folder)


def _master_key(app: Flask) -> MasterKey:
    """The master key, needed even for passphrase archives: it wraps the carried secrets."""
    from bastion.runtime import platform

    try:
        return load_master_key(platform(app).settings)
    except MasterKeyError as exc:
        raise BackupError(str(exc)) from None


def create_backup(
    app: Flask, *, keys: KeySource, destination: Path | None = None, actor: str | None = None
) -> BackupResult:
    """Write the archive (inside ``app``'s context); returns where and what it holds.

    Audited as ``backup.create``, a refused or failed attempt too.
    """
    try:
        result = _write(app, keys, destination)
    except BackupError as exc:
        target = destination or default_folder(app)
        _record("backup.create", actor, target, {"error": str(exc)}, outcome="failure")
        raise
    _record(
        "backup.create",
        actor,
        result.path,
        {
            "path": str(result.path),
            "bytes": result.size,
            "database": result.manifest.database_kind,
            "records": result.manifest.record_total,
            "key": keys.describe(),
        },
    )
    return result


def default_folder(app: Flask) -> Path:
    from bastion.runtime import platform

    return platform(app).settings.data_dir / BACKUPS_DIR


def _write(app: Flask, keys: KeySource, destination: Path | None) -> BackupResult:
    from bastion.runtime import platform

    settings = platform(app).settings
    master = _master_key(app)
    now = datetime.now(UTC)
    output = _output_path(destination, settings.data_dir, now)
    # Plaintext copies stay in a private folder beside the output, removed at the end.
    staging = Path(tempfile.mkdtemp(prefix=".bastion-backup-", dir=output.parent))
    partial = output.with_name(f".{output.name}.partial")
    try:
        audit_source = settings.data_dir / AUDIT_DIR
        _copy_audit_folder(audit_source, staging / "audit")
        snapshot = _snapshot(app, staging)
        _add_late_archives(audit_source, staging / "audit", snapshot.facts.audit_archive_files)
        (staging / DEFINITIONS_NAME).write_text(
            json.dumps(snapshot.facts.definitions, indent=2, sort_keys=True, ensure_ascii=False),
            encoding="utf-8",
        )
        (staging / CARRIED_NAME).write_bytes(wrap_secrets(settings.secrets_dir, master))
        files = {
            snapshot.member: snapshot.path,
            DEFINITIONS_NAME: staging / DEFINITIONS_NAME,
            CARRIED_NAME: staging / CARRIED_NAME,
        }
        for path in sorted((staging / "audit").rglob("*")):
            if path.is_file():
                files[AUDIT_PREFIX + path.relative_to(staging / "audit").as_posix()] = path
        config = settings.data_dir / CONFIG_FILE_NAME
        if config.is_file():
            # A copy: the checksum and the archived bytes must be of the same content.
            shutil.copyfile(config, staging / CONFIG_FILE_NAME)
            files[CONFIG_PREFIX + CONFIG_FILE_NAME] = staging / CONFIG_FILE_NAME
        created_at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        manifest = Manifest(
            bastion_version=__version__,
            created_at=created_at,
            database_kind=snapshot.kind,
            database_member=snapshot.member,
            database_schema=snapshot.schema,
            schema_revision=snapshot.facts.schema_revision,
            record_counts=snapshot.facts.record_counts,
            audit_head=snapshot.facts.audit_head,
            master_key_id=master.key_id,
            members=[describe_file(path, name) for name, path in files.items()],
        )
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            write_archive(handle, keys, manifest, files, mtime=now.timestamp())
            handle.flush()
            os.fsync(handle.fileno())
        # link() refuses to replace a file that appeared meanwhile; replace() would not.
        os.link(partial, output)
    except FileExistsError:
        raise BackupError(f"{output} already exists; choose a new file name.") from None
    except OSError as exc:
        raise BackupError(f"The backup could not be written: {exc}.") from None
    except SQLAlchemyError as exc:
        raise BackupError(
            f"The database could not be read ({type(exc).__name__}); check that it is "
            "reachable and try again."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return BackupResult(output, output.stat().st_size, manifest)


def _record(
    action: str,
    actor: str | None,
    path: Path,
    changes: dict[str, object],
    *,
    outcome: str = "success",
) -> None:
    from bastion.db import db

    audit.record(
        action,
        actor=actor,
        object_type="backup",
        object_id=path.name,
        changes=changes,
        outcome=outcome,
    )
    db.session.commit()  # outside a request nothing else would write the entry
