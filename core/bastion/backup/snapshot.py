"""A consistent copy of the live database while Bastion keeps serving.

- SQLite: the online backup API (``Connection.backup``) copies every page in one step,
  inside one read transaction; in WAL mode writers go on meanwhile and the copy is the
  database as of that transaction's start.
- PostgreSQL: a REPEATABLE READ transaction exports its snapshot; ``pg_dump
  --snapshot`` dumps exactly what that transaction sees, and the manifest's facts are
  read in the same transaction.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from bastion.backup.errors import BackupError
from bastion.backup.facts import DatabaseFacts, read_facts
from bastion.config import Settings

SQLITE_MEMBER = "database/bastion.sqlite3"
POSTGRES_MEMBER = "database/bastion.pgdump"
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([^\s]+)")


@dataclass(frozen=True)
class Snapshot:
    kind: str
    member: str
    path: Path
    facts: DatabaseFacts
    #: PostgreSQL: the schema the tables live in.
    schema: str | None = None


@dataclass(frozen=True)
class LibpqTarget:
    """How pg_dump / pg_restore reach a database: a URL without password, and the password."""

    url: str
    password: str | None

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            # In the environment, never on a command line other users can list.
            env["PGPASSWORD"] = self.password
        return env


def libpq_target(database_url: str) -> LibpqTarget:
    url = make_url(database_url)
    plain = url.set(drivername="postgresql", password=None)
    return LibpqTarget(plain.render_as_string(hide_password=False), url.password)


def url_schema(database_url: str) -> str | None:
    """The schema a URL's ``options=-csearch_path=...`` puts first, if it sets one."""
    options = make_url(database_url).query.get("options")
    values = options if isinstance(options, tuple) else (options,) if options else ()
    for value in values:
        match = _SEARCH_PATH.search(unquote(value))
        if match:
            return match.group(1).split(",")[0].strip().strip('"') or None
    return None


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} is not installed or not on PATH; install PostgreSQL's client programs "
            "(Debian: postgresql-client) in the version of the server or newer."
        )
    return found


def _tool_failure(name: str, result: subprocess.CompletedProcess[str]) -> BackupError:
    lines = [line for line in (result.stderr or "").strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {result.returncode}"
    return BackupError(f"{name} failed: {detail}")


def sqlite_snapshot(settings: Settings, folder: Path) -> Snapshot:
    source_path = settings.sqlite_path
    if not source_path.is_file():
        raise BackupError(f"The SQLite database {source_path} does not exist.")
    target_path = folder / "bastion.sqlite3"
    # Bastion's write gate is not needed: the backup API only reads the source.
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(target_path)
    try:
        source.execute("PRAGMA busy_timeout=30000")
        # pages=-1: all pages in one step, so one read transaction sees one state.
        source.backup(target, pages=-1)
        problem = target.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise BackupError(f"The copy of the SQLite database fails its check: {problem}.")
        # One self-contained file: no -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy the database: {exc}.") from None
    finally:
        target.close()
        source.close()
    engine = create_engine(f"sqlite:///{target_path}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            facts = read_facts(connection)
    finally:
        engine.dispose()
    return Snapshot("sqlite", SQLITE_MEMBER, target_path, facts)


def postgres_snapshot(engine: Engine, database_url: str, folder: Path) -> Snapshot:
    pg_dump = require_tool("pg_dump")
    target = libpq_target(database_url)
    dump_path = folder / "bastion.pgdump"
    with engine.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot_id = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        if not schema:
            raise BackupError(
                "The database connection has no current schema; set search_path in the "
                "database URL (options=-csearch_path=NAME)."
            )
        facts = read_facts(connection)
        # The exported snapshot lives as long as this transaction: dump while it is open.
        result = subprocess.run(
            [
                pg_dump,
                "--format=custom",
                "--no-password",
                f"--snapshot={snapshot_id}",
                f"--schema={schema}",
                f"--file={dump_path}",
                f"--dbname={target.url}",
            ],
            env=target.environ(),
            capture_output=True,
            text=True,
            check=False,
        )
        connection.rollback()
    if result.returncode != 0:
        raise _tool_failure("pg_dump", result)
    return Snapshot("postgresql", POSTGRES_MEMBER, dump_path, facts, schema=schema)
