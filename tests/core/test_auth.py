"""Sign-in and sign-out through the real forms: CSRF, rotation, redirects, ended sessions."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from bastion.db import db
from bastion.identity import create_user, ensure_role
from bastion.models import User, UserSession
from bastion.sessions import SESSION_TOKEN_FIELD, end_all_sessions
from bastion.web.auth import SIGN_IN_FAILED
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, CSRF_RE, csrf_token, sign_in

CLERK_EMAIL = "clerk@example.com"
CLERK_PASSWORD = "a long password for the filing cabinet"


def add_user(app, email: str, password: str, *, active: bool = True) -> None:
    with app.app_context():
        role = ensure_role("clerk", "Clerk", [])
        user = create_user(
            app.extensions["bastion.passwords"], email=email, password=password, roles=[role]
        )
        user.active = active
        db.session.commit()


def change_user(app, email: str, **values) -> None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        for name, value in values.items():
            setattr(user, name, value)
        db.session.commit()


def test_login_page_has_the_form_fields(client):
    response = client.get("/login")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert re.search(r'<input[^>]*name="email"[^>]*type="email"', page)
    assert re.search(r'<input[^>]*name="password"[^>]*type="password"', page)
    assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+"', page)
    assert re.search(r'<form method="post" action="/login"', page)


def test_signed_in_user_visiting_login_goes_to_the_dashboard(admin_client):
    response = admin_client.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_correct_credentials_sign_in(client):
    assert client.get("/").status_code == 302
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_email_is_matched_without_regard_to_case(client):
    assert sign_in(client, "  Admin@Example.COM ", ADMIN_PASSWORD).status_code == 302


def _failure_page(client, email: str, password: str) -> tuple[int, str]:
    response = sign_in(client, email, password)
    page = response.get_data(as_text=True)
    # Remove what legitimately differs: the form token and the echoed email.
    page = CSRF_RE.sub("TOKEN", page).replace(email, "EMAIL")
    page = re.sub(r'"X-CSRFToken": "[^"]+"', "TOKEN", page)
    return response.status_code, page


def test_failures_do_not_tell_which_part_was_wrong(app, client):
    add_user(app, "former@example.com", CLERK_PASSWORD, active=False)
    wrong_password = _failure_page(client, ADMIN_EMAIL, "not the right password")
    unknown_user = _failure_page(client, "nobody@example.com", ADMIN_PASSWORD)
    disabled_user = _failure_page(client, "former@example.com", CLERK_PASSWORD)
    assert wrong_password[0] == unknown_user[0] == disabled_user[0] == 401
    assert SIGN_IN_FAILED in wrong_password[1]
    assert wrong_password[1] == unknown_user[1] == disabled_user[1]
    assert client.get("/").status_code == 302  # still signed out


def test_sign_in_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert "Form expired" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_sign_in_with_a_forged_csrf_token_is_refused(client):
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": "forged"},
    )
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_session_is_rotated_at_sign_in(client):
    before = csrf_token(client)
    cookie_before = client.get_cookie("bastion_session").value
    assert (
        client.post(
            "/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": before}
        ).status_code
        == 302
    )
    assert client.get_cookie("bastion_session").value != cookie_before
    # The anonymous session's token is void: sign-out with it is refused...
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.get("/").status_code == 200
    # ...and the token of the new session works.
    after = csrf_token(client, "/")
    assert after != before
    assert client.post("/logout", data={"csrf_token": after}).status_code == 302


def test_next_leads_back_to_the_page_asked_for(client):
    response = client.get("/admin/plugins")
    assert response.status_code == 302
    login_url = response.headers["Location"]
    assert login_url.startswith("/login?next=")
    page = client.get(login_url).get_data(as_text=True)
    next_value = re.search(r'name="next" value="([^"]*)"', page).group(1)
    assert next_value == "/admin/plugins"
    signed_in = sign_in(client, next=next_value)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/admin/plugins"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/login",
        "///evil.example",
        "https://evil.example",
        "http://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        " //evil.example",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(client, target):
    response = sign_in(client, next=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_sign_out_is_post_only(admin_client):
    response = admin_client.get("/logout")
    assert response.status_code == 405
    assert admin_client.get("/").status_code == 200  # the GET did not sign out


def test_sign_out_without_csrf_token_is_refused(admin_client):
    assert admin_client.post("/logout").status_code == 400
    assert admin_client.get("/").status_code == 200


def test_sign_out_ends_the_session(admin_client):
    token = csrf_token(admin_client, "/")
    response = admin_client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "You have signed out." in admin_client.get("/login").get_data(as_text=True)
    home = admin_client.get("/")
    assert home.status_code == 302
    assert home.headers["Location"].startswith("/login")


def test_ending_all_of_a_users_sessions_signs_them_out_everywhere(app, client):
    add_user(app, CLERK_EMAIL, CLERK_PASSWORD)
    laptop, phone = client, app.test_client()
    for device in (laptop, phone):
        assert sign_in(device, CLERK_EMAIL, CLERK_PASSWORD).status_code == 302
        assert device.get("/").status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == CLERK_EMAIL))
        assert end_all_sessions(user.id) == 2
    for device in (laptop, phone):
        response = device.get("/")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
    # A new sign-in starts a new session and works.
    assert sign_in(phone, CLERK_EMAIL, CLERK_PASSWORD).status_code == 302
    assert phone.get("/").status_code == 200


def test_a_copied_cookie_is_worthless_after_sign_out(app, admin_client):
    stolen = admin_client.get_cookie("bastion_session").value
    token = csrf_token(admin_client, "/")
    assert admin_client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("bastion_session", stolen)
    response = replay.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_the_database_holds_only_a_digest_of_the_session_token(app, admin_client):
    cookie = admin_client.get_cookie("bastion_session").value
    contents = app.session_interface.get_signing_serializer(app).loads(cookie)
    token = contents[SESSION_TOKEN_FIELD]
    with app.app_context():
        stored = db.session.scalars(select(UserSession.id)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in stored


def test_disabling_a_user_ends_their_session(app, client):
    add_user(app, CLERK_EMAIL, CLERK_PASSWORD)
    assert sign_in(client, CLERK_EMAIL, CLERK_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    change_user(app, CLERK_EMAIL, active=False)
    assert client.get("/").status_code == 302
    assert sign_in(client, CLERK_EMAIL, CLERK_PASSWORD).status_code == 401
