"""Helpers for the audit trail tests: reading entries, and damaging the chain as an
intruder with write access to the database would (triggers switched off first)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from bastion.audit.models import AuditEntry
from bastion.db import db

SQLITE_TRIGGERS = (
    "audit_entries_no_update",
    "audit_entries_no_delete",
)


def entries(app, **where: Any) -> list[AuditEntry]:
    with app.app_context():
        statement = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            statement = statement.where(getattr(AuditEntry, name) == value)
        return list(db.session.scalars(statement))


def tamper(app, *statements: str | tuple[str, dict[str, Any]]) -> None:
    """Run SQL (text, or text and parameters) against audit_entries with the
    append-only triggers out of the way."""

    def run(connection, statement: str | tuple[str, dict[str, Any]]) -> None:
        sql, params = (statement, {}) if isinstance(statement, str) else statement
        connection.execute(text(sql), params)

    with app.app_context():
        connection = db.session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            for statement in statements:
                run(connection, statement)
            connection.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
        else:
            saved = {
                name: connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n"),
                    {"n": name},
                ).scalar_one()
                for name in SQLITE_TRIGGERS
            }
            for name in SQLITE_TRIGGERS:
                connection.execute(text(f"DROP TRIGGER {name}"))
            for statement in statements:
                run(connection, statement)
            for sql in saved.values():
                connection.execute(text(sql))
        db.session.commit()
