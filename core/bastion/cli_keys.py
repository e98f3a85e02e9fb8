"""Operators' commands for encryption keys: `bastion keys rotate | status | retire`.

Key material never reaches the terminal, the log or the audit trail: only version
numbers and counts do. Refusals exit non-zero with one sentence.
"""

from __future__ import annotations

import click
from flask import Flask

from bastion.cli import with_app


@click.group("keys")
def keys() -> None:
    """Rotate, inspect and retire the data encryption keys."""


def _errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import OperationalError

    from bastion.keys.keyring import KeyringError
    from bastion.keys.master import MasterKeyError

    return (KeyringError, MasterKeyError, OperationalError)


def _refusal(exc: Exception) -> click.ClickException:
    """One sentence for the operator; a database error's parameters are never shown."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, OperationalError):
        if "database is locked" in str(exc.orig):
            return click.ClickException(
                "The database is busy: another process held its write lock too long; "
                "try again in a moment (nothing was changed by the step that failed)."
            )
        return click.ClickException(
            f"The database refused the operation ({type(exc.orig).__name__}); check that "
            "it is reachable and try again."
        )
    return click.ClickException(str(exc))


@keys.command("rotate")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted rotation to the active version; make no new version.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Rows re-encrypted per transaction.",
)
@click.option(
    "--retire-unused",
    is_flag=True,
    help="Afterwards retire older versions that no value uses any more.",
)
@with_app
def rotate_command(app: Flask, resume: bool, batch_size: int, retire_unused: bool) -> None:
    """Make a new data key version active and re-encrypt every value with it, online."""
    from bastion.keys.reencrypt import Progress
    from bastion.keys.rotation import rotate

    def show(progress: Progress) -> None:
        click.echo(
            f"  {progress.target}: {progress.scanned} checked, {progress.rewritten} re-encrypted"
        )

    try:
        result = rotate(
            resume=resume,
            batch_size=batch_size,
            retire_unused=retire_unused,
            on_progress=show,
        )
    except _errors() as exc:
        raise _refusal(exc) from None
    click.echo(
        f"Data key version {result.version} is active; {result.rewritten} values re-encrypted "
        f"in {result.passes} passes."
    )
    if result.retired:
        click.echo(f"Retired versions: {', '.join(map(str, result.retired))}.")


@keys.command("status")
@with_app
def status_command(app: Flask) -> None:
    """Each data key version, its state and how many values use it."""
    from bastion.keys.fields import pending_migrations
    from bastion.keys.keyring import check_master_key, keyring
    from bastion.keys.rotation import status

    try:
        check_master_key()  # a wrong master key shows here, not at the next write
        entries = status()
    except _errors() as exc:
        raise _refusal(exc) from None
    click.echo(f"master key {keyring().master.key_id}: unwraps every data key")
    for pending in pending_migrations():
        what = "turning encrypted" if pending.kind == "encrypt_field" else "turning plain"
        click.echo(f"field {pending.label}: {what}, {pending.left} values left to migrate")
    for entry in entries:
        created = entry.created_at.strftime("%Y-%m-%d %H:%M")
        click.echo(
            f"version {entry.version}: {entry.state}, created {created}, {entry.total} values"
        )
        for label, count in sorted(entry.uses.items()):
            click.echo(f"  {label}: {count}")


@keys.command("retire")
@click.argument("version", type=click.IntRange(1))
@with_app
def retire_command(app: Flask, version: int) -> None:
    """Erase an older data key version that no value uses any more."""
    from bastion.keys.rotation import retire

    try:
        retire(version)
    except _errors() as exc:
        raise _refusal(exc) from None
    click.echo(f"Data key version {version} is retired; its key material is erased.")


@keys.command("migrate")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Rows rewritten per transaction.",
)
@with_app
def migrate_command(app: Flask, batch_size: int) -> None:
    """Finish fields turning encrypted or plain (resumes an interrupted migration)."""
    from bastion.keys.fields import run_pending
    from bastion.keys.reencrypt import Progress

    def show(progress: Progress) -> None:
        click.echo(
            f"  {progress.target}: {progress.scanned} checked, {progress.rewritten} rewritten"
        )

    try:
        results = run_pending(batch_size=batch_size, on_progress=show)
    except _errors() as exc:
        raise _refusal(exc) from None
    if not results:
        click.echo("No field migration is pending.")
    for result in results:
        if result.finished:
            state = "done"
        elif result.incomplete:
            state = "not done yet, values in the old form are still being written; run again"
        else:
            state = "superseded by a newer change"
        click.echo(
            f"{result.object_name}.{result.field_name}: {result.rewritten} values rewritten, "
            f"{state}."
        )


def register(main: click.Group) -> None:
    """Attach the key commands to the `bastion` command group."""
    main.add_command(keys)
