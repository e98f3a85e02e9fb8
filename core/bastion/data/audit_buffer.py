"""Audit entries of record changes, written only once their transaction commits.

Until the audit trail lives in the database (and commits with the change by
construction), entries are log lines; writing them when the change happens would
record writes that a later error, a dry run or an all-or-nothing import rolled back.
Each entry is kept with the (possibly nested) transaction it belongs to: a rollback of
that transaction, or of one enclosing it, drops it; the outermost commit writes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from bastion import audit

BUFFER_KEY = "bastion_pending_audit"


def record_on_commit(session: Session, action: str, **entry: Any) -> None:
    """Queue an audit entry for the session's current transaction."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        audit.record(action, **entry)
        return
    session.info.setdefault(BUFFER_KEY, []).append((transaction, action, entry))


def _inside(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(BUFFER_KEY, [])
    for _transaction, action, entry in pending:
        audit.record(action, **entry)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(BUFFER_KEY)
    if pending:
        session.info[BUFFER_KEY] = [
            item for item in pending if not _inside(item[0], previous_transaction)
        ]
