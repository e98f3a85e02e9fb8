"""Audit entries waiting for their transaction, written into the chain when it commits.

Each entry is kept with the (possibly nested) transaction it belongs to. The outermost
commit writes them (``store.append``, inside that transaction, so the change and its
entry commit together or not at all); releasing a savepoint writes nothing, since what
it holds can still be rolled back.

Record changes (``record_on_commit``) vanish with a rollback: they describe changes
that did not happen. Events recorded through ``audit.record`` (``record_event``) are
durable: a rollback moves them to the session's leftovers, which the next commit
writes, or the end of the request or command (``flush_leftovers``) in a transaction of
their own. An event recorded while no transaction is open is written at once.

Entries are kept in runs: consecutive entries of one transaction share one list, so a
rollback (an import's batch retried row by row) looks at runs, not at every entry. An
all-or-nothing import of a million rows waits for one commit at the end; past
``COMPACT_AFTER`` waiting entries, the runs are serialized to JSON text (a fifth of
the memory of the dictionaries) and read back when they are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from bastion.audit import anchors, store
from bastion.audit.entries import Entry
from bastion.db import db
from bastion.keyfiles import SecretFileError

log = logging.getLogger("bastion.audit")

BUFFER_KEY = "bastion_pending_audit"
LEFTOVER_KEY = "bastion_audit_leftovers"
WRITTEN_KEY = "bastion_audit_written"
HEAD_CACHE_KEY = "bastion.audit_head"
#: Entries kept as dictionaries before the waiting ones are serialized.
COMPACT_AFTER = 20_000


class _Run:
    __slots__ = ("count", "durable", "entries", "transaction")

    def __init__(self, transaction: SessionTransaction, durable: bool) -> None:
        self.transaction = transaction
        self.durable = durable
        #: The entries, or their JSON text once compacted.
        self.entries: list[Entry] | str = []
        self.count = 0

    def loaded(self) -> list[Entry]:
        return json.loads(self.entries) if isinstance(self.entries, str) else self.entries


class _Pending:
    """The entries waiting for the outermost commit, in the order they were queued."""

    __slots__ = ("loose", "runs", "total")

    def __init__(self) -> None:
        self.runs: list[_Run] = []
        #: Entries not serialized yet.
        self.loose = 0
        self.total = 0

    def add(self, transaction: SessionTransaction, entries: Iterable[Entry], durable: bool) -> None:
        last = self.runs[-1] if self.runs else None
        if (
            last is None
            or last.transaction is not transaction
            or last.durable != durable
            or isinstance(last.entries, str)
        ):
            last = _Run(transaction, durable)
            self.runs.append(last)
        run = last.entries
        assert isinstance(run, list)
        size = len(run)
        run.extend(entries)
        added = len(run) - size
        last.count += added
        self.loose += added
        self.total += added
        if self.loose > COMPACT_AFTER:
            for item in self.runs:
                if not isinstance(item.entries, str):
                    item.entries = json.dumps(
                        item.entries, default=str, ensure_ascii=False, separators=(",", ":")
                    )
            self.loose = 0

    def take(self, ended: SessionTransaction) -> list[Entry]:
        """Forget the entries of ``ended`` and the transactions inside it; return the
        durable ones among them."""
        kept: list[_Run] = []
        durable: list[Entry] = []
        for run in self.runs:
            if not _inside(run.transaction, ended):
                kept.append(run)
            elif run.durable:
                durable.extend(run.loaded())
        self.runs = kept
        self.loose = sum(len(run.entries) for run in kept if not isinstance(run.entries, str))
        self.total = sum(run.count for run in kept)
        return durable

    def entries(self) -> Iterator[Entry]:
        for run in self.runs:
            yield from run.loaded()


def record_on_commit(session: Session, entries: Iterable[Entry]) -> None:
    """Queue record-change entries, in order, for the session's current transaction."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        # No transaction: nothing of the change can roll back any more.
        _leftovers(session).extend(entries)
        _write_now(session)
        return
    _pending(session).add(transaction, entries, durable=False)


def record_event(entry: Entry) -> None:
    """Queue an event that must be kept whatever becomes of the current transaction."""
    if not has_app_context():
        log.error("audit event %s outside an application: not stored", entry["action"])
        return
    session = db.session()
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is not None:
        _pending(session).add(transaction, [entry], durable=True)
        return
    _leftovers(session).append(entry)
    _write_now(session)


def flush_leftovers(_error: BaseException | None = None) -> None:
    """Write events whose transaction never committed (the end of a request or command)."""
    if not db.session.registry.has():
        return
    session = db.session()
    pending: _Pending | None = session.info.get(BUFFER_KEY)
    has_durable = pending is not None and any(run.durable for run in pending.runs)
    if not (session.info.get(LEFTOVER_KEY) or has_durable):
        return
    try:
        if session.in_transaction():
            # Not committed by the request: what it changed is discarded (as the end of
            # the request would), its events are kept. Loaded objects are let go first
            # rather than expired by the rollback: a streamed response still reads them
            # after this teardown, as it would after the session's close.
            session.expunge_all()
            session.rollback()
        _write_now(session)
    except Exception:
        log.exception("audit entries could not be written")


def init_audit_writer(app: Flask) -> None:
    # Registered after Flask-SQLAlchemy's own teardown, so it runs before the session
    # is removed (teardown functions run in reverse order).
    app.teardown_appcontext(flush_leftovers)


def _pending(session: Session) -> _Pending:
    pending = session.info.get(BUFFER_KEY)
    if pending is None:
        pending = session.info[BUFFER_KEY] = _Pending()
    return pending


def _leftovers(session: Session) -> list[Entry]:
    return session.info.setdefault(LEFTOVER_KEY, [])


def _write_now(session: Session) -> None:
    with session.begin():
        pass  # the commit writes the leftovers (``_write_pending``)


def _inside(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint is released: the enclosing transaction may still roll back
    leftovers: list[Entry] = session.info.get(LEFTOVER_KEY) or []
    pending: _Pending | None = session.info.get(BUFFER_KEY)
    count = len(leftovers) + (pending.total if pending is not None else 0)
    if not count:
        return
    # Pending ORM changes go first: the head's lock is then the transaction's last, so
    # two commits cannot each hold a row the other waits for.
    session.flush()
    entries = _chained(leftovers, pending)
    key = _chain_key(session)
    cache = current_app.extensions.setdefault(HEAD_CACHE_KEY, store.HeadCache())
    session.info[WRITTEN_KEY] = store.append(session, entries, count, key, cache)


def _chain_key(session: Session) -> bytes:
    found = anchors.anchors_for(current_app)
    try:
        return found.chain_key()
    except SecretFileError:
        # An installation from before the audit trail, upgraded: nothing is chained yet,
        # so a new key breaks nothing. With entries, a missing key is an error.
        if not store.chain_is_empty(session):
            raise
        anchors.ensure_audit_keys(found.secrets_dir)
        return found.chain_key()


def _chained(leftovers: list[Entry], pending: _Pending | None) -> Iterator[Entry]:
    yield from leftovers
    if pending is not None:
        yield from pending.entries()


@event.listens_for(Session, "after_commit")
def _log_written(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return
    written: store.Appended | None = session.info.pop(WRITTEN_KEY, None)
    session.info.pop(BUFFER_KEY, None)
    session.info.pop(LEFTOVER_KEY, None)
    if written is None:
        return
    for entry in written.entries:
        _log_line(entry)
    if has_app_context():
        anchors.after_append(current_app, written.last_seq, written.last_hash)


def _log_line(entry: Entry) -> None:
    extra: dict[str, Any] = {
        "audit": True,
        "seq": entry["seq"],
        "action": entry["action"],
        "actor": entry["actor"],
        "object_type": entry["object_type"],
        "object_id": entry["object_id"],
        "outcome": entry["outcome"],
    }
    if entry.get("token_id") is not None:
        extra["token_id"] = entry["token_id"]
    if entry.get("changes"):
        extra["changes"] = entry["changes"]
    if entry.get("client_addr"):
        extra["client_addr"] = entry["client_addr"]
    log.info("audit %s", entry["action"], extra=extra)


@event.listens_for(Session, "after_transaction_end")
def _root_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # savepoints: a rollback is handled below, a release keeps the entries
    pending: _Pending | None = session.info.get(BUFFER_KEY)
    session.info.pop(WRITTEN_KEY, None)
    if pending is None:
        return
    # Still here after the outermost transaction ended: it rolled back or was closed.
    durable = pending.take(transaction)
    if durable:
        _leftovers(session).extend(durable)
    if not pending.runs:
        session.info.pop(BUFFER_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _savepoint_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: _Pending | None = session.info.get(BUFFER_KEY)
    if pending is None:
        return
    durable = pending.take(previous_transaction)
    if durable:
        _leftovers(session).extend(durable)
