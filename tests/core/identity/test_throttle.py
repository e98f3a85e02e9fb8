"""Sign-in throttling: growing delays per account and per address, checked before the
password, holding under concurrency, decaying after a quiet hour, never revealing itself.

Time is injected by patching ``bastion.throttle.now``.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update

from bastion import throttle
from bastion.db import db
from bastion.models import AuthThrottle
from bastion.passwords import Passwords
from bastion.web.auth import SIGN_IN_FAILED
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_token, sign_in


class Clock:
    def __init__(self, start: int = 1_900_000_000) -> None:
        self.t = start

    def now(self) -> int:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(throttle, "now", c.now)
    return c


@pytest.fixture
def password_checks(monkeypatch) -> list[str | None]:
    """Every Passwords.verify call's stored hash: None means the dummy, no real check."""
    seen: list[str | None] = []
    real = Passwords.verify

    def spy(self, stored_hash, password):
        seen.append(stored_hash)
        return real(self, stored_hash, password)

    monkeypatch.setattr(Passwords, "verify", spy)
    return seen


# The policy ---------------------------------------------------------------------------


def test_the_account_policy_delays():
    delays = [throttle.ACCOUNT_POLICY.delay(n) for n in range(1, 14)]
    assert delays == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert throttle.ACCOUNT_POLICY.delay(99) == 60
    assert throttle.ACCOUNT_POLICY.delay(100) == 3600
    assert [throttle.ADDRESS_POLICY.delay(n) for n in (20, 21, 22, 27, 500)] == [0, 1, 2, 60, 60]


def _attack(app, clock: Clock, key: str, policy: throttle.Policy, seconds: int) -> list[int]:
    """The fastest possible attacker: tries again the moment the key is unblocked."""
    start, allowed = clock.t, []
    with app.app_context():
        while clock.t < start + seconds:
            if throttle.reserve(key, policy):
                allowed.append(clock.t)
            blocked_until = db.session.scalar(
                select(AuthThrottle.blocked_until).where(AuthThrottle.key == key)
            )
            db.session.rollback()
            clock.t = max(clock.t, blocked_until)
    return allowed


def _most_in_an_hour(times: list[int]) -> int:
    return max(sum(1 for t in times if first <= t < first + 3600) for first in times)


def test_at_most_100_attempts_per_account_per_hour_reach_the_check(app, clock):
    times = _attack(
        app, clock, throttle.account_key("victim@example.com"), throttle.ACCOUNT_POLICY, 4 * 3600
    )
    assert _most_in_an_hour(times) <= 100
    assert len([t for t in times if t < times[0] + 3600]) <= 75  # about 70 in the first hour


def test_the_hourly_cap_holds_even_with_short_delays(app, clock):
    """Belt and braces: a policy with 1 s delays still lets only 100 through per hour."""
    eager = throttle.Policy(free_failures=4, max_delay=1, hourly_cap=100)
    times = _attack(app, clock, "acct:eager", eager, 3 * 3600)
    assert _most_in_an_hour(times) <= 100


# Through the sign-in page --------------------------------------------------------------


def test_after_the_free_attempts_even_the_right_password_waits(client, clock, password_checks):
    for _ in range(4):
        assert sign_in(client, ADMIN_EMAIL, "wrong password, sorry").status_code == 401
    # The 5th failure blocks the account for a second.
    assert sign_in(client, ADMIN_EMAIL, "wrong password, sorry").status_code == 401
    password_checks.clear()
    throttled = sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert throttled.status_code == 401
    assert SIGN_IN_FAILED in throttled.get_data(as_text=True)
    assert password_checks == [None]  # the dummy hash only: the password was not checked
    assert client.get("/").status_code == 302
    clock.t += 1
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


def test_a_success_resets_the_account_count(client, clock):
    for _ in range(4):
        sign_in(client, ADMIN_EMAIL, "wrong password, sorry")
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    for _ in range(4):
        sign_in(client, ADMIN_EMAIL, "wrong password, sorry")
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302


def test_the_delay_grows_and_decays_after_a_quiet_hour(app, client, clock):
    key = throttle.account_key(ADMIN_EMAIL)
    delays = []
    for _ in range(7):
        sign_in(client, ADMIN_EMAIL, "wrong password, sorry")
        with app.app_context():
            row = db.session.get(AuthThrottle, key)
            delays.append(row.blocked_until - row.last_attempt)
        clock.t += 60
    assert delays == [0, 0, 0, 0, 1, 2, 4]  # 4 free failures, then 2^(n-5) seconds
    with app.app_context():
        row = db.session.get(AuthThrottle, key)
        assert row.failures == 7
    clock.t += 3601
    sign_in(client, ADMIN_EMAIL, "wrong password, sorry")
    with app.app_context():
        row = db.session.get(AuthThrottle, key)
        assert row.failures == 1 and row.blocked_until == clock.t


def test_the_account_key_ignores_case_and_spaces(client, clock, password_checks):
    for email in (
        "Admin@Example.com",
        " admin@example.com",
        "ADMIN@EXAMPLE.COM ",
        ADMIN_EMAIL,
        ADMIN_EMAIL,
    ):
        sign_in(client, email, "wrong password, sorry")
    password_checks.clear()
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 401
    assert password_checks == [None]


def test_an_address_is_throttled_across_accounts(app, clock, password_checks):
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for n in range(21):  # password spraying: one try per account
        assert sign_in(attacker, f"user{n}@example.com", "Summer2026!").status_code == 401
    password_checks.clear()
    assert sign_in(attacker, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 401
    assert password_checks == [None]
    # Another address is not affected, and the admin's own account was never touched.
    colleague = app.test_client()
    colleague.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert sign_in(colleague, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
    clock.t += 1
    assert sign_in(attacker, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302


def test_colleagues_behind_one_address_do_not_slow_each_other(app, user_factory, clock):
    for n in range(5):
        user_factory(f"clerk{n}@example.com", "a long enough test password")
    for _round in range(6):
        for n in range(5):
            office = app.test_client()
            office.environ_base["REMOTE_ADDR"] = "192.0.2.1"
            assert (
                sign_in(office, f"clerk{n}@example.com", "a long enough test password").status_code
                == 302
            )
    with app.app_context():
        row = db.session.get(AuthThrottle, throttle.address_key("192.0.2.1"))
        assert row is None or row.failures == 0


def test_concurrent_attempts_get_no_more_than_the_policy_allows(app, clock):
    """Twenty racing reservations at one instant: the 4 free ones and the 5th, no more."""
    key = throttle.account_key("raced@example.com")
    barrier = threading.Barrier(20)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        with app.app_context():
            barrier.wait(timeout=30)
            allowed = throttle.reserve(key, throttle.ACCOUNT_POLICY)
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 20
    assert results.count(True) == 5
    with app.app_context():
        assert db.session.get(AuthThrottle, key).failures == 5


def test_old_rows_are_pruned(app, client, clock, monkeypatch):
    with app.app_context():
        throttle.reserve("acct:old", throttle.ACCOUNT_POLICY)
        db.session.execute(
            update(AuthThrottle).values(last_attempt=clock.t - 2 * 86400, blocked_until=0)
        )
        db.session.commit()
    monkeypatch.setattr(throttle, "PRUNE_ONE_IN", 1)
    sign_in(client, "someone@example.com", "wrong password, sorry")
    with app.app_context():
        assert db.session.get(AuthThrottle, "acct:old") is None
        assert db.session.scalar(select(func.count()).select_from(AuthThrottle)) == 2


def test_the_throttle_stores_no_email_address(app, client, clock):
    sign_in(client, "private.person@example.com", "wrong password, sorry")
    with app.app_context():
        keys = db.session.scalars(select(AuthThrottle.key)).all()
    assert throttle.account_key("private.person@example.com") in keys
    assert not any("private" in key for key in keys)
