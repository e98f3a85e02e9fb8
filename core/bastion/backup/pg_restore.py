"""Loading a pg_dump archive into an empty PostgreSQL schema, possibly of another name.

pg_dump writes every object qualified with its schema, so a dump of schema ``old`` can
only be loaded into a schema called ``old``. To restore into the target URL's schema
``new`` (which must exist and be empty; ownership and grants an administrator gave it
stay), ``new`` is renamed to ``old`` for the load and back afterwards. The dump's own
CREATE SCHEMA is left out, and pg_restore runs in a single transaction: a failure
leaves the schema as empty as it was.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bastion.backup.errors import BackupError
from bastion.backup.snapshot import libpq_target, require_tool

#: TOC lines of the schema itself ("123; 2615 2200 SCHEMA - public owner") and of its
#: comment: the target schema exists already, and may belong to someone else.
_SCHEMA_ENTRY = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+(SCHEMA|COMMENT - SCHEMA)\s")


def _current_schema(database_url: str) -> str:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            if not schema:
                raise BackupError(
                    "The target database URL's search_path names no existing schema; "
                    "create the schema first."
                )
            tables = connection.execute(
                text(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = :schema "
                    "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
                ),
                {"schema": schema},
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise BackupError(
            f"The target database is not reachable ({type(exc).__name__}); check "
            "--database-url and that the server is running."
        ) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"The target schema {schema!r} already holds {tables} tables or sequences; "
            "restore into an empty database or schema."
        )
    return schema


def check_empty_target(database_url: str) -> None:
    """Refuse a target that is unreachable, has no schema, or is not empty."""
    require_tool("pg_restore")
    _current_schema(database_url)


def _rename(database_url: str, old: str, new: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote
            connection.exec_driver_sql(f"ALTER SCHEMA {quote(old)} RENAME TO {quote(new)}")
    finally:
        engine.dispose()


def _schema_exists(database_url: str, name: str) -> bool:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": name}
                ).scalar()
            )
    finally:
        engine.dispose()


def restore_dump(dump: Path, database_url: str, dumped_schema: str | None) -> None:
    """Load ``dump`` into the (empty) schema of ``database_url``."""
    pg_restore = require_tool("pg_restore")
    target = libpq_target(database_url)
    schema = _current_schema(database_url)
    source_schema = dumped_schema or schema
    renamed = source_schema != schema
    if renamed and _schema_exists(database_url, source_schema):
        raise BackupError(
            f"The backup's tables are in schema {source_schema!r}, which already exists in "
            f"the target database; restore into another database, or into a schema named "
            f"{source_schema!r} there."
        )
    listing = subprocess.run(
        [pg_restore, "--list", str(dump)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise BackupError(f"pg_restore cannot read the dump: {listing.stderr.strip()}")
    entries = [line for line in listing.stdout.splitlines() if not _SCHEMA_ENTRY.match(line)]
    with tempfile.NamedTemporaryFile("w", suffix=".list", dir=dump.parent) as handle:
        handle.write("\n".join(entries) + "\n")
        handle.flush()
        if renamed:
            _rename(database_url, schema, source_schema)
        try:
            result = subprocess.run(
                [
                    pg_restore,
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    "--no-password",
                    f"--use-list={handle.name}",
                    f"--dbname={target.url}",
                    str(dump),
                ],
                env=target.environ(),
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            if renamed:
                _rename(database_url, source_schema, schema)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"pg_restore failed: {lines[-1] if lines else result.returncode}")
