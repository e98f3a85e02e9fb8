"""Writers of ciphertexts against the retirement of data keys.

A writer reads the active data key version, encrypts, and commits some time later. If
a rotation and a retirement ran in between, the retirement's count would not see the
uncommitted ciphertext and would erase the key it needs. So the two conflict:

- PostgreSQL: a transaction that encrypts with the active version takes a shared
  transaction-level advisory lock once, before reading that version; retiring takes the
  same lock exclusively, then counts and retires in that transaction. It therefore waits
  for every writer that might have read an old version to commit, and counts their
  values.
- SQLite: a transaction that encrypts opens its write transaction first (BEGIN
  IMMEDIATE, through the write gate), and retiring counts and retires in one write
  transaction: the two are serialized by SQLite's single writer.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bastion.db import db

#: The advisory lock key shared by encrypting writers and key retirement ("BASTKEYS").
LOCK_KEY = 0x4241_5354_4B45_5953
#: The advisory lock key held by the one running rotation ("BASTROTN").
ROTATION_KEY = 0x4241_5354_524F_544E
#: How long retiring waits for running writers before giving up (PostgreSQL).
RETIRE_LOCK_TIMEOUT = "30s"
_HELD = "bastion.keys.writer_lock"


def _begin_write(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    # The driver begins a transaction only before its first write; once begun, this
    # connection already holds SQLite's write lock.
    if not getattr(raw, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def share_with_writers(connection: Connection) -> None:
    """Hold the writers' lock for the rest of this connection's transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        _begin_write(connection)


def hold_writer_lock(session: Session | None = None) -> None:
    """Before reading the active version to encrypt: once per session transaction."""
    # The flag lives in session.info, remembered with the transaction it was taken in.
    session = session if session is not None else db.session()
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_HELD) is transaction:
        return
    share_with_writers(session.connection())
    session.info[_HELD] = session.get_transaction()


def exclude_writers(connection: Connection) -> None:
    """Wait until no transaction that encrypts is running, and keep new ones waiting
    until this transaction ends. Raises OperationalError past the lock timeout
    (PostgreSQL) or the write gate's timeout (SQLite)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{RETIRE_LOCK_TIMEOUT}'")
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        _begin_write(connection)


class RotationRunning(RuntimeError):
    """Another process is rotating the data key right now."""


@contextmanager
def rotation_lock() -> Iterator[None]:
    """Held for a whole rotation: a second one at the same time is refused at once.

    PostgreSQL: a session-level advisory lock (every server sharing the database sees
    it); SQLite: an exclusive ``flock`` on a file beside the database. Both end with the
    process, so a crashed rotation never blocks the next one.
    """
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ROTATION_KEY}
            ).scalar()
            connection.commit()
            if not got:
                raise RotationRunning
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ROTATION_KEY})
                connection.commit()
        return
    path = f"{db.engine.url.database}.rotation-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationRunning from None
        yield
    finally:
        os.close(fd)  # releases the flock
