"""Transactions of the record service.

A write on its own commits, or rolls back when it fails. Inside an ``atomic()`` block
the block's end commits (or rolls back) all its writes at once, and each write runs in
a SAVEPOINT: one that fails undoes only itself, so a caller may catch its error and
carry on (an import skipping bad rows, a merge, a plugin). PostgreSQL needs this: after
a failed statement it refuses every further one until the transaction, or a savepoint,
is rolled back. A nested ``atomic()`` block is a savepoint too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.orm import SessionTransaction

from bastion.data.errors import ValidationFailed
from bastion.db import db

ATOMIC_KEY = "bastion_atomic_depth"
NESTING_KEY = "bastion_write_nesting"
#: Writes within writes (a plugin's hook writing a record while another is written), at
#: most: deeper, a hook is surely setting off itself, and the write is refused.
MAX_NESTED_WRITES = 8


class TransactionMixin:
    """When the service's writes commit."""

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Group several writes into one transaction: all of them commit, or none.

        Nested in another block, it is a savepoint: when it fails, only its own writes
        are undone and the enclosing block may go on.
        """
        info = db.session.info
        depth = info.get(ATOMIC_KEY, 0)
        if depth:
            with savepoint():
                info[ATOMIC_KEY] = depth + 1
                try:
                    yield
                finally:
                    info[ATOMIC_KEY] = depth
            return
        info[ATOMIC_KEY] = 1
        try:
            yield
        except BaseException:
            info[ATOMIC_KEY] = 0
            db.session.rollback()
            raise
        info[ATOMIC_KEY] = 0
        db.session.commit()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write: committed on its own, or isolated in a savepoint within ``atomic()``.

        A standalone write needs no savepoint (it commits or rolls back whole), and is
        spared its extra round trips. It still counts as a block: a plugin's hook that
        writes through the service while it runs joins its transaction (as a savepoint)
        instead of committing it halfway, before later checks could refuse it. Such
        nesting is limited (``MAX_NESTED_WRITES``): a hook that sets itself off is cut
        short with a refusal rather than recursing until the process gives up.
        """
        info = db.session.info
        nesting = info.get(NESTING_KEY, 0)
        if nesting >= MAX_NESTED_WRITES:
            raise ValidationFailed(
                {
                    "": f"Records were written within record writes {nesting} levels deep: "
                    "a plugin's record hook keeps setting itself off. Nothing more was saved."
                }
            )
        info[NESTING_KEY] = nesting + 1
        try:
            if info.get(ATOMIC_KEY, 0):
                with savepoint():
                    yield
                return
            with self.atomic():
                yield
        finally:
            info[NESTING_KEY] = nesting


def savepoint() -> SessionTransaction:
    """A SAVEPOINT in the session's transaction (use it as a context manager)."""
    _begin_on_sqlite()
    return db.session.begin_nested()


def _begin_on_sqlite() -> None:
    """Make sure SQLite has really begun the transaction before a savepoint is taken.

    The sqlite3 driver sends BEGIN only before the first INSERT, UPDATE or DELETE; a
    SAVEPOINT sent before that would itself start the transaction, and releasing it
    would commit every write so far, out of reach of the rollback of the enclosing
    ``atomic()`` block. BEGIN IMMEDIATE takes the write lock now, as a writer must
    anyway (the importer does the same).
    """
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if not getattr(raw, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
