"""Personal API tokens: created once, hashed, scoped, revocable; bearer auth on /api/."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bastion import tokens
from bastion.db import db
from bastion.models import ApiToken, User, UserSession, utcnow
from tests.conftest import ADMIN_EMAIL, CSRF_RE, csrf_token, sign_in
from tests.core.identity.conftest import add_user, logged_text

NEW_TOKEN_RE = re.compile(r'id="new-token"[^>]*>([^<]+)<')
CHECKED_SCOPE_RE = re.compile(r'name="scopes" value="([^"]+)" checked')


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def user_id(app, email: str = ADMIN_EMAIL) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def make_token(app, email: str = ADMIN_EMAIL, name: str = "script", **kwargs) -> str:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        _token, raw = tokens.create_token(user, name, **kwargs)
        return raw


def token_row(app, raw: str) -> ApiToken:
    with app.app_context():
        digest = hashlib.sha256(raw.encode()).hexdigest()
        row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        db.session.expunge(row)
        return row


def create_via_page(client, name: str = "nightly export", **fields) -> tuple[int, str]:
    """Submit the form as a browser would: the boxes ticked by default stay ticked."""
    page = client.get("/account/tokens").get_data(as_text=True)
    data = {
        "csrf_token": CSRF_RE.search(page).group(1),
        "name": name,
        "expires_days": "90",
        "scopes": CHECKED_SCOPE_RE.findall(page),
        **fields,
    }
    response = client.post("/account/tokens", data=data)
    return response.status_code, response.get_data(as_text=True)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    return body


def audit_entries(caplog, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


# Creating tokens ------------------------------------------------------------------------


def test_token_created_on_the_page_is_shown_once_and_stored_hashed(app, admin_client, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    status, html = create_via_page(admin_client, "nightly export")
    assert status == 201, html
    match = NEW_TOKEN_RE.search(html)
    assert match, html
    raw = match.group(1).strip()
    assert raw.startswith("bst_") and len(raw) > 40

    row = token_row(app, raw)
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert row.prefix == raw[:12]
    assert row.expires_at is not None
    # By default the token carries every permission the user holds, listed explicitly.
    assert "admin.users" in tokens.token_scopes(row)

    listing = admin_client.get("/account/tokens")
    page = listing.get_data(as_text=True)
    assert listing.headers["Cache-Control"] == "no-store"
    assert raw not in page and 'id="new-token"' not in page
    assert row.prefix in page and "nightly export" in page

    created = audit_entries(caplog, "token.create")
    assert created and created[-1].outcome == "success"
    assert raw not in logged_text(caplog)


def test_the_page_refuses_bad_input_with_a_sentence(admin_client):
    status, html = create_via_page(admin_client, "   ")
    assert status == 422 and "Give the token a name" in html
    status, html = create_via_page(admin_client, "x", expires_days="0")
    assert status == 422 and "between 1 and 3650 days" in html
    status, html = create_via_page(admin_client, "x", expires_days="soon")
    assert status == 422 and "number of days" in html
    status, html = create_via_page(admin_client, "x", scopes="audit.nothing")
    assert status == 422 and "do not have" in html
    assert create_via_page(admin_client, "dup")[0] == 201
    status, html = create_via_page(admin_client, "dup")
    assert status == 422 and "already have a token named" in html


def test_create_token_checks_scopes_against_what_the_user_holds(app):
    rep = add_user(app, "rep@example.com", roles=["sales_rep"])
    with app.app_context():
        user = db.session.get(User, rep)
        with pytest.raises(tokens.TokenError, match="do not have"):
            tokens.create_token(user, "sneaky", scopes=["admin.users"])
        with pytest.raises(tokens.TokenError, match="between 1 and 3650"):
            tokens.create_token(user, "long", expires_days=4000)
        token, raw = tokens.create_token(user, "plain", expires_days=None)
        assert token.expires_at is None and token.scopes is None
        assert tokens.check(raw).token.id == token.id
        tampered = raw[:-1] + ("A" if raw[-1] != "A" else "B")
        assert tokens.check(tampered) == tokens.TokenCheck(None, "unknown")


def test_token_creation_needs_a_recent_authentication(app, admin_client):
    with app.app_context():
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id(app))
            .values(authenticated_at=int(time.time()) - 3600)
        )
        db.session.commit()
    status, _html = create_via_page(admin_client)
    assert status == 302
    response = admin_client.post(
        "/account/tokens",
        data={"csrf_token": csrf_token(admin_client, "/account/tokens"), "name": "x"},
    )
    assert response.headers["Location"].startswith("/account/reauth")
    with app.app_context():
        assert db.session.scalar(select(ApiToken)) is None


# Using tokens -----------------------------------------------------------------------------


def test_a_token_authenticates_api_calls_without_cookies(app):
    raw = make_token(app)
    client = app.test_client()
    response = client.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 200, response.get_data(as_text=True)
    me = response.get_json()
    assert me["email"] == ADMIN_EMAIL and me["auth"] == "token"
    assert "administrator" in me["roles"] and "admin.users" in me["permissions"]
    assert me["permissions"] == sorted(me["permissions"])
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("bastion_session") is None
    assert token_row(app, raw).last_used_at is not None


def test_a_token_request_ignores_the_cookie_and_never_sets_one(app, admin_client):
    raw = make_token(app)
    before = admin_client.get_cookie("bastion_session").value
    response = admin_client.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 200 and response.get_json()["auth"] == "token"
    assert "Set-Cookie" not in response.headers
    assert admin_client.get_cookie("bastion_session").value == before
    # A refused token is refused even alongside a valid session cookie.
    response = admin_client.get("/api/v1/me", headers=bearer("bst_nonsense"))
    assert_problem(response, 401)
    assert "Set-Cookie" not in response.headers


def test_the_session_cookie_reads_the_api_but_does_not_change_data(admin_client):
    me = admin_client.get("/api/v1/me")
    assert me.status_code == 200 and me.get_json()["auth"] == "session"
    token = csrf_token(admin_client, "/account/tokens")
    response = admin_client.patch(
        "/api/v1/me", json={"name": "Via cookie"}, headers={"X-CSRFToken": token}
    )
    body = assert_problem(response, 401)
    assert "Authorization: Bearer" in body["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert admin_client.get("/api/v1/me").get_json()["name"] != "Via cookie"


def test_patch_me_with_a_token_needs_no_csrf_and_validates(app):
    raw = make_token(app)
    client = app.test_client()
    response = client.patch(
        "/api/v1/me",
        json={"name": "Ada Admin", "time_zone": "Europe/Zurich", "locale": "de"},
        headers=bearer(raw),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["time_zone"] == "Europe/Zurich"
    me = client.get("/api/v1/me", headers=bearer(raw)).get_json()
    assert (me["name"], me["time_zone"], me["locale"]) == ("Ada Admin", "Europe/Zurich", "de")

    assert_problem(
        client.patch("/api/v1/me", json={"time_zone": "Mars/Olympus"}, headers=bearer(raw)), 422
    )
    assert_problem(
        client.patch("/api/v1/me", json={"email": "x@example.com"}, headers=bearer(raw)), 422
    )
    assert_problem(client.patch("/api/v1/me", json={"name": 5}, headers=bearer(raw)), 422)
    assert_problem(
        client.patch(
            "/api/v1/me",
            data="not json",
            headers={**bearer(raw), "Content-Type": "application/json"},
        ),
        400,
    )


@pytest.mark.parametrize(
    "header", ["Bearer bst_garbage", "Bearer ", "Basic YWRtaW46eA==", "Bearer " + "x" * 5000]
)
def test_garbage_tokens_are_refused_with_a_problem(app, header, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    response = app.test_client().get("/api/v1/me", headers={"Authorization": header})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="bastion"')
    failures = [r for r in audit_entries(caplog, "token.use") if r.outcome == "failure"]
    assert failures
    secret = header.partition(" ")[2]
    assert not secret or secret not in logged_text(caplog)


def test_revoked_expired_and_disabled_users_tokens_are_refused(app):
    client = app.test_client()
    revoked, expired = make_token(app, name="r"), make_token(app, name="e", expires_days=1)
    with app.app_context():
        row = db.session.get(ApiToken, token_row(app, revoked).id)
        tokens.revoke(row, actor="system")
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_row(app, expired).id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
    assert_problem(client.get("/api/v1/me", headers=bearer(revoked)), 401)
    assert_problem(client.get("/api/v1/me", headers=bearer(expired)), 401)

    add_user(app, "leaver@example.com")
    leaver = make_token(app, "leaver@example.com")
    assert client.get("/api/v1/me", headers=bearer(leaver)).status_code == 200
    with app.app_context():
        db.session.execute(
            update(User).where(User.email == "leaver@example.com").values(active=False)
        )
        db.session.commit()
    assert_problem(client.get("/api/v1/me", headers=bearer(leaver)), 401)


def test_a_token_can_revoke_itself(app):
    raw = make_token(app)
    client = app.test_client()
    assert client.delete("/api/v1/tokens/current", headers=bearer(raw)).status_code == 204
    assert_problem(client.get("/api/v1/me", headers=bearer(raw)), 401)
    assert token_row(app, raw).revoked_at is not None


def test_revoking_on_the_page(app, admin_client):
    raw = make_token(app, name="old")
    token_id = token_row(app, raw).id
    data = {"csrf_token": csrf_token(admin_client, "/account/tokens")}
    response = admin_client.post(f"/account/tokens/{token_id}/revoke", data=data)
    assert response.status_code == 302
    assert_problem(app.test_client().get("/api/v1/me", headers=bearer(raw)), 401)
    page = admin_client.get("/account/tokens").get_data(as_text=True)
    assert 'data-status="revoked"' in page


def test_another_users_token_cannot_be_revoked(app, client):
    add_user(app, "colleague@example.com")
    raw = make_token(app, "colleague@example.com")
    sign_in(client)
    data = {"csrf_token": csrf_token(client, "/account/tokens")}
    response = client.post(f"/account/tokens/{token_row(app, raw).id}/revoke", data=data)
    assert response.status_code == 404
    assert app.test_client().get("/api/v1/me", headers=bearer(raw)).status_code == 200


# Scopes and permissions -------------------------------------------------------------------


def test_a_narrower_token_loses_what_it_does_not_carry(app):
    narrow = make_token(app, name="narrow", scopes=["admin.access"])
    wide = make_token(app, name="wide")
    client = app.test_client()
    assert_problem(client.get("/api/v1/users", headers=bearer(narrow)), 403)
    me = client.get("/api/v1/me", headers=bearer(narrow)).get_json()
    assert me["permissions"] == ["admin.access"]
    users = client.get("/api/v1/users", headers=bearer(wide))
    assert users.status_code == 200
    assert ADMIN_EMAIL in [u["email"] for u in users.get_json()["items"]]


def test_a_token_chosen_on_the_page_with_fewer_scopes(app, admin_client):
    status, html = create_via_page(admin_client, "audit reader", scopes=["admin.access"])
    assert status == 201
    raw = NEW_TOKEN_RE.search(html).group(1).strip()
    assert_problem(app.test_client().get("/api/v1/users", headers=bearer(raw)), 403)


def test_users_api_needs_admin_users(app):
    add_user(app, "rep@example.com", roles=["sales_rep"])
    raw = make_token(app, "rep@example.com")
    client = app.test_client()
    assert_problem(client.get("/api/v1/users", headers=bearer(raw)), 403)
    assert_problem(client.get("/api/v1/users"), 401)
    assert_problem(client.get("/api/v1/me"), 401)


def test_the_account_gate_applies_to_tokens(app):
    raw = make_token(app)
    with app.app_context():
        db.session.execute(
            update(User).where(User.email == ADMIN_EMAIL).values(must_change_password=True)
        )
        db.session.commit()
    assert_problem(app.test_client().get("/api/v1/me", headers=bearer(raw)), 403)


def test_token_use_is_audited_at_most_once_a_minute(app, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    raw = make_token(app)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/me", headers=bearer(raw)).status_code == 200
    uses = [r for r in audit_entries(caplog, "token.use") if r.outcome == "success"]
    assert len(uses) == 1
