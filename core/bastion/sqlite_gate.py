"""A queue for SQLite writers: one write transaction at a time, handed over at once.

SQLite allows one writer per database file. A second writer that finds the file
locked is put to sleep by SQLite's busy handler for 1, 2, 5, 10, 15... milliseconds
between retries, so under steady concurrent writes (several waitress threads, several
server processes) most of the time goes to sleeping, not writing.

Here every connection takes an exclusive ``flock`` on a lock file beside the database
before its first write statement and releases it as soon as its transaction ends.
A waiting writer retries every 0.2 to 2 ms, so the next one starts about as soon as the
previous one commits. Locks of ``flock`` belong to an open file, and each connection
opens the lock file itself, so the gate orders threads of one process as well as
separate processes. Waiting is bounded like SQLite's own busy timeout: past it the
write fails with "database is locked", as it would without the gate.

Only Bastion's connections use the gate. A tool writing to the file meanwhile (the
``sqlite3`` shell) is waited for by SQLite's busy handler as before; stop the server
for maintenance that writes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import time
import weakref
from typing import Any

log = logging.getLogger(__name__)

#: First words of statements that write (or open a write transaction). WITH may begin
#: a write (WITH ... INSERT); gating a read that starts with it only costs a little wait.
_WRITES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "WITH", "VACUUM",
     "REINDEX", "ANALYZE"}
)  # fmt: skip
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z))*", re.DOTALL)
_FIRST_PAUSE = 0.0002
_LONGEST_PAUSE = 0.002


def lock_path_for(database_path: str) -> str:
    return f"{database_path}.write-lock"


def _is_write(statement: str) -> bool:
    text = statement[_LEADING_COMMENTS.match(statement).end() :]  # type: ignore[union-attr]
    words = text[:40].upper().split(None, 2)
    if not words:
        return False
    first = words[0].rstrip(";")
    if first == "BEGIN":
        return len(words) > 1 and words[1].rstrip(";") in {"IMMEDIATE", "EXCLUSIVE"}
    if first == "PRAGMA":
        # Most settings (foreign_keys, synchronous, ...) belong to the connection, and
        # every new connection makes them: only these two write the database file.
        setting = text.split(";", 1)[0].upper().replace(" ", "")
        return setting.startswith(("PRAGMAUSER_VERSION=", "PRAGMAAPPLICATION_ID="))
    return first in _WRITES


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that queues for the database's write gate.

    Connect with ``sqlite3.connect(path, factory=GatedConnection)``; the gate's lock file
    is the database path plus ``.write-lock``.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        path = os.fspath(database)
        self._gate_fd = -1  # no gate for a database that is not a plain file
        if path != ":memory:" and path and not kwargs.get("uri"):
            self._gate_fd = _open_lock_file(lock_path_for(path))
        if self._gate_fd >= 0:
            # A connection dropped without close() must not keep the lock file open.
            self._closer = weakref.finalize(self, os.close, self._gate_fd)
        self._gate_held = False
        timeout = kwargs.get("timeout", args[0] if args else 5.0)
        self._gate_timeout = float(timeout)

    # -- the gate

    def _enter_gate(self) -> None:
        if self._gate_held or self._gate_fd < 0:
            return
        deadline = time.monotonic() + self._gate_timeout
        pause = _FIRST_PAUSE
        while True:
            try:
                fcntl.flock(self._gate_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)  # short pauses: the lock is held for a millisecond or so
                pause = min(pause * 2, _LONGEST_PAUSE)
        self._gate_held = True

    def _leave_gate_if_done(self) -> None:
        if self._gate_held and not self.in_transaction:
            fcntl.flock(self._gate_fd, fcntl.LOCK_UN)
            self._gate_held = False

    def before_statement(self, statement: str) -> None:
        if not self._gate_held and _is_write(statement):
            self._enter_gate()

    # -- sqlite3.Connection

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or GatedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().executescript(script)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave_gate_if_done()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave_gate_if_done()

    def __exit__(self, *exc_info: Any) -> Any:
        # ``with connection:`` commits or rolls back in C, past the overrides above.
        try:
            return super().__exit__(*exc_info)
        finally:
            self._leave_gate_if_done()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._gate_fd >= 0:
                self._closer()  # closing the file also releases its lock
                self._gate_fd = -1
                self._gate_held = False


def _open_lock_file(path: str) -> int:
    """The lock file, opened for this connection; -1 (no gate) when it cannot be.

    A lock file made by another user (say root running a command) may not be writable;
    flock works on a file opened for reading too.
    """
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
    log.warning("Cannot open %s; SQLite writers wait in its busy handler instead.", path)
    return -1


class GatedCursor(sqlite3.Cursor):
    """Enters the connection's gate before a write; leaves it when the transaction ends."""

    connection: GatedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        self.connection.before_statement(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection._leave_gate_if_done()

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:  # type: ignore[override]
        self.connection.before_statement(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self.connection._leave_gate_if_done()

    def executescript(self, script: str, /) -> sqlite3.Cursor:  # type: ignore[override]
        self.connection._enter_gate()  # a script may write anywhere in it
        try:
            return super().executescript(script)
        finally:
            self.connection._leave_gate_if_done()
