"""Read-only facts about the running installation, for probes, `bastion check` and plugins."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bastion.db import db


@dataclass(frozen=True)
class DatabaseHealth:
    backend: str
    reachable: bool
    latency_ms: float | None
    schema_current: bool | None
    problem: str | None = None


def database_health() -> DatabaseHealth:
    from bastion import schema

    backend = db.engine.dialect.name
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
        latency = round((time.perf_counter() - started) * 1000, 2)
        current = schema.is_current()
    except SQLAlchemyError as exc:
        db.session.rollback()
        return DatabaseHealth(backend, False, None, None, type(exc).__name__)
    return DatabaseHealth(backend, True, latency, current)
