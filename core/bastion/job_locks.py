"""One run at a time for scheduled jobs: ``with job_lock("sales-follow-ups"): ...``.

A scheduler (cron, a systemd timer) may start a job while the previous run is still
going, or an administrator may start one by hand meanwhile. Two runs of a job that
"creates what is missing" would both see it missing and both create it. The lock makes
the second run give up at once with :class:`JobRunning` instead of waiting, which is
what a periodic job wants: the run in progress does the work.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a
  dedicated connection for the length of the block. It covers every process and host
  using the database, and the server drops it when that connection dies, so a killed
  run never leaves it behind. The key is derived from the name (stable across
  processes and versions: SHA-256, not Python's randomized ``hash``).
- SQLite: an exclusive ``flock`` on ``<data_dir>/locks/<name>.lock``. The database is a
  local file, so every process using it sees the same lock file; the kernel releases
  the lock when the process ends.

The lock is never waited for and never taken twice by nested blocks of one process
(the second attempt raises :class:`JobRunning` too).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

#: Lock names become file names: keep them plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class JobRunning(Exception):
    """Another run of the job holds its lock; this run should stop without doing anything."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Another run of {name!r} is in progress.")
        self.name = name


def advisory_key(name: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock``, the same in every process."""
    digest = hashlib.sha256(f"bastion.job:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def job_lock(name: str) -> Iterator[None]:
    """Hold the job's lock for the block, or raise :class:`JobRunning` at once.

    Needs the application context (the database and the data directory).
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"Job lock names are lower-case letters, digits, '_', '.', '-': {name!r}")
    from bastion.db import db

    if db.engine.dialect.name == "postgresql":
        with _advisory_lock(db.engine, name):
            yield
    else:
        from bastion.runtime import platform

        with _file_lock(Path(platform().settings.data_dir) / "locks" / f"{name}.lock", name):
            yield


@contextmanager
def _advisory_lock(engine: Engine, name: str) -> Iterator[None]:
    key = advisory_key(name)
    connection = engine.connect()
    try:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        held = bool(got.scalar())
        connection.commit()  # a session-level lock outlives the transaction
        if not held:
            raise JobRunning(name)
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
            except Exception:
                # Never hand a connection that may still hold the lock back to the pool.
                connection.invalidate()
                raise
    finally:
        connection.close()


@contextmanager
def _file_lock(path: Path, name: str) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobRunning(name) from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
