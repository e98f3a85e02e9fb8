"""Operators' commands for business records: `bastion import` and `bastion export`.

Who acts:

- ``--as EMAIL``: that (active) user, through the record service with their
  permissions: the ``import`` / ``export`` permission on the object, ``create`` and
  ``edit`` for what an import writes, their record scope and field security. The
  records' audit entries name the user.
- without ``--as``: the system, which bypasses permissions like any operator command
  (it reads and writes every record and field). New records are owned by the first
  active administrator (the oldest account holding the administrator role) unless the
  file has an ``owner`` column. Audit entries of the import or export name
  ``cli:<operating-system user>``.

Refusals exit non-zero with a sentence on standard error; so does an import that
wrote nothing because of bad rows, and a dry run that found any.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from flask import Flask, g
from sqlalchemy import select

from bastion.cli import _os_user, with_app


@contextlib.contextmanager
def _acting(app: Flask, email: str | None) -> Iterator[tuple[Any, int | None, str | None]]:
    """(record service, default owner, audit actor) for ``--as EMAIL`` or the system.

    Runs inside a request context whose signed-in user is the actor, because that is
    where the record service's per-request caches and the audit seam look for them.
    """
    from bastion.data.records import RecordService

    with app.test_request_context("/cli"):
        if email:
            from bastion.accounts import AccountError, find_user

            try:
                user = find_user(email)
            except AccountError as exc:
                raise click.ClickException(str(exc)) from None
            if not user.active:
                raise click.ClickException(f"{user.email} is disabled.")
            g._login_user = user
            yield RecordService(user), None, None
            return
        yield RecordService(None, system=True), _first_administrator(), f"cli:{_os_user()}"


def _first_administrator() -> int:
    from bastion.db import db
    from bastion.models import Role, User, user_roles

    found = db.session.scalar(
        select(User.id)
        .join(user_roles, user_roles.c.user_id == User.id)
        .join(Role, Role.id == user_roles.c.role_id)
        .where(Role.name == "administrator", User.active)
        .order_by(User.id)
        .limit(1)
    )
    if found is None:
        raise click.ClickException(
            "No active administrator can own the imported records; use --as EMAIL."
        )
    return found


def _read_input(path: str) -> bytes:
    if path == "-":
        with click.open_file("-", "rb") as stream:
            return stream.read()
    return Path(path).read_bytes()


def _mapping(object_name: str, value: str | None) -> tuple[dict[str, str] | None, str | None]:
    """--mapping: a JSON file's path, else the name of a saved mapping."""
    from bastion.data import importer

    if not value:
        return None, None
    path = Path(value)
    if path.is_file():
        # Called before the import's own error handling: every way the file can be
        # wrong must become a one-line message here, not a traceback.
        try:
            return importer.parse_mapping_json(path.read_text(encoding="utf-8-sig"))
        except importer.ImportProblem as exc:
            raise click.ClickException(f"{value}: {exc.message}") from None
        except UnicodeDecodeError:
            raise click.ClickException(
                f"{value}: the mapping file is not UTF-8 text; save it as UTF-8 JSON."
            ) from None
        except OSError as exc:
            raise click.ClickException(
                f"{value}: the mapping file cannot be read ({exc.strerror})."
            ) from None
    row = importer.load_mapping(object_name, value)
    if row is None:
        saved = importer.mapping_names(object_name)
        hint = f" Saved mappings: {', '.join(saved)}." if saved else " None is saved yet."
        raise click.ClickException(
            f"There is no file or saved mapping {value!r} for {object_name}.{hint}"
        )
    return importer.mapping_of(row), row.key_field


class _Bar:
    """A progress bar on standard error, when that is a terminal."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.shown = 0

    def __call__(self, processed: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="Importing", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(processed - self.shown)
        self.shown = processed

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command("import")
@click.argument("object_name", metavar="OBJECT")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--mapping", default=None, help="A saved mapping's name, or a JSON file {column: field}."
)
@click.option("--save-mapping", "save_as", default=None, help="Save the mapping under this name.")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option("--key", "key_field", default=None, help="Update records whose FIELD matches.")
@click.option("--skip-bad-rows", is_flag=True, help="Write the good rows (default: all or none).")
@click.option("--skip-duplicates", is_flag=True, help="Do not create rows flagged as duplicates.")
@click.option("--as", "as_email", default=None, help="Act as this user, with their permissions.")
@with_app
def import_records(
    app: Flask,
    object_name: str,
    file: str,
    mapping: str | None,
    save_as: str | None,
    dry_run: bool,
    key_field: str | None,
    skip_bad_rows: bool,
    skip_duplicates: bool,
    as_email: str | None,
) -> None:
    """Import a CSV FILE ('-' for standard input) into OBJECT's records."""
    from bastion.access import has_permission
    from bastion.data import importer
    from bastion.data.errors import RecordError
    from bastion.db import db

    if file != "-" and not Path(file).is_file():
        raise click.ClickException(f"There is no file {file}.")
    data = _read_input(file)
    with _acting(app, as_email) as (service, owner, actor):
        columns, saved_key = _mapping(object_name, mapping)
        options = importer.ImportOptions(
            mapping=columns,
            key_field=key_field or saved_key,
            dry_run=dry_run,
            skip_bad_rows=skip_bad_rows,
            skip_duplicates=skip_duplicates,
            default_owner=owner,
        )
        bar = _Bar()
        try:
            report = importer.run_import(
                service, object_name, data, options, progress=bar, actor=actor
            )
        except (importer.ImportProblem, RecordError) as exc:
            raise click.ClickException(exc.message) from None
        finally:
            bar.close()
        if save_as:
            user_id = None if service.system else service.user.id
            try:
                importer.save_mapping(
                    report.object,
                    save_as,
                    report.columns,
                    options.key_field,
                    user_id,
                    replace_any=service.system or has_permission(service.user, "admin.schema"),
                )
            except importer.ImportProblem as exc:
                raise click.ClickException(exc.message) from None
            db.session.commit()
            click.echo(f"Saved the mapping {save_as!r}.", err=True)
    _print_report(report)
    if report.errors and (dry_run or not report.written):
        sys.exit(1)


def _print_report(report: Any) -> None:
    click.echo(report.summary())
    if report.ignored_columns:
        click.echo(f"Ignored columns: {', '.join(report.ignored_columns)}.")
    for error in report.errors:
        click.echo(f"line {error.line}: {error.text}")
    for flag in report.duplicates:
        parts = [f"record {r['id']} ({r['name']})" for r in flag.records]
        parts += [f"line {line}" for line in flag.lines]
        what = "skipped, " if flag.skipped else ""
        fields = ", ".join(flag.matched_on)
        click.echo(
            f"line {flag.line}: possible duplicate ({what}same {fields}) of {', '.join(parts)}"
        )


@click.command("export")
@click.argument("object_name", metavar="OBJECT")
@click.option("--format", "export_format", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--output", "-o", default=None, help="The file to write (default: standard output).")
@click.option(
    "--where",
    multiple=True,
    help="A filter as in a list's address, e.g. industry=Banking or amount__gte=100 "
    "(repeat for several).",
)
@click.option("--fields", default=None, help="Fields to export, comma-separated (default: all).")
@click.option("--sort", default=None, help="Order, e.g. -created_at,name (default: id).")
@click.option("--bom", is_flag=True, help="Start a CSV file with a byte-order mark (Excel).")
@click.option("--as", "as_email", default=None, help="Act as this user, with their permissions.")
@with_app
def export_records(
    app: Flask,
    object_name: str,
    export_format: str,
    output: str | None,
    where: tuple[str, ...],
    fields: str | None,
    sort: str | None,
    bom: bool,
    as_email: str | None,
) -> None:
    """Export OBJECT's records, with every field you may read, to CSV or JSON."""
    from bastion.data.errors import RecordError
    from bastion.data.exporter import prepare_export

    query: list[tuple[str, str]] = []
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"--where takes FIELD=VALUE, not {item!r}.")
        query.append((name.strip(), value))
    if fields:
        query.append(("fields", fields))
    if sort:
        query.append(("sort", sort))
    with _acting(app, as_email) as (service, _owner, actor):
        try:
            export = prepare_export(service, object_name, query, export_format, actor=actor)
            chunks = export.chunks(bom=bom)
            if output is None:
                for chunk in chunks:  # bytes: UTF-8 whatever the terminal's locale
                    click.echo(chunk.encode("utf-8"), nl=False)
            else:
                with open(output, "w", encoding="utf-8", newline="") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
        except RecordError as exc:
            raise click.ClickException(exc.message) from None
        except OSError as exc:
            raise click.ClickException(f"Cannot write {output}: {exc.strerror}.") from None
    if output is not None:
        click.echo(
            f"Exported {export.count} {export.meta.label_plural.lower()} to {output}.", err=True
        )


COMMANDS = (import_records, export_records)


def register(main: click.Group) -> None:
    """Attach the data commands to the `bastion` command group."""
    for command in COMMANDS:
        main.add_command(command)
