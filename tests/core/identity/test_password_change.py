"""Changing one's own password, and an administrator's forced change."""

from __future__ import annotations

from sqlalchemy import select

from bastion import throttle
from bastion.credentials import change_password, force_password_reset
from bastion.db import db
from bastion.models import User, UserSession
from tests.conftest import csrf_token, sign_in
from tests.core.identity.conftest import add_user

EMAIL = "sam@example.com"
PASSWORD = "a long enough test password"
NEW_PASSWORD = "seven blue herons at dawn"


def change(client, current: str, new: str, confirm: str | None = None):
    return client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client, "/account/password"),
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
    )


def signed_in(app, email: str = EMAIL, password: str = PASSWORD):
    client = app.test_client()
    response = sign_in(client, email, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def is_signed_out(response) -> bool:
    return response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_page_asks_for_current_and_new_password(app):
    add_user(app, EMAIL, PASSWORD)
    page = signed_in(app).get("/account/password")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for field in ("current_password", "new_password", "new_password_confirm"):
        assert f'name="{field}"' in text
    assert "An administrator asked you" not in text


def test_signed_out_users_are_sent_to_sign_in(client):
    assert is_signed_out(client.get("/account/password"))


def test_wrong_current_password_changes_nothing(app):
    add_user(app, EMAIL, PASSWORD)
    client = signed_in(app)
    response = change(client, "not my password at all", NEW_PASSWORD)
    assert response.status_code == 422
    assert "current password is not correct" in response.get_data(as_text=True)
    assert sign_in(app.test_client(), EMAIL, PASSWORD).status_code == 302
    assert sign_in(app.test_client(), EMAIL, NEW_PASSWORD).status_code != 302


def test_mismatched_confirmation_is_refused(app):
    add_user(app, EMAIL, PASSWORD)
    response = change(signed_in(app), PASSWORD, NEW_PASSWORD, confirm=NEW_PASSWORD + "!")
    assert response.status_code == 422
    assert "not the same" in response.get_data(as_text=True)


def test_repeated_wrong_current_passwords_end_the_session(app):
    add_user(app, EMAIL, PASSWORD)
    client = signed_in(app)
    for _ in range(4):
        assert change(client, "wrong guess number x", NEW_PASSWORD).status_code == 422
    assert is_signed_out(change(client, "wrong guess number y", NEW_PASSWORD))
    assert is_signed_out(client.get("/"))


def test_success_keeps_this_session_and_ends_the_others(app):
    add_user(app, EMAIL, PASSWORD)
    here, elsewhere = signed_in(app), signed_in(app)
    assert elsewhere.get("/").status_code == 200

    response = change(here, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "Your password has been changed" in here.get("/").get_data(as_text=True)

    assert here.get("/account/password").status_code == 200
    assert is_signed_out(elsewhere.get("/"))
    assert sign_in(app.test_client(), EMAIL, PASSWORD).status_code != 302
    assert sign_in(app.test_client(), EMAIL, NEW_PASSWORD).status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == EMAIL))
        assert user.password_changed_at is not None


def test_change_outside_a_request_ends_every_session(app):
    """The CLI (no request) has no session of its own to keep."""
    user_id = add_user(app, EMAIL, PASSWORD)
    client = signed_in(app)
    with app.app_context():
        change_password(db.session.get(User, user_id), NEW_PASSWORD, actor="cli")
        open_sessions = db.session.scalars(
            select(UserSession).where(
                UserSession.user_id == user_id, UserSession.ended_at.is_(None)
            )
        ).all()
        assert open_sessions == []
    assert is_signed_out(client.get("/"))


def test_forced_change_confines_the_user_until_done(app):
    user_id = add_user(app, EMAIL, PASSWORD)
    before = signed_in(app)
    with app.app_context():
        assert force_password_reset(db.session.get(User, user_id), actor="user:1") is None
    # Every session of theirs ended at once.
    assert is_signed_out(before.get("/"))

    client = app.test_client()
    response = sign_in(client, EMAIL, PASSWORD)
    assert response.status_code == 302
    for path in ("/", "/admin/", "/admin/plugins"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].endswith("/account/password"), path
    page = client.get("/account/password").get_data(as_text=True)
    assert "An administrator asked you to choose a new password" in page

    # The same password again is not a change.
    response = change(client, PASSWORD, PASSWORD)
    assert response.status_code == 422
    assert change(client, PASSWORD, NEW_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    with app.app_context():
        assert db.session.get(User, user_id).must_change_password is False


def test_forced_user_can_still_sign_out(app):
    user_id = add_user(app, EMAIL, PASSWORD)
    with app.app_context():
        force_password_reset(db.session.get(User, user_id), actor="user:1")
    client = signed_in(app)
    token = csrf_token(client, "/account/password")
    response = client.post("/logout", data={"csrf_token": token})
    assert is_signed_out(response)


def test_replaying_an_old_cookie_gives_no_extra_guesses(app, monkeypatch):
    # The count in the cookie is reset by replaying it; the server-side throttle is not.
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000)
    add_user(app, EMAIL, PASSWORD)
    client = signed_in(app)
    token = csrf_token(client, "/account/password")
    fresh = client.get_cookie("bastion_session").value
    data = {"csrf_token": token, "new_password": NEW_PASSWORD}
    data["new_password_confirm"] = NEW_PASSWORD
    free = throttle.ACCOUNT_POLICY.free_failures
    for n in range(free + 1):
        client.set_cookie("bastion_session", fresh)
        response = client.post(
            "/account/password", data={**data, "current_password": f"wrong guess {n:02d}"}
        )
        assert response.status_code == 422, n
    # Still signed in thanks to the replayed cookie, but the right password is refused too.
    client.set_cookie("bastion_session", fresh)
    response = client.post("/account/password", data={**data, "current_password": PASSWORD})
    assert response.status_code == 429
    assert "Wait a minute" in response.get_data(as_text=True)
    assert sign_in(app.test_client(), EMAIL, NEW_PASSWORD).status_code != 302
    # Once the delay is over, the right password works (and clears the count).
    monkeypatch.setattr(throttle, "now", lambda: 1_900_000_000 + 120)
    client.set_cookie("bastion_session", fresh)
    response = client.post("/account/password", data={**data, "current_password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
