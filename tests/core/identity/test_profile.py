"""A user's own profile page at /account."""

from __future__ import annotations

from bastion.db import db
from bastion.identity import find_user_by_email
from tests.conftest import csrf_token, sign_in
from tests.core.identity.conftest import add_user

PASSWORD = "a long enough test password"


def _signed_in(app, email: str):
    client = app.test_client()
    assert sign_in(client, email, PASSWORD).status_code == 302
    return client


def _profile(app, email: str) -> tuple[str, str, str]:
    with app.app_context():
        user = find_user_by_email(email)
        db.session.refresh(user)
        return user.name, user.time_zone, user.locale


def test_profile_page_shows_the_users_settings_and_links(app):
    add_user(app, "pat@example.com", PASSWORD, roles=["sales_rep"], name="Pat")
    pat = _signed_in(app, "pat@example.com")
    page = pat.get("/account")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'value="Pat"' in body
    for link in ("/account/password", "/account/mfa", "/account/tokens"):
        assert f'href="{link}"' in body
    # The navigation links the user's name to this page.
    dashboard = pat.get("/").get_data(as_text=True)
    assert 'href="/account"' in dashboard


def test_profile_update_saves_and_validates_the_time_zone(app):
    add_user(app, "pat@example.com", PASSWORD, name="Pat")
    pat = _signed_in(app, "pat@example.com")
    token = csrf_token(pat, "/account")

    bad = pat.post(
        "/account",
        data={"csrf_token": token, "name": "Pat P", "time_zone": "Europe/Atlantis", "locale": "en"},
    )
    assert bad.status_code == 422
    body = bad.get_data(as_text=True)
    assert "&#39;Europe/Atlantis&#39; is not a time zone Bastion knows" in body
    assert _profile(app, "pat@example.com") == ("Pat", "UTC", "en")

    bad = pat.post(
        "/account", data={"csrf_token": token, "name": "Pat", "time_zone": "UTC", "locale": "kl"}
    )
    assert bad.status_code == 422
    assert "is not a supported language" in bad.get_data(as_text=True)

    bad = pat.post(
        "/account",
        data={"csrf_token": token, "name": "x" * 201, "time_zone": "UTC", "locale": "en"},
    )
    assert bad.status_code == 422
    assert "at most 200 characters" in bad.get_data(as_text=True)

    good = pat.post(
        "/account",
        data={
            "csrf_token": token,
            "name": " Pat Perez ",
            "time_zone": "America/Chicago",
            "locale": "es",
        },
    )
    assert good.status_code == 302
    assert good.headers["Location"] == "/account"
    assert _profile(app, "pat@example.com") == ("Pat Perez", "America/Chicago", "es")
    assert 'lang="es"' in pat.get("/account").get_data(as_text=True)


def test_profile_needs_a_signed_in_user_and_a_csrf_token(app, client):
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    add_user(app, "pat@example.com", PASSWORD)
    pat = _signed_in(app, "pat@example.com")
    response = pat.post("/account", data={"name": "x", "time_zone": "UTC", "locale": "en"})
    assert response.status_code == 400
    assert _profile(app, "pat@example.com")[0] == ""
