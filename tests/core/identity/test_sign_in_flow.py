"""The sign-in page tells nobody anything: unknown users, wrong passwords, disabled and
invited accounts and throttled attempts get byte-identical answers; every attempt is
audited without the password.
"""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select, update

from bastion import throttle
from bastion.db import db
from bastion.models import AuthThrottle, User
from bastion.passwords import Passwords
from bastion.web.auth import SIGN_IN_FAILED
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CSRF_RE, sign_in
from tests.core.identity.conftest import logged_text

PASSWORD = "a long enough test password"


@pytest.fixture
def frozen(monkeypatch) -> dict[str, int]:
    clock = {"t": 1_900_000_000}
    monkeypatch.setattr(throttle, "now", lambda: clock["t"])
    return clock


def _answer(app, email: str, password: str) -> tuple[int, str, list[str]]:
    """Status, page (CSRF token and echoed email masked) and flashed messages."""
    client = app.test_client()
    response = sign_in(client, email, password)
    page = response.get_data(as_text=True)
    page = CSRF_RE.sub("TOKEN", page).replace(email.strip(), "EMAIL")
    page = re.sub(r'"X-CSRFToken": "[^"]+"', "TOKEN", page)
    flashed = re.findall(r'<p class="flash flash--\w+"[^>]*>([^<]*)</p>', page)
    return response.status_code, page, flashed


def _set(app, email: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(User).where(User.email == email).values(**values))
        db.session.commit()


def test_every_kind_of_failure_gets_the_same_answer(app, user_factory, frozen):
    user_factory("known@example.com", PASSWORD)
    user_factory("former@example.com", PASSWORD)
    _set(app, "former@example.com", active=False)
    user_factory("invited@example.com", PASSWORD)
    _set(app, "invited@example.com", password_hash="!")  # invited, no password chosen yet
    user_factory("locked@example.com", PASSWORD)
    for _ in range(5):  # the 5th failure blocks the account for a moment
        _answer(app, "locked@example.com", "not the password")

    answers = {
        "wrong password": _answer(app, "known@example.com", "not the password"),
        "unknown user": _answer(app, "nobody@example.com", PASSWORD),
        "disabled user": _answer(app, "former@example.com", PASSWORD),
        "invited user": _answer(app, "invited@example.com", "!"),
        "throttled, right password": _answer(app, "locked@example.com", PASSWORD),
    }
    first = answers["wrong password"]
    assert first[0] == 401
    assert first[2] == [SIGN_IN_FAILED]
    for kind, answer in answers.items():
        assert answer == first, kind


def test_an_unknown_email_is_throttled_like_a_real_one(app, frozen):
    known = [_answer(app, ADMIN_EMAIL, "not the password") for _ in range(6)]
    unknown = [_answer(app, "nobody@example.com", "not the password") for _ in range(6)]
    assert [a[:1] + a[2:] for a in known] == [u[:1] + u[2:] for u in unknown]
    with app.app_context():
        rows = {
            row.key: (row.failures, row.blocked_until)
            for row in db.session.scalars(select(AuthThrottle))
            if row.key.startswith("acct:")
        }
    assert (
        rows[throttle.account_key(ADMIN_EMAIL)] == rows[throttle.account_key("nobody@example.com")]
    )


def test_the_invited_user_is_checked_against_the_dummy_hash(app, user_factory, monkeypatch):
    user_factory("invited@example.com", PASSWORD)
    _set(app, "invited@example.com", password_hash="!")
    hashed: list[str] = []

    passwords: Passwords = app.extensions["bastion.passwords"]

    class SpyHasher:
        def __init__(self, real) -> None:
            self.real = real

        def __getattr__(self, name: str):
            return getattr(self.real, name)

        def verify(self, stored: str, password: str) -> bool:
            hashed.append(stored)
            return self.real.verify(stored, password)

    monkeypatch.setattr(passwords, "hasher", SpyHasher(passwords.hasher))
    assert sign_in(app.test_client(), "invited@example.com", "!").status_code == 401
    assert len(hashed) == 1 and hashed[0].startswith("$argon2")  # real work, same cost
    assert passwords.verify("!", "!") is False
    assert passwords.verify(None, "anything") is False


def test_every_attempt_is_audited_without_the_password(app, client, frozen, caplog):
    secret = "not the password but secret"
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        for _ in range(5):
            sign_in(client, ADMIN_EMAIL, secret)
        sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)  # throttled
        frozen["t"] += 1
        sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    outcomes = [r.outcome for r in caplog.records if getattr(r, "action", "") == "auth.sign_in"]
    assert outcomes == ["failure"] * 5 + ["throttled", "success"]
    logged = logged_text(caplog)
    assert secret not in logged and ADMIN_PASSWORD not in logged
    actors = {r.actor for r in caplog.records if getattr(r, "action", "") == "auth.sign_in"}
    with app.app_context():
        admin_id = db.session.scalar(select(User.id).where(User.email == ADMIN_EMAIL))
    assert actors == {f"user:{admin_id}"}


def test_unknown_users_are_audited_as_anonymous(client, frozen, caplog):
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        sign_in(client, "nobody@example.com", "whatever it is")
    entries = [r for r in caplog.records if getattr(r, "action", "") == "auth.sign_in"]
    assert [(r.actor, r.outcome) for r in entries] == [("anonymous", "failure")]
    assert "nobody@example.com" not in logged_text(caplog)


def test_users_without_mfa_are_signed_in_after_the_password(client):
    response = sign_in(client, next="/admin/plugins")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/plugins"
    assert client.get("/").status_code == 200
