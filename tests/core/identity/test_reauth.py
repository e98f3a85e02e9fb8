"""Re-authentication: the password (and a code with MFA) again before sensitive actions."""

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
from bastion.models import ApiToken, User, UserSession
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_token, sign_in
from tests.core.identity.conftest import add_user, logged_text

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def age_authentication(app, email: str = ADMIN_EMAIL, seconds: int = 3600) -> None:
    """Pretend the user's last sign-in was ``seconds`` ago (the session itself stays fresh)."""
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id)
            .values(authenticated_at=int(time.time()) - seconds)
        )
        db.session.commit()


def authenticated_at(app, email: str = ADMIN_EMAIL) -> int:
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        return max(
            db.session.scalars(
                select(UserSession.authenticated_at).where(
                    UserSession.user_id == user_id, UserSession.ended_at.is_(None)
                )
            )
        )


def reauth(client, password: str, next_: str = "/account/tokens", **fields):
    token = csrf_token(client, f"/account/reauth?next={next_}")
    data = {"csrf_token": token, "password": password, "next": next_, **fields}
    return client.post("/account/reauth", data=data)


def create_token(client):
    page = client.get("/account/tokens").get_data(as_text=True)
    data = {"csrf_token": CSRF_RE.search(page).group(1), "name": "sync", "expires_days": "30"}
    return client.post("/account/tokens", data=data)


def test_the_page_needs_a_signed_in_user(client):
    response = client.get("/account/reauth")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_stale_sign_in_is_sent_to_reauth_and_back(app, admin_client, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    age_authentication(app)
    refused = admin_client.get("/account/tokens")
    assert refused.status_code == 200  # reading the list is not sensitive
    response = create_token(admin_client)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/reauth?next=")

    page = admin_client.get("/account/reauth?next=/account/tokens")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="password"' in html and 'name="code"' not in html
    assert 'name="next" value="/account/tokens"' in html

    before = authenticated_at(app)
    response = reauth(admin_client, ADMIN_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/account/tokens"
    assert authenticated_at(app) > before
    assert create_token(admin_client).status_code == 201
    assert any(
        getattr(r, "action", None) == "auth.reauth" and r.outcome == "success"
        for r in caplog.records
    )


def test_a_wrong_password_is_refused_and_audited(app, admin_client, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    age_authentication(app)
    before = authenticated_at(app)
    response = reauth(admin_client, "not my password at all")
    assert response.status_code == 422
    assert "password is not correct" in response.get_data(as_text=True)
    assert authenticated_at(app) == before
    assert create_token(admin_client).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(ApiToken)) is None
    assert any(
        getattr(r, "action", None) == "auth.reauth" and r.outcome == "failure"
        for r in caplog.records
    )
    assert "not my password" not in logged_text(caplog)


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/x", "/\\evil.example", "javascript:alert(1)", ""],
)
def test_only_local_next_targets_are_followed(admin_client, target):
    response = reauth(admin_client, ADMIN_PASSWORD, next_=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_reauth_is_throttled_like_sign_in(app, admin_client, monkeypatch):
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000)
    free = throttle.ACCOUNT_POLICY.free_failures
    for _ in range(free + 1):
        assert reauth(admin_client, "wrong password, again").status_code == 422
    response = reauth(admin_client, ADMIN_PASSWORD)
    assert response.status_code == 429
    assert "Wait a minute" in response.get_data(as_text=True)
    # The waiting is over: the right password works again.
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000 + 120)
    assert reauth(admin_client, ADMIN_PASSWORD).status_code == 302


@pytest.fixture
def mfa_user(app, client):
    """A signed-in user who then turned MFA on; returns (secret, recovery codes)."""
    add_user(app, "mfa@example.com", "mfa user long password")
    assert sign_in(client, "mfa@example.com", "mfa user long password").status_code == 302
    secret = mfa.new_secret()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "mfa@example.com"))
        codes = mfa.enable_mfa(user, secret, mfa.current_step() - 5)
    return secret, codes


def test_with_mfa_a_code_is_needed_too(app, client, mfa_user):
    secret, codes = mfa_user
    page = client.get("/account/reauth").get_data(as_text=True)
    assert 'name="code"' in page
    age_authentication(app, "mfa@example.com")
    assert reauth(client, "mfa user long password").status_code == 422
    assert reauth(client, "mfa user long password", code="000000").status_code == 422
    code = pyotp.TOTP(secret).now()
    assert reauth(client, "wrong password here", code=code).status_code == 422
    # The wrong password did not use the code up.
    response = reauth(client, "mfa user long password", code=code)
    assert response.status_code == 302 and response.headers["Location"] == "/account/tokens"
    # A code works once.
    assert reauth(client, "mfa user long password", code=code).status_code == 422
    # A recovery code works, once.
    assert reauth(client, "mfa user long password", code=codes[0]).status_code == 302
    assert reauth(client, "mfa user long password", code=codes[0]).status_code == 422


def test_wrong_reauth_codes_are_reserved_before_the_check(app, client, mfa_user, monkeypatch):
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000)
    secret, _codes = mfa_user
    code = pyotp.TOTP(secret).now()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(throttle.MFA_POLICY.free_failures + 1):
        assert reauth(client, "mfa user long password", code=wrong).status_code == 422
    # Delayed: the right code is refused without being checked, so it is not used up.
    assert reauth(client, "mfa user long password", code=code).status_code == 429
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000 + 120)
    assert reauth(client, "mfa user long password", code=code).status_code == 302


def test_racing_reauth_codes_reach_the_check_only_as_often_as_the_policy_allows(app, monkeypatch):
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000)
    add_user(app, "mfa@example.com", "mfa user long password")
    clients = [app.test_client() for _ in range(16)]
    for one in clients:
        assert sign_in(one, "mfa@example.com", "mfa user long password").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "mfa@example.com"))
        secret = mfa.new_secret()
        mfa.enable_mfa(user, secret, mfa.current_step() - 5)
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    tokens = [csrf_token(one, "/account/reauth") for one in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def submit(one, token: str) -> None:
        try:
            barrier.wait(timeout=60)
            data = {
                "csrf_token": token,
                "password": "mfa user long password",
                "code": wrong,
                "next": "/",
            }
            response = one.post("/account/reauth", data=data)
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
    assert len(statuses) == len(clients)
    # Checked (422) at most as often as the MFA policy lets through at one moment; the
    # rest were throttled (429) on the account or the MFA key before any check.
    checked = statuses.count(422)
    assert 1 <= checked <= throttle.MFA_POLICY.free_failures + 1, statuses
    assert statuses.count(429) == len(clients) - checked, statuses
