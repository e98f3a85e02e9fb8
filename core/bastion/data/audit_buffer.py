"""Audit entries of record changes, written only once their transaction commits.

Until the audit trail lives in the database (and commits with the change by
construction), entries are log lines; writing them when the change happens would
record writes that a later error, a dry run or an all-or-nothing import rolled back.
Each entry is kept with the (possibly nested) transaction it belongs to: a rollback of
that transaction, or of one enclosing it, drops it; the outermost commit writes it
(releasing a savepoint writes nothing: what it holds can still be rolled back).

Entries are kept in runs: consecutive entries of one transaction share one list, so a
rollback (an import's batch retried row by row) looks at runs, not at every entry. An
all-or-nothing import of a million rows waits for one commit at the end; past
``COMPACT_AFTER`` waiting entries, the runs are serialized to JSON text (a fifth of
the memory of the dictionaries) and read back when they are written. The log line is
the same either way: the log's formatter writes JSON with ``default=str`` too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from bastion import audit

BUFFER_KEY = "bastion_pending_audit"
#: Entries kept as dictionaries before the waiting ones are serialized.
COMPACT_AFTER = 20_000

Entry = tuple[str, dict[str, Any]]


class _Pending:
    """The entries waiting for the outermost commit, in the order they were queued."""

    __slots__ = ("loose", "runs")

    def __init__(self) -> None:
        #: (transaction, entries as (action, entry) pairs, or as their JSON text).
        self.runs: list[tuple[SessionTransaction, list[Entry] | str]] = []
        #: Entries not serialized yet.
        self.loose = 0

    def add(self, transaction: SessionTransaction, entries: Iterable[Entry]) -> None:
        last = self.runs[-1] if self.runs else None
        if last is None or last[0] is not transaction or isinstance(last[1], str):
            last = (transaction, [])
            self.runs.append(last)
        run = last[1]
        assert isinstance(run, list)
        size = len(run)
        run.extend(entries)
        self.loose += len(run) - size
        if self.loose > COMPACT_AFTER:
            self.runs = [(owner, _serialized(queued)) for owner, queued in self.runs]
            self.loose = 0

    def drop(self, ended: SessionTransaction) -> None:
        """Forget the entries of ``ended`` and of the transactions inside it."""
        self.runs = [item for item in self.runs if not _inside(item[0], ended)]
        self.loose = sum(len(run) for _, run in self.runs if not isinstance(run, str))

    def entries(self) -> Iterable[Entry]:
        for _transaction, run in self.runs:
            yield from (json.loads(run) if isinstance(run, str) else run)


def _serialized(run: list[Entry] | str) -> str:
    if isinstance(run, str):
        return run
    return json.dumps(run, default=str, ensure_ascii=False, separators=(",", ":"))


def record_on_commit(session: Session, action: str, **entry: Any) -> None:
    """Queue an audit entry for the session's current transaction."""
    record_all_on_commit(session, [(action, entry)])


def record_all_on_commit(session: Session, entries: Iterable[Entry]) -> None:
    """Queue (action, entry) pairs, in order, for the session's current transaction."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        for action, entry in entries:
            audit.record(action, **entry)
        return
    pending = session.info.get(BUFFER_KEY)
    if pending is None:
        pending = session.info[BUFFER_KEY] = _Pending()
    pending.add(transaction, entries)


def _inside(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_commit")
def _write_pending(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released: the enclosing transaction may still roll back
    pending: _Pending | None = session.info.pop(BUFFER_KEY, None)
    if pending is not None:
        for action, entry in pending.entries():
            audit.record(action, **entry)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: _Pending | None = session.info.get(BUFFER_KEY)
    if pending is not None:
        pending.drop(previous_transaction)
