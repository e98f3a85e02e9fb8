"""Session rotation: at sign-in, at sign-out and after a privilege change, old cookies die."""

from __future__ import annotations

from sqlalchemy import select, update

from bastion.db import db
from bastion.models import User, UserSession
from bastion.sessions import request_rotation
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CSRF_RE, sign_in

COOKIE = "bastion_session"
PROTECTED = "/account/tokens"


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def replay(client, value: str) -> None:
    client.set_cookie(COOKIE, value)


def admin_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == ADMIN_EMAIL))


def is_signed_in(client) -> bool:
    response = client.get(PROTECTED)
    if response.status_code == 302:
        assert "/login" in response.headers["Location"]
        return False
    assert response.status_code == 200
    return True


def page_csrf(client, path: str = PROTECTED) -> str:
    return CSRF_RE.search(client.get(path).get_data(as_text=True)).group(1)


def test_the_cookie_and_csrf_token_from_before_sign_in_stop_working(client):
    page = client.get("/login").get_data(as_text=True)
    anonymous_token = CSRF_RE.search(page).group(1)
    anonymous_cookie = cookie_value(client)
    assert anonymous_cookie

    response = client.post(
        "/login",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": anonymous_token},
    )
    assert response.status_code == 302
    signed_in_cookie = cookie_value(client)
    assert signed_in_cookie and signed_in_cookie != anonymous_cookie
    assert is_signed_in(client)

    # The pre-sign-in CSRF token is refused in the signed-in session.
    refused = client.post("/logout", data={"csrf_token": anonymous_token})
    assert refused.status_code == 400
    assert "Form expired" in refused.get_data(as_text=True)
    assert is_signed_in(client)

    # The pre-sign-in cookie does not carry the sign-in.
    replay(client, anonymous_cookie)
    assert not is_signed_in(client)


def test_an_old_session_cookie_is_refused_after_sign_out(client):
    assert sign_in(client).status_code == 302
    assert is_signed_in(client)
    copied = cookie_value(client)
    response = client.post("/logout", data={"csrf_token": page_csrf(client)})
    assert response.status_code == 302
    assert not is_signed_in(client)

    replay(client, copied)
    assert not is_signed_in(client)


def test_a_requested_rotation_swaps_the_cookie_on_the_next_request(app, client):
    assert sign_in(client).status_code == 302
    old_cookie = cookie_value(client)
    old_token = page_csrf(client)
    with app.app_context():
        original = db.session.scalar(
            select(UserSession).where(
                UserSession.user_id == admin_id(app), UserSession.ended_at.is_(None)
            )
        )
        # Move the sign-in an hour back: the rotated session must keep that start time.
        started = original.started_at - 3600
        db.session.execute(
            update(UserSession).where(UserSession.id == original.id).values(started_at=started)
        )
        request_rotation(admin_id(app))
        db.session.commit()

    response = client.get(PROTECTED)
    assert response.status_code == 200
    assert COOKIE in response.headers.get("Set-Cookie", "")
    new_cookie = cookie_value(client)
    assert new_cookie and new_cookie != old_cookie

    with app.app_context():
        rows = db.session.scalars(
            select(UserSession).where(UserSession.user_id == admin_id(app))
        ).all()
        ended = [r for r in rows if r.ended_at is not None]
        live = [r for r in rows if r.ended_at is None]
        assert [r.end_reason for r in ended] == ["rotated"]
        assert len(live) == 1 and live[0].id != ended[0].id
        # The absolute timeout still counts from the original sign-in.
        assert live[0].started_at == started
        assert not live[0].rotate

    # The CSRF token of the old session is refused in the new one.
    refused = client.post("/logout", data={"csrf_token": old_token})
    assert refused.status_code == 400
    assert is_signed_in(client)

    # The previous cookie is dead; the new one still works.
    replay(client, old_cookie)
    assert not is_signed_in(client)
    replay(client, new_cookie)
    assert is_signed_in(client)


def test_rotation_does_not_outlive_the_absolute_timeout(app, client, settings):
    assert sign_in(client).status_code == 302
    with app.app_context():
        # Signed in longer ago than the absolute timeout allows, and due for rotation.
        limit = settings.session_absolute_hours * 3600
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == admin_id(app))
            .values(started_at=UserSession.started_at - limit - 60)
        )
        request_rotation(admin_id(app))
        db.session.commit()
    assert not is_signed_in(client)
    with app.app_context():
        reasons = db.session.scalars(
            select(UserSession.end_reason).where(UserSession.user_id == admin_id(app))
        ).all()
        assert reasons == ["absolute"]
