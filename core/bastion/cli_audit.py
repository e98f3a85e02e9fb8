"""`bastion audit`: verify the chain, write a checkpoint, archive old entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask

from bastion.audit.anchors import anchors_for, checkpoint
from bastion.audit.archive import ArchiveError, archive_before, verify_archive
from bastion.audit.entries import utc_timestamp
from bastion.audit.verify import read_head, verify_chain
from bastion.cli import with_app


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@click.option(
    "--archive",
    "archive_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check an archive file written by `bastion audit archive` instead of the table.",
)
@with_app
def verify(app: Flask, archive_file: Path | None) -> None:
    """Walk the chain (or an archive): print `OK <count>`, or the first problem and fail."""
    anchors = anchors_for(app)
    if archive_file is not None:
        if not archive_file.is_file():
            raise click.ClickException(f"{archive_file} does not exist.")
        result = verify_archive(anchors, archive_file)
    else:
        result = verify_chain(anchors)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if not result.ok:
        click.echo(f"FAILED after {result.count} good entries: {result.problem}", err=True)
        raise SystemExit(1)
    click.echo(f"OK {result.count}")


@audit.command("checkpoint")
@with_app
def checkpoint_command(app: Flask) -> None:
    """Sign and record the chain's head now (serving processes do so every minute)."""
    head = read_head()
    if head is None:
        click.echo("The audit trail is empty; nothing to checkpoint.")
        return
    signed = checkpoint(app, *head)
    if signed is None:
        raise click.ClickException("The checkpoint could not be written; see the log.")
    click.echo(
        f"Checkpoint of entry {signed['seq']} written to {anchors_for(app).checkpoints_path}."
    )


@audit.command("archive")
@click.option(
    "--before",
    help="Archive entries that occurred before this UTC date (YYYY-MM-DD) "
    "instead of the audit_retention_days setting.",
)
@click.option(
    "--to",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the archive file (default <data_dir>/audit/archives).",
)
@with_app
def archive(app: Flask, before: str | None, folder: Path | None) -> None:
    """Move entries past the retention period to a signed archive file."""
    settings = app.extensions["bastion"].settings
    if before:
        try:
            cutoff_day = datetime.strptime(before, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise click.ClickException(
                f"--before {before!r} is not a date like 2026-01-31."
            ) from None
        cutoff = utc_timestamp(cutoff_day)
    elif settings.audit_retention_days > 0:
        cutoff = utc_timestamp(datetime.now(UTC) - timedelta(days=settings.audit_retention_days))
    else:
        raise click.ClickException(
            "No retention period is set: pass --before DATE or set audit_retention_days."
        )
    anchors = anchors_for(app)
    try:
        done = archive_before(anchors, cutoff, folder or anchors.folder / "archives")
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    if done is None:
        click.echo(f"No entries before {cutoff}; nothing archived.")
        return
    click.echo(
        f"Archived entries {done.first_seq} to {done.last_seq} ({done.count}) to {done.path}; "
        "check it with `bastion audit verify --archive FILE` and keep it safe."
    )


def register(main: click.Group) -> None:
    main.add_command(audit)
