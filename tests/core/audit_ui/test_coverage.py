"""Events added to the audit trail's coverage: token use, lockout, the first administrator."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from bastion import throttle
from bastion.db import db
from bastion.models import ApiToken, AuthThrottle, User, utcnow
from bastion.tokens import create_token, revoke
from tests.conftest import ADMIN_EMAIL, csrf_token
from tests.core.audit_ui.support import changes_of, entries
from tests.core.identity.test_mfa import EMAIL as MFA_EMAIL
from tests.core.identity.test_mfa import password_step, submit_code


def _token(app) -> tuple[int, str]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        token, raw = create_token(user, "sync job")
        return token.id, raw


def _use(client, raw: str) -> int:
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"}).status_code


def test_a_token_use_is_audited_first_and_then_once_an_hour(app):
    token_id, raw = _token(app)
    client = app.test_client()
    for _ in range(5):
        assert _use(client, raw) == 200
    (first,) = entries(app, "token.use", outcome="success")
    assert first.object_type == "api_token" and first.object_id == str(token_id)
    assert changes_of(first) == {"first_use": True}

    # Used a minute ago, within this hour: last_used_at moves, no new entry.
    with app.app_context():
        last = utcnow().replace(minute=0, second=0, microsecond=0)
        db.session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=last)
        )
        db.session.commit()
    assert _use(client, raw) == 200
    if utcnow().replace(minute=0, second=0, microsecond=0) == last:
        assert len(entries(app, "token.use", outcome="success")) == 1

    # Last used in an earlier hour: the first use of this hour is on record.
    with app.app_context():
        earlier = utcnow() - timedelta(hours=2)
        db.session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=earlier)
        )
        db.session.commit()
    assert _use(client, raw) == 200
    assert _use(client, raw) == 200
    uses = entries(app, "token.use", outcome="success")
    assert len(uses) == 2 and changes_of(uses[-1]) == {}


def test_every_refused_token_use_is_audited(app):
    token_id, raw = _token(app)
    client = app.test_client()
    assert _use(client, "bst_" + "x" * 40) == 401
    assert _use(client, "bst_" + "x" * 40) == 401
    with app.app_context():
        revoke(db.session.get(ApiToken, token_id), actor="system")
    assert _use(client, raw) == 401
    refused = entries(app, "token.use", outcome="failure")
    assert [changes_of(e)["reason"] for e in refused] == ["unknown", "unknown", "revoked"]
    assert refused[-1].object_id == str(token_id)
    assert raw not in "".join(e.changes or "" for e in entries(app))


def _wrong_sign_in(client, email: str) -> int:
    token = csrf_token(client)
    data = {"email": email, "password": "wrong password", "csrf_token": token}
    return client.post("/login", data=data).status_code


def test_the_failure_that_locks_an_account_out_is_audited_once(app):
    key = throttle.account_key(ADMIN_EMAIL)
    with app.app_context():
        # 99 failures counted, none blocking now: the next failure reaches the cap.
        db.session.add(
            AuthThrottle(
                key=key,
                failures=throttle.HOURLY_CAP - 1,
                last_attempt=throttle.now(),
                blocked_until=0,
            )
        )
        db.session.commit()
        admin_id = db.session.scalar(select(User.id).where(User.email == ADMIN_EMAIL))
    client = app.test_client()
    assert _wrong_sign_in(client, ADMIN_EMAIL) == 401
    (lockout,) = entries(app, "auth.lockout")
    assert lockout.object_type == "user" and lockout.object_id == str(admin_id)
    assert lockout.outcome == "refused"
    assert changes_of(lockout) == {"failures": 100, "seconds": 3600, "step": "password"}
    assert _wrong_sign_in(client, ADMIN_EMAIL) == 401  # throttled now: no second lockout
    assert len(entries(app, "auth.lockout")) == 1
    assert entries(app, "auth.sign_in")[-1].outcome == "throttled"


def test_an_unknown_address_is_locked_out_without_naming_it(app):
    email = "nobody@example.com"
    with app.app_context():
        db.session.add(
            AuthThrottle(
                key=throttle.account_key(email),
                failures=throttle.HOURLY_CAP - 1,
                last_attempt=throttle.now(),
                blocked_until=0,
            )
        )
        db.session.commit()
    assert _wrong_sign_in(app.test_client(), email) == 401
    (lockout,) = entries(app, "auth.lockout")
    assert lockout.actor == "anonymous" and lockout.object_id is None
    assert email not in (lockout.changes or "")


def test_the_first_administrator_is_on_record(app):
    (created,) = entries(app, "user.create")
    assert created.actor == "system"
    assert changes_of(created) == {"email": ADMIN_EMAIL, "roles": ["administrator"], "team": None}


def test_definitions_synced_from_plugins_are_on_record(app):
    (synced,) = entries(app, "schema.sync")
    assert synced.actor == "system"
    changes = changes_of(synced)
    assert changes["count"] == len(changes["changes"]) > 0
    assert "object contacts added" in changes["changes"]


def test_the_code_failure_that_locks_mfa_out_is_audited(app, enrolled, clock):
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == MFA_EMAIL))
        db.session.add(
            AuthThrottle(
                key=throttle.mfa_key(user_id),
                failures=throttle.HOURLY_CAP - 1,
                last_attempt=throttle.now(),
                blocked_until=0,
            )
        )
        db.session.commit()
    client = app.test_client()
    password_step(client)
    assert submit_code(client, code="000000").status_code == 401
    (lockout,) = entries(app, "auth.lockout")
    assert lockout.object_id == str(user_id) and changes_of(lockout)["step"] == "mfa"
