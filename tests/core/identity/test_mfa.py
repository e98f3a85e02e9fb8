"""TOTP MFA through the real pages: enrolment, the sign-in code step, single use, replays,
recovery codes, MFA required by a role, turning MFA off and an administrator's reset.

Time is injected: ``bastion.mfa.now`` and ``bastion.throttle.now`` are patched with a
clock the test moves, and codes are made with ``pyotp.TOTP(secret).at(t)``.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import pyotp
import pytest
from sqlalchemy import select, update

from bastion import mfa, throttle
from bastion.db import db
from bastion.models import RecoveryCode, Role, User, UserSession
from bastion.web.auth import CODE_FAILED, PENDING_ENDED, RECOVERY_CODE_FAILED
from tests.conftest import CSRF_RE, csrf_token, sign_in
from tests.core.identity.conftest import logged_text

EMAIL = "mfa.user@example.com"
PASSWORD = "a long enough test password"
SECRET_RE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7]+)<')
RECOVERY_RE = re.compile(r"<code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</code>")


class Clock:
    """Starts at the beginning of the current 30-second step; moved by the test."""

    def __init__(self) -> None:
        self.t = float((int(time.time()) // 30) * 30 + 1)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(mfa, "now", c.now)
    monkeypatch.setattr(throttle, "now", lambda: int(c.t))
    return c


def code_at(secret: str, t: float) -> str:
    return pyotp.TOTP(secret).at(t)


def enrol(client, clock: Clock) -> tuple[str, list[str]]:
    """Enrol the signed-in client's user; returns the secret and the recovery codes."""
    page = client.get("/account/mfa").get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1)
    token = CSRF_RE.search(page).group(1)
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, clock.t), "csrf_token": token}
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    codes = RECOVERY_RE.findall(done.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def password_step(client, email: str = EMAIL, password: str = PASSWORD, **fields: str):
    response = sign_in(client, email, password, **fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/login/code"
    return response


def submit_code(client, *, code: str | None = None, recovery_code: str | None = None):
    token = csrf_token(client, "/login/code")
    data = {"csrf_token": token}
    if code is not None:
        data["code"] = code
    if recovery_code is not None:
        data["recovery_code"] = recovery_code
    return client.post("/login/code", data=data)


def sign_in_with_code(client, code: str, email: str = EMAIL, password: str = PASSWORD):
    password_step(client, email, password)
    return submit_code(client, code=code)


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash flash--\w+"[^>]*>([^<]*)</p>', page)


def user_row(app, email: str = EMAIL) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(user)
        return user


@pytest.fixture
def enrolled(app, user_factory, clock) -> str:
    """A user with MFA on; returns the TOTP secret. The clock is past the enrolment step."""
    user_factory(EMAIL, PASSWORD, roles=["clerk"])
    client = app.test_client()
    assert sign_in(client, EMAIL, PASSWORD).status_code == 302
    secret, _codes = enrol(client, clock)
    clock.advance(30)
    return secret


# Enrolment ---------------------------------------------------------------------------


def test_enrolment_page_shows_a_qr_code_and_the_secret(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    response = client.get("/account/mfa")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<svg width="' in page and 'class="qr-code"' in page
    assert "style=" not in page  # the CSP forbids inline styles
    secret = SECRET_RE.search(page).group(1)
    assert len(secret) >= 32
    assert re.search(r'<input[^>]*name="code"', page)
    # Reloading shows the same secret until it is confirmed.
    assert SECRET_RE.search(client.get("/account/mfa").get_data(as_text=True)).group(1) == secret


def test_enrolment_needs_a_correct_code(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    page = client.get("/account/mfa").get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1)
    wrong = f"{(int(code_at(secret, clock.t)) + 1) % 1_000_000:06d}"
    refused = client.post(
        "/account/mfa/confirm", data={"code": wrong, "csrf_token": CSRF_RE.search(page)[1]}
    )
    assert refused.status_code == 422
    assert "That code does not match" in refused.get_data(as_text=True)
    assert user_row(app).mfa_secret is None

    token = csrf_token(client, "/account/mfa")
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, clock.t), "csrf_token": token}
    )
    assert done.status_code == 200
    assert len(RECOVERY_RE.findall(done.get_data(as_text=True))) == 10
    stored = user_row(app)
    assert stored.mfa_enabled_at is not None
    # Stored encrypted, bound to the user: the secret is not in the column.
    assert stored.mfa_secret.startswith("v1:") and secret not in stored.mfa_secret
    # Enrolled: the page shows the status, never the codes again.
    status = client.get("/account/mfa").get_data(as_text=True)
    assert "10 of 10" in status and not RECOVERY_RE.search(status)
    assert 'id="totp-secret"' not in status


def test_the_enrolment_code_cannot_be_used_to_sign_in(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    secret, _ = enrol(client, clock)
    response = sign_in_with_code(app.test_client(), code_at(secret, clock.t))
    assert response.status_code == 401


# Signing in --------------------------------------------------------------------------


def test_sign_in_asks_for_the_code_after_the_password(app, enrolled, clock):
    client = app.test_client()
    password_step(client)
    assert client.get("/").status_code == 302  # not signed in yet
    page = client.get("/login/code").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="code"', page)
    assert "Use a recovery code" in page
    response = submit_code(client, code=code_at(enrolled, clock.t))
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_previous_step_is_accepted_but_not_two_steps_ago(app, enrolled, clock):
    clock.advance(60)
    old = sign_in_with_code(app.test_client(), code_at(enrolled, clock.t - 60))
    assert old.status_code == 401
    assert CODE_FAILED in old.get_data(as_text=True)
    previous = sign_in_with_code(app.test_client(), code_at(enrolled, clock.t - 30))
    assert previous.status_code == 302


def test_wrong_codes_are_refused(app, enrolled, clock):
    for bad in ("000000" if code_at(enrolled, clock.t) != "000000" else "111111", "12345", ""):
        response = sign_in_with_code(app.test_client(), bad)
        assert response.status_code == 401


def test_a_replayed_code_is_refused_audited_and_reported(app, enrolled, clock, caplog):
    code = code_at(enrolled, clock.t)
    assert sign_in_with_code(app.test_client(), code).status_code == 302
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        replay = sign_in_with_code(app.test_client(), code)
    assert replay.status_code == 401
    assert CODE_FAILED in replay.get_data(as_text=True)
    refused = [r for r in caplog.records if getattr(r, "action", "") == "auth.mfa_replay_refused"]
    assert len(refused) == 1 and refused[0].outcome == "failure"
    assert code not in logged_text(caplog)
    assert user_row(app).mfa_replay_at is not None

    # The user is told at their next sign-in, once.
    clock.advance(30)
    client = app.test_client()
    assert sign_in_with_code(client, code_at(enrolled, clock.t)).status_code == 302
    told = flashes(client.get("/").get_data(as_text=True))
    assert any("Someone tried to reuse one of your sign-in codes on" in m for m in told)
    assert user_row(app).mfa_replay_at is None
    clock.advance(30)
    again = app.test_client()
    assert sign_in_with_code(again, code_at(enrolled, clock.t)).status_code == 302
    assert not any("reuse" in m for m in flashes(again.get("/").get_data(as_text=True)))


def test_a_code_older_than_the_last_accepted_one_is_a_replay(app, enrolled, clock):
    assert sign_in_with_code(app.test_client(), code_at(enrolled, clock.t)).status_code == 302
    clock.advance(30)
    assert sign_in_with_code(app.test_client(), code_at(enrolled, clock.t)).status_code == 302
    # The previous step's code is still inside the window, but older than the last used.
    assert sign_in_with_code(app.test_client(), code_at(enrolled, clock.t - 30)).status_code == 401


def test_next_is_kept_through_the_code_step(app, enrolled, clock):
    client = app.test_client()
    password_step(client, next="/account/mfa")
    response = submit_code(client, code=code_at(enrolled, clock.t))
    assert response.headers["Location"] == "/account/mfa"


def test_the_session_is_rotated_when_the_code_is_accepted(app, enrolled, clock):
    client = app.test_client()
    before = csrf_token(client)
    password_step(client)
    cookie_before = client.get_cookie("bastion_session").value
    response = client.post(
        "/login/code", data={"code": code_at(enrolled, clock.t), "csrf_token": before}
    )
    assert response.status_code == 302
    assert client.get_cookie("bastion_session").value != cookie_before
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.get("/").status_code == 200


def test_the_code_step_expires(app, enrolled, clock):
    client = app.test_client()
    password_step(client)
    clock.advance(301)
    page = client.get("/login/code", follow_redirects=True).get_data(as_text=True)
    assert PENDING_ENDED in page
    response = client.post(
        "/login/code",
        data={"code": code_at(enrolled, clock.t), "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_the_code_step_without_a_password_goes_back_to_sign_in(client):
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    posted = client.post("/login/code", data={"code": "123456", "csrf_token": csrf_token(client)})
    assert posted.status_code == 302 and posted.headers["Location"] == "/login"


def test_five_wrong_codes_need_the_password_again_even_with_an_old_cookie(app, enrolled, clock):
    client = app.test_client()
    password_step(client)
    token = csrf_token(client, "/login/code")
    fresh_cookie = client.get_cookie("bastion_session").value
    wrong = "000000" if code_at(enrolled, clock.t) != "000000" else "111111"
    for _ in range(5):
        response = client.post("/login/code", data={"code": wrong, "csrf_token": token})
        assert response.status_code == 401
    clock.advance(120)  # past the per-user delay: only the attempt count is left
    # Replaying the cookie from before the attempts gives none back: they count on the server.
    client.set_cookie("bastion_session", fresh_cookie)
    right = client.post(
        "/login/code", data={"code": code_at(enrolled, clock.t), "csrf_token": token}
    )
    assert right.status_code == 302 and right.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    # A new password step starts over.
    assert sign_in_with_code(client, code_at(enrolled, clock.t)).status_code == 302


def test_wrong_codes_slow_down_the_user_and_are_audited(app, enrolled, clock, caplog):
    wrong = "000000" if code_at(enrolled, clock.t) != "000000" else "111111"
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        password_step(client)
        for _ in range(5):
            assert submit_code(client, code=wrong).status_code == 401
        password_step(client)
        assert submit_code(client, code=wrong).status_code == 401  # the 6th: now a delay
        blocked = submit_code(client, code=code_at(enrolled, clock.t))
    assert blocked.status_code == 429
    failures = [r for r in caplog.records if getattr(r, "action", "") == "auth.mfa_verify"]
    assert [r.outcome for r in failures] == ["failure"] * 6 + ["throttled"]
    clock.advance(2)
    assert submit_code(client, code=code_at(enrolled, clock.t)).status_code == 302


# Recovery codes ----------------------------------------------------------------------


def test_a_recovery_code_works_once_and_only_once(app, user_factory, clock, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    _secret, codes = enrol(client, clock)
    assert len(set(codes)) == 10

    first = app.test_client()
    password_step(first)
    page = first.get("/login/code?recovery=1").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="recovery_code"', page)
    # Case, spaces and dashes do not matter.
    typed = codes[0].upper().replace("-", " ")
    assert submit_code(first, recovery_code=typed).status_code == 302
    assert first.get("/").status_code == 200

    second = app.test_client()
    password_step(second)
    again = submit_code(second, recovery_code=codes[0])
    assert again.status_code == 401
    assert RECOVERY_CODE_FAILED in again.get_data(as_text=True)
    assert submit_code(second, recovery_code=codes[1]).status_code == 302
    assert "8 of 10" in second.get("/account/mfa").get_data(as_text=True)
    for code in codes:
        assert code not in logged_text(caplog)
    with app.app_context():
        stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(stored) == 10 and not any(c.replace("-", "") in h for c in codes for h in stored)


def test_regenerated_recovery_codes_replace_the_old_ones(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    _secret, old_codes = enrol(client, clock)
    token = csrf_token(client, "/account/mfa")
    response = client.post("/account/mfa/recovery-codes", data={"csrf_token": token})
    assert response.status_code == 200
    new_codes = RECOVERY_RE.findall(response.get_data(as_text=True))
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)

    other = app.test_client()
    password_step(other)
    assert submit_code(other, recovery_code=old_codes[0]).status_code == 401
    assert submit_code(other, recovery_code=new_codes[0]).status_code == 302


def test_regenerating_recovery_codes_needs_a_recent_authentication(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    enrol(client, clock)
    token = csrf_token(client, "/account/mfa")
    with app.app_context():
        db.session.execute(update(UserSession).values(authenticated_at=int(time.time()) - 3600))
        db.session.commit()
    response = client.post("/account/mfa/recovery-codes", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/reauth")
    with app.app_context():
        assert (
            db.session.scalar(select(RecoveryCode.id).where(RecoveryCode.used_at.is_not(None)))
            is None
        )
        assert len(db.session.scalars(select(RecoveryCode.id)).all()) == 10


# Required MFA, turning it off, an administrator's reset ------------------------------


def _require_mfa_for(app, role: str) -> None:
    with app.app_context():
        db.session.execute(update(Role).where(Role.name == role).values(require_mfa=True))
        db.session.commit()


def test_a_user_whose_role_requires_mfa_must_enrol_first(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD, roles=["teller"])
    _require_mfa_for(app, "teller")
    client = app.test_client()
    signed_in = sign_in(client, EMAIL, PASSWORD)
    assert signed_in.status_code == 302
    for path in ("/", "/status/", "/admin/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/account/mfa"
    page = client.get("/account/mfa").get_data(as_text=True)
    assert "must use two-step sign-in" in page
    enrol(client, clock)
    assert client.get("/").status_code == 200
    # Required: it cannot be turned off.
    status = client.get("/account/mfa").get_data(as_text=True)
    assert "/account/mfa/disable" not in status
    refused = client.post("/account/mfa/disable", data={"csrf_token": CSRF_RE.search(status)[1]})
    assert refused.status_code == 302
    assert user_row(app).mfa_enabled


def test_a_user_may_turn_optional_mfa_off(app, enrolled, clock, caplog):
    clock_code = code_at(enrolled, clock.t)
    client = app.test_client()
    assert sign_in_with_code(client, clock_code).status_code == 302
    token = csrf_token(client, "/account/mfa")
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        response = client.post("/account/mfa/disable", data={"csrf_token": token})
    assert response.status_code == 302
    assert any(getattr(r, "action", "") == "mfa.disable" for r in caplog.records)
    stored = user_row(app)
    assert stored.mfa_secret is None and stored.mfa_last_step is None
    assert client.get("/").status_code == 200  # this session stays
    # Signing in needs only the password now.
    assert sign_in(app.test_client(), EMAIL, PASSWORD).headers["Location"] == "/"


def test_reset_mfa_clears_it_and_ends_every_session(app, enrolled, clock, caplog):
    client = app.test_client()
    assert sign_in_with_code(client, code_at(enrolled, clock.t)).status_code == 302
    with app.app_context(), caplog.at_level(logging.INFO, logger="bastion.audit"):
        user = db.session.scalar(select(User).where(User.email == EMAIL))
        mfa.reset_mfa(user, actor="user:1")
    assert [r.outcome for r in caplog.records if getattr(r, "action", "") == "mfa.reset"] == [
        "success"
    ]
    assert client.get("/").status_code == 302
    stored = user_row(app)
    assert stored.mfa_secret is None and stored.mfa_enabled_at is None
    with app.app_context():
        assert db.session.scalars(select(RecoveryCode)).all() == []
    assert sign_in(app.test_client(), EMAIL, PASSWORD).headers["Location"] == "/"


def test_check_second_factor_takes_either_kind_of_code(app, user_factory, clock):
    user_factory(EMAIL, PASSWORD)
    client = app.test_client()
    sign_in(client, EMAIL, PASSWORD)
    secret, codes = enrol(client, clock)
    clock.advance(30)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == EMAIL))
        assert mfa.check_second_factor(user, code_at(secret, clock.t))
        assert not mfa.check_second_factor(user, code_at(secret, clock.t))  # used
        assert mfa.check_second_factor(user, codes[3])
        assert not mfa.check_second_factor(user, codes[3])
        assert not mfa.check_second_factor(user, "not a code")


# The per-user code throttle is a reservation, not a check followed by a count ----------


def _post_codes_at_once(clients: list, code: str) -> list[int]:
    """Each client has its own pending sign-in; all post ``code`` at the same moment."""
    tokens = [csrf_token(client, "/login/code") for client in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(client, token: str) -> None:
        try:
            barrier.wait(timeout=60)
            response = client.post("/login/code", data={"code": code, "csrf_token": token})
            with lock:
                statuses.append(response.status_code)
        except BaseException as exc:  # reported below, never lost in the thread
            with lock:
                errors.append(exc)

    threads = [
        threading.Thread(target=submit, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    return statuses


def test_racing_wrong_codes_reach_the_check_only_as_often_as_the_policy_allows(
    app, enrolled, clock
):
    # Twenty pending sign-ins of one user (each with attempts to spare) guess at once.
    clients = [app.test_client() for _ in range(20)]
    for client in clients:
        password_step(client)
    wrong = "000000" if code_at(enrolled, clock.t) != "000000" else "111111"
    statuses = _post_codes_at_once(clients, wrong)
    # The clock stands still: the free failures and the one that starts the delay are
    # checked (401); every other attempt is refused before its code is looked at (429).
    free = throttle.MFA_POLICY.free_failures
    assert sorted(statuses) == [401] * (free + 1) + [429] * (20 - free - 1), statuses


def test_a_correct_password_does_not_reset_the_code_throttle(app, enrolled, clock):
    wrong = "000000" if code_at(enrolled, clock.t) != "000000" else "111111"
    client = app.test_client()
    # 5 + 1 wrong codes over two password steps: the user is delayed.
    for wrong_codes in (5, 1):
        password_step(client)
        for _ in range(wrong_codes):
            assert submit_code(client, code=wrong).status_code == 401
    # A correct password (which clears the account's password throttle) changes nothing
    # for the code throttle: the right code is refused without being checked...
    password_step(client)
    assert submit_code(client, code=code_at(enrolled, clock.t)).status_code == 429
    # ...and so it was not used up: once the delay is over it signs in.
    clock.advance(2)
    assert submit_code(client, code=code_at(enrolled, clock.t - 2)).status_code == 302
