"""Job locks: one run of a scheduled job at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bastion.api import JobRunning, job_lock
from bastion.job_locks import advisory_key


def test_a_second_run_is_refused_while_the_first_holds_the_lock(app):
    with app.app_context(), job_lock("nightly-job"):
        with pytest.raises(JobRunning) as refused, job_lock("nightly-job"):
            pytest.fail("the second run must not start")
        assert "nightly-job" in str(refused.value)
        with job_lock("other-job"):  # other jobs are not held up
            pass


def test_the_lock_is_released_at_the_end_and_on_errors(app):
    with app.app_context():
        with job_lock("nightly-job"):
            pass
        with pytest.raises(RuntimeError), job_lock("nightly-job"):
            raise RuntimeError("the job failed")
        with job_lock("nightly-job"):  # free again
            pass


def test_a_lock_held_elsewhere_blocks_this_process(app):
    """Another process (PostgreSQL: another session; SQLite: another open lock file)."""
    with app.app_context():
        from bastion.db import db

        if db.engine.dialect.name == "postgresql":
            from sqlalchemy import text

            with db.engine.connect() as other:
                other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": advisory_key("shared")})
                with pytest.raises(JobRunning), job_lock("shared"):
                    pass
                other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key("shared")})
                other.commit()
        else:
            import fcntl
            import os

            from bastion.runtime import platform

            path = platform().settings.data_dir / "locks" / "shared.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                with pytest.raises(JobRunning), job_lock("shared"):
                    pass
            finally:
                os.close(descriptor)
        with job_lock("shared"):
            pass


def test_lock_names_are_plain_and_keys_stable():
    with pytest.raises(ValueError), job_lock("../etc/passwd"):
        pass
    assert advisory_key("sales-follow-ups") == advisory_key("sales-follow-ups")
    assert advisory_key("a") != advisory_key("b")
