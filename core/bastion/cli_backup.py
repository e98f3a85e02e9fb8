"""`bastion backup [--to PATH]`, `bastion backup verify PATH`, `bastion restore PATH --data-dir D`.

Faults exit non-zero with one sentence on standard error. The audit actor is
``cli:<operating-system user>``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.cli import Context, _os_user

if TYPE_CHECKING:
    from bastion.backup.keysource import KeySource
    from bastion.config import Settings


def _actor() -> str:
    return f"cli:{_os_user()}"


def _keys(
    settings: Settings, passphrase_file: Path | None, master_key_file: Path | None = None
) -> KeySource:
    """The archive key source: the passphrase file if given, else the master key."""
    from bastion.backup.errors import BackupError
    from bastion.backup.keysource import MasterKeySource, read_passphrase_file
    from bastion.keys.master import MasterKeyError, load_master_key

    try:
        if passphrase_file is not None:
            return read_passphrase_file(passphrase_file)
        if master_key_file is not None:
            settings = dataclasses.replace(settings, master_key_file=str(master_key_file))
            return MasterKeySource(load_master_key(settings, environ={}))
        return MasterKeySource(load_master_key(settings))
    except (BackupError, MasterKeyError) as exc:
        raise click.ClickException(str(exc)) from None


_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Protect (or open) the archive with the passphrase on this file's first line "
    "instead of the master key: for copies kept off-site.",
)


@click.group("backup", invoke_without_command=True)
@click.option(
    "--to",
    "destination",
    type=click.Path(path_type=Path),
    default=None,
    help="Archive file or folder to write (default: <data dir>/backups/bastion-<UTC time>.bbak).",
)
@_passphrase_option
@click.pass_context
def backup(ctx: click.Context, destination: Path | None, passphrase_file: Path | None) -> None:
    """Write an encrypted backup while Bastion serves (or check one: `backup verify`)."""
    if ctx.invoked_subcommand is not None:
        if destination or passphrase_file:
            raise click.UsageError("Give --to and --passphrase-file after the subcommand's name.")
        return
    from bastion.backup.create import create_backup
    from bastion.backup.errors import BackupError
    from bastion.provision import is_initialized

    obj: Context = ctx.obj
    if not is_initialized(obj.settings.data_dir):
        raise click.ClickException(
            f"{obj.settings.data_dir} is not initialized; run `bastion init` first."
        )
    app = obj.app()
    with app.app_context():
        keys = _keys(obj.settings, passphrase_file)
        try:
            result = create_backup(app, keys=keys, destination=destination, actor=_actor())
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    manifest = result.manifest
    head = manifest.audit_head["seq"] if manifest.audit_head else "none"
    click.echo(f"Wrote {result.path} ({result.size} bytes, mode 0600).")
    click.echo(
        f"Database: {manifest.database_kind} at revision {manifest.schema_revision}; "
        f"{manifest.record_total} records in {len(manifest.record_counts)} objects; "
        f"audit head {head}."
    )
    if passphrase_file is not None:
        click.echo("Protected by the passphrase: without it the archive cannot be read.")
    else:
        click.echo(
            f"Protected by {keys.describe()}: keep a copy of the master key apart from the "
            "archive; a restore needs it."
        )


@backup.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_passphrase_option
@click.option(
    "--master-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Master key file to open the archive with (default: this installation's key).",
)
@click.pass_obj
def backup_verify(
    obj: Context, path: Path, passphrase_file: Path | None, master_key_file: Path | None
) -> None:
    """Check an archive: every chunk authenticated, every checksum compared.

    Prints OK and a summary, or names the fault and exits non-zero.
    """
    from contextlib import nullcontext

    from bastion.backup.errors import BackupError
    from bastion.backup.verify import verify_backup
    from bastion.provision import is_initialized

    # A key given on the command line is used as given; otherwise the installation's
    # master key, which a plugin may supply (so it is looked up in the app's context).
    given = (
        _keys(obj.settings, passphrase_file, master_key_file)
        if (passphrase_file or master_key_file)
        else None
    )
    # Off-site, with no installation here, the archive is still checked (not audited).
    app = obj.app() if is_initialized(obj.settings.data_dir) else None
    with app.app_context() if app is not None else nullcontext():
        keys = given or _keys(obj.settings, None)
        try:
            report = verify_backup(path, keys)
        except BackupError as exc:
            if app is not None:
                _record_verify(path, "failure", {"error": type(exc).__name__})
            raise click.ClickException(f"{path}: {exc}") from None
        if app is not None:
            _record_verify(path, "success", {"records": report.manifest.record_total})
    click.echo(f"OK {report.summary()}")


def _record_verify(path: Path, outcome: str, changes: dict[str, Any]) -> None:
    from bastion import audit
    from bastion.db import db

    audit.record(
        "backup.verify",
        actor=_actor(),
        object_type="backup",
        object_id=path.name,
        changes={"path": str(path), **changes},
        outcome=outcome,
    )
    db.session.commit()


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    "target_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="New (or empty) data directory to restore into.",
)
@click.option(
    "--database-url",
    default=None,
    help="Empty PostgreSQL database (and schema) to restore a PostgreSQL backup into "
    "(default: $BASTION_DATABASE_URL; SQLite backups go into the data directory).",
)
@_passphrase_option
@click.option(
    "--master-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The installation's master key file, copied into the new data directory "
    "(default: $BASTION_MASTER_KEY).",
)
def restore(
    path: Path,
    target_dir: Path,
    database_url: str | None,
    passphrase_file: Path | None,
    master_key_file: Path | None,
) -> None:
    """Verify an archive, then restore it into a new data directory."""
    from bastion.backup.errors import BackupError
    from bastion.backup.keysource import read_passphrase_file
    from bastion.backup.restore import restore_backup

    try:
        passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
        report = restore_backup(
            path,
            data_dir=target_dir,
            database_url=database_url,
            passphrase=passphrase,
            master_key_file=master_key_file,
            actor=_actor(),
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = report.manifest
    click.echo(f"Restored {path.name} (made {manifest.created_at}) into {report.data_dir}.")
    if report.migrated_from is not None:
        click.echo(f"Schema migrated: {report.migrated_from} -> {report.facts.schema_revision}.")
    click.echo(f"Search index rebuilt: {report.indexed} records.")
    click.echo(f"Audit chain: {report.audit_message}")
    click.echo("Records per object (backup / restored):")
    names = sorted(set(manifest.record_counts) | set(report.facts.record_counts))
    for name in names:
        before = manifest.record_counts.get(name, 0)
        after = report.facts.record_counts.get(name, 0)
        mark = "" if before == after else "  MISMATCH"
        click.echo(f"  {name:<24} {before:>9} / {after:>9}{mark}")
    if not report.definitions_match:
        click.echo("Definitions differ from the archive's definitions.json.")
    if not report.ok:
        raise click.ClickException(
            "The restored system does not match the backup (see above); do not use it "
            "before finding out why."
        )
    click.echo("OK")


def register(main: click.Group) -> None:
    main.add_command(backup)
    main.add_command(restore)
