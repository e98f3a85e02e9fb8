"""The SQLAlchemy handle and engine settings for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

from bastion.sqlite_gate import GatedConnection

# Stable constraint names keep Alembic migrations identical on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Objects keep their loaded state across a commit: a request that writes and then
# answers (create, then render the record) would otherwise reload the signed-in user,
# their roles and rules, and its API token after every commit. A request's session
# ends with the request, so nothing stale outlives it.
db = SQLAlchemy(
    metadata=MetaData(naming_convention=NAMING_CONVENTION),
    session_options={"expire_on_commit": False},
)


def engine_options(url: str) -> dict[str, Any]:
    # Statement parameters can hold personal data or secrets: keep them out of error
    # messages, which reach logs and the plugin admin page.
    common = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # One file shared by waitress' threads; WAL lets readers run beside a writer.
        # Writers queue at the gate rather than in SQLite's sleeping busy handler.
        connect_args = {"timeout": 15, "check_same_thread": False, "factory": GatedConnection}
        return {**common, "connect_args": connect_args}
    return {**common, "pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # SQLite's own lower() folds ASCII only; "contains" filters must find "ÄRGER" by
    # "ärger" as PostgreSQL does. Deterministic, so SQLite may use it in indexes.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
