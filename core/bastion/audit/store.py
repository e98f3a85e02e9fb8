"""Appending entries to the chain, inside the transaction that commits them.

The chain's head (last position and hash) lives in the one-row table ``audit_head``.
Advancing it is the first statement an append runs: an ``UPDATE … RETURNING`` that
takes the database's write lock on SQLite and the row's lock on PostgreSQL, so
concurrent transactions chain one after the other, and a rolled-back one leaves
neither a gap nor a fork. The head is a convenience for writers; ``verify`` trusts
only the entries and the anchors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from bastion.audit.chain import COLUMNS, canonical_changes, entry_hash
from bastion.audit.entries import Entry

#: Rows sent per INSERT; past ``KEEP_AS_ROWS`` written rows are kept as JSON text
#: until they are logged after the commit.
CHUNK = 2_000
KEEP_AS_ROWS = 20_000

# Sent through the DB-API cursor of the session's connection (same transaction, and on
# SQLite the same write gate): an append runs after every audited write, and SQLAlchemy's
# statement machinery cost several times what the database does for these three.
_ADVANCE = "UPDATE audit_head SET seq = seq + {p} WHERE id = 1 RETURNING seq, hash"
_SET_HASH = "UPDATE audit_head SET hash = {p} WHERE id = 1"
_CLAIM = "UPDATE audit_head SET seq = {p}, hash = {p} WHERE id = 1 AND seq = {p} AND hash = {p}"
_INSERT = "INSERT INTO audit_entries ({columns}) VALUES ({marks})"


@dataclass
class Appended:
    last_seq: int
    last_hash: str
    #: The written rows (or JSON text of chunks of them), for the log after the commit.
    chunks: list[list[Entry] | str] = field(default_factory=list)

    @property
    def entries(self) -> Iterator[Entry]:
        for chunk in self.chunks:
            yield from (json.loads(chunk) if isinstance(chunk, str) else chunk)


def chain_is_empty(session: Session) -> bool:
    connection = session.connection()
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SELECT seq FROM audit_head WHERE id = 1")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row is None or int(row[0]) == 0


class HeadCache:
    """The head this process last wrote, to claim the next positions in one statement.

    The claim (``_CLAIM``) only succeeds while the stored head is still the one cached,
    so a stale cache (another process appended, or a commit failed) costs a fallback to
    reading the head, never a wrong chain.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.head: tuple[int, str] | None = None

    def get(self) -> tuple[int, str] | None:
        with self.lock:
            return self.head

    def set(self, head: tuple[int, str]) -> None:
        with self.lock:
            self.head = head


def append(
    session: Session,
    entries: Iterable[Entry],
    count: int,
    key: bytes,
    cache: HeadCache | None = None,
) -> Appended:
    """Chain and insert ``count`` entries; returns the new head and the entries."""
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    insert_sql = _INSERT.format(columns=", ".join(COLUMNS), marks=", ".join([mark] * len(COLUMNS)))
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        known = cache.get() if cache is not None and count <= CHUNK else None
        if known is not None:
            # The usual case: one UPDATE claims the positions after the cached head.
            items = list(entries)
            appended = Appended(*known)
            rows, logged, last_hash = _chained(items, known[0] + 1, known[1], key)
            cursor.execute(_CLAIM.format(p=mark), (known[0] + count, last_hash, *known))
            if cursor.rowcount == 1:
                _insert(cursor, insert_sql, rows, logged, appended, compact=False)
                appended.last_seq, appended.last_hash = known[0] + count, last_hash
                cache.set((appended.last_seq, last_hash))  # type: ignore[union-attr]
                return appended
            entries = items
        appended = _append_after_reading_head(cursor, mark, insert_sql, entries, count, key)
    finally:
        cursor.close()
    if cache is not None:
        cache.set((appended.last_seq, appended.last_hash))
    return appended


def _append_after_reading_head(
    cursor: Any, mark: str, insert_sql: str, entries: Iterable[Entry], count: int, key: bytes
) -> Appended:
    cursor.execute(_ADVANCE.format(p=mark), (count,))
    last_seq, prev_hash = cursor.fetchall()[0]
    first = seq = last_seq - count + 1
    appended = Appended(last_seq, prev_hash)
    compact = count > KEEP_AS_ROWS
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= CHUNK:
            rows, logged, prev_hash = _chained(batch, seq, prev_hash, key)
            _insert(cursor, insert_sql, rows, logged, appended, compact)
            seq += len(batch)
            batch = []
    if batch:
        rows, logged, prev_hash = _chained(batch, seq, prev_hash, key)
        _insert(cursor, insert_sql, rows, logged, appended, compact)
        seq += len(batch)
    if seq - first != count:
        # The head was advanced by ``count``: writing another number would fork the chain.
        raise RuntimeError(f"audit append announced {count} entries but had {seq - first}")
    cursor.execute(_SET_HASH.format(p=mark), (prev_hash,))
    appended.last_hash = prev_hash
    return appended


def _chained(
    entries: list[Entry], seq: int, prev_hash: str, key: bytes
) -> tuple[list[tuple[Any, ...]], list[Entry], str]:
    """The rows to insert for ``entries`` placed from ``seq`` on after ``prev_hash``."""
    rows: list[tuple[Any, ...]] = []
    for entry in entries:
        row = dict(entry)
        row["changes"] = canonical_changes(entry.get("changes"))
        row["seq"] = entry["seq"] = seq
        row["prev_hash"] = prev_hash
        prev_hash = row["hash"] = entry_hash(row, prev_hash, key)
        seq += 1
        rows.append(tuple(row[name] for name in COLUMNS))
    return rows, entries, prev_hash


def _insert(
    cursor: Any,
    sql: str,
    rows: list[tuple[Any, ...]],
    logged: list[Entry],
    appended: Appended,
    compact: bool,
) -> None:
    if len(rows) == 1:
        cursor.execute(sql, rows[0])
    else:
        cursor.executemany(sql, rows)
    appended.chunks.append(
        json.dumps(logged, default=str, ensure_ascii=False, separators=(",", ":"))
        if compact
        else logged
    )
