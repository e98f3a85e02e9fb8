"""The SQLite write gate: writers queue and are handed the database at once."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from bastion.sqlite_gate import GatedConnection, lock_path_for


def connect(path, timeout: float = 15.0) -> GatedConnection:
    connection = sqlite3.connect(
        path, timeout=timeout, check_same_thread=False, factory=GatedConnection
    )
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "gate.db")
    first = connect(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    first.commit()
    first.close()
    return path


def test_a_second_writer_waits_for_the_first_and_then_writes(database):
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO t VALUES (1)")  # holds the gate until its commit
    done = threading.Event()

    def write() -> None:
        second.execute("INSERT INTO t VALUES (2)")
        second.commit()
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not done.wait(0.3)  # queued behind the open write transaction
    # Readers are not gated: they read the last committed state meanwhile.
    reader = connect(database)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)
    first.commit()
    assert done.wait(5)
    thread.join()
    assert sorted(x for (x,) in reader.execute("SELECT x FROM t")) == [1, 2]


def test_waiting_is_bounded_like_the_busy_timeout(database):
    first, second = connect(database), connect(database, timeout=0.2)
    first.execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.execute("INSERT INTO t VALUES (2)")
    assert time.monotonic() - started < 5
    first.rollback()  # a rollback releases the gate too
    second.execute("INSERT INTO t VALUES (3)")
    second.commit()
    assert second.execute("SELECT x FROM t").fetchall() == [(3,)]


def test_a_failed_write_keeps_the_gate_until_its_transaction_ends(database):
    first, second = connect(database), connect(database, timeout=0.2)
    first.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError):
        first.execute("INSERT INTO missing VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.execute("INSERT INTO t VALUES (2)")
    first.commit()
    second.execute("INSERT INTO t VALUES (2)")
    second.commit()
    assert sorted(x for (x,) in second.execute("SELECT x FROM t")) == [1, 2]


def test_closing_a_connection_releases_its_gate(database):
    first, second = connect(database), connect(database, timeout=1)
    first.execute("INSERT INTO t VALUES (1)")
    first.close()  # the uncommitted write is discarded and the gate freed
    second.execute("INSERT INTO t VALUES (2)")
    second.commit()
    assert second.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_many_threads_writing_lose_nothing(database):
    def write(offset: int) -> None:
        connection = connect(database)
        for number in range(200):
            connection.execute("INSERT INTO t VALUES (?)", (offset + number,))
            connection.commit()
        connection.close()

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check = connect(database)
    assert check.execute("SELECT count(DISTINCT x) FROM t").fetchone() == (800,)


def test_the_lock_file_sits_beside_the_database_and_memory_databases_have_none(database):
    import os

    connect(database).close()
    assert os.path.exists(lock_path_for(database))
    memory = sqlite3.connect(":memory:", factory=GatedConnection)
    memory.execute("CREATE TABLE t (x)")
    memory.execute("INSERT INTO t VALUES (1)")
    memory.commit()


def test_a_with_block_and_a_dropped_connection_release_the_gate(database):
    import gc

    first, second = connect(database), connect(database, timeout=0.5)
    with first:  # commits in C, past the commit() override
        first.execute("INSERT INTO t VALUES (1)")
    second.execute("INSERT INTO t VALUES (2)")
    second.commit()

    dropped = connect(database)
    dropped.execute("INSERT INTO t VALUES (3)")  # holds the gate, never closed
    del dropped
    gc.collect()
    second.execute("INSERT INTO t VALUES (4)")
    second.commit()
    assert sorted(x for (x,) in second.execute("SELECT x FROM t")) == [1, 2, 4]


@pytest.mark.parametrize(
    "statement", ["/* note */ INSERT INTO t VALUES (5)", "-- note\nINSERT INTO t VALUES (5)"]
)
def test_writes_behind_comments_take_the_gate(database, statement):
    first, second = connect(database), connect(database, timeout=0.2)
    first.execute(statement)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.execute("INSERT INTO t VALUES (6)")
    first.commit()


def test_a_write_behind_a_with_clause_is_gated_and_lets_go_when_done(database):
    # The driver runs it outside a transaction (it commits at once), so the gate is
    # held only while it runs.
    first, second = connect(database), connect(database, timeout=0.2)
    first.execute("WITH n(v) AS (SELECT 5) INSERT INTO t SELECT v FROM n")
    second.execute("INSERT INTO t VALUES (6)")
    second.commit()
    assert sorted(x for (x,) in second.execute("SELECT x FROM t")) == [5, 6]


def test_connection_settings_do_not_wait_for_a_writer(database):
    first = connect(database)
    first.execute("INSERT INTO t VALUES (1)")  # holds the gate
    started = time.monotonic()
    other = connect(database, timeout=5)  # sets journal_mode=WAL
    other.execute("PRAGMA foreign_keys=ON")
    other.execute("PRAGMA synchronous=NORMAL")
    assert time.monotonic() - started < 1
    first.commit()
