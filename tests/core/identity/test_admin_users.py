"""Account administration through the admin pages: create, invite, disable, roles, MFA."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import update

from bastion.db import db
from bastion.identity import ensure_role, find_user_by_email
from bastion.models import UserSession
from tests.conftest import ADMIN_EMAIL, csrf_token, sign_in
from tests.core.identity.conftest import add_user

PASSWORD = "a long enough test password"
NEW_PASSWORD = "violet tractor humming softly"


def _user_id(app, email: str) -> int:
    with app.app_context():
        user = find_user_by_email(email)
        assert user is not None
        return user.id


def _load(app, email: str):
    """A detached snapshot of the user, for reading attributes after the context ends."""
    with app.app_context():
        user = find_user_by_email(email)
        assert user is not None
        return {
            "id": user.id,
            "active": user.active,
            "roles": sorted(r.name for r in user.roles),
            "team": user.team.name if user.team else None,
            "has_password": user.has_password,
            "must_change_password": user.must_change_password,
            "name": user.name,
            "mfa": user.mfa_enabled,
        }


def _post(client, path: str, data: dict | None = None, *, form_page: str | None = None):
    token = csrf_token(client, form_page or "/account")
    return client.post(path, data={"csrf_token": token, **(data or {})})


def _age_authentication(app, email: str, seconds: int = 3600) -> None:
    """Pretend the user last proved who they are long ago (no re-auth in the window)."""
    with app.app_context():
        user_id = _user_id(app, email)
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id)
            .values(authenticated_at=int(time.time()) - seconds)
        )
        db.session.commit()


def _new_client(app, email: str, password: str = PASSWORD):
    client = app.test_client()
    response = sign_in(client, email, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def test_admin_creates_a_user_who_can_sign_in(app, admin_client):
    page = admin_client.get("/admin/users/new")
    assert page.status_code == 200
    assert "Send an invitation instead of setting a password" in page.get_data(as_text=True)
    response = _post(
        admin_client,
        "/admin/users/new",
        {
            "email": "Nina.New@Example.com",
            "name": "Nina New",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "roles": ["sales_rep"],
            "time_zone": "Europe/Berlin",
            "locale": "de",
        },
        form_page="/admin/users/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    user = _load(app, "nina.new@example.com")
    assert user["roles"] == ["sales_rep"]
    assert user["must_change_password"] is False
    assert response.headers["Location"].endswith(f"/admin/users/{user['id']}")

    listing = admin_client.get("/admin/users?q=nina").get_data(as_text=True)
    assert "nina.new@example.com" in listing
    assert ADMIN_EMAIL not in listing

    nina = app.test_client()
    assert sign_in(nina, "nina.new@example.com", NEW_PASSWORD).status_code == 302
    assert nina.get("/").status_code == 200


def test_created_user_can_be_asked_to_choose_their_own_password(app, admin_client):
    _post(
        admin_client,
        "/admin/users/new",
        {
            "email": "first@example.com",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "must_change_password": "yes",
            "time_zone": "UTC",
            "locale": "en",
        },
        form_page="/admin/users/new",
    )
    assert _load(app, "first@example.com")["must_change_password"] is True
    first = app.test_client()
    assert sign_in(first, "first@example.com", NEW_PASSWORD).status_code == 302
    assert first.get("/").headers["Location"].startswith("/account/password")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "not-an-email"}, "is not a valid email address"),
        ({"email": ADMIN_EMAIL}, "already exists"),
        ({"roles": ["no_such_role"]}, "There is no role named &#39;no_such_role&#39;"),
        ({"team": "Nowhere"}, "There is no team named &#39;Nowhere&#39;"),
        ({"time_zone": "Mars/Olympus"}, "is not a time zone"),
        ({"password_confirm": "something else entirely"}, "do not match"),
        ({"password": "short", "password_confirm": "short"}, "at least"),
    ],
)
def test_create_user_refuses_bad_input_with_a_sentence(app, admin_client, fields, message):
    data = {
        "email": "bad@example.com",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "time_zone": "UTC",
        "locale": "en",
        **fields,
    }
    response = _post(admin_client, "/admin/users/new", data, form_page="/admin/users/new")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body
    assert NEW_PASSWORD not in body  # a typed password is never echoed back
    with app.app_context():
        assert find_user_by_email("bad@example.com") is None


def test_invite_with_mail_off_shows_the_link_once(app, admin_client):
    assert not app.extensions["bastion"].settings.mail_enabled
    response = _post(
        admin_client,
        "/admin/users/new",
        {
            "email": "ivy@example.com",
            "invite": "yes",
            "roles": ["marketing"],
            "time_zone": "UTC",
            "locale": "en",
        },
        form_page="/admin/users/new",
    )
    assert response.status_code == 201
    body = response.get_data(as_text=True)
    match = re.search(r'id="invitation-link"[^>]*value="([^"]+)"', body)
    assert match, body
    link = match.group(1)
    assert "/password/reset/" in link
    assert "no-store" in response.headers.get("Cache-Control", "")

    user = _load(app, "ivy@example.com")
    assert user["has_password"] is False
    # The link is not shown again anywhere.
    token = link.rsplit("/", 1)[1]
    for page in ("/admin/users", f"/admin/users/{user['id']}"):
        assert token not in admin_client.get(page).get_data(as_text=True)
    # An invited user cannot sign in before choosing a password.
    assert sign_in(app.test_client(), "ivy@example.com", "").status_code in (400, 401)
    # Sending the form again does not make a second account or show a link.
    again = _post(
        admin_client,
        "/admin/users/new",
        {"email": "ivy@example.com", "invite": "yes", "time_zone": "UTC", "locale": "en"},
        form_page="/admin/users/new",
    )
    assert again.status_code == 422
    assert "/password/reset/" not in again.get_data(as_text=True)


def test_disabling_a_user_ends_their_session_and_sign_in(app, admin_client):
    user_id = add_user(app, "dana@example.com", PASSWORD, roles=["sales_rep"])
    dana = _new_client(app, "dana@example.com")
    assert dana.get("/").status_code == 200

    page = admin_client.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert 'id="disable-user"' in page
    response = _post(admin_client, f"/admin/users/{user_id}/status", {"action": "disable"})
    assert response.status_code == 302
    assert _load(app, "dana@example.com")["active"] is False

    after = dana.get("/")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/login")
    assert sign_in(app.test_client(), "dana@example.com", PASSWORD).status_code == 401

    # Enabled again, they can sign in again.
    _post(admin_client, f"/admin/users/{user_id}/status", {"action": "enable"})
    assert sign_in(app.test_client(), "dana@example.com", PASSWORD).status_code == 302


def test_an_administrator_cannot_disable_themselves_or_the_last_administrator(app, admin_client):
    admin_id = _user_id(app, ADMIN_EMAIL)
    response = _post(admin_client, f"/admin/users/{admin_id}/status", {"action": "disable"})
    assert response.status_code == 409
    assert "You cannot disable your own account." in response.get_data(as_text=True)
    assert _load(app, ADMIN_EMAIL)["active"] is True

    # A user manager (admin.users only) cannot disable an administrator at all: the
    # account holds capabilities the manager lacks.
    with app.app_context():
        ensure_role("user_manager", "User manager", ["admin.access", "admin.users"])
        db.session.commit()
    add_user(app, "manager@example.com", PASSWORD, roles=["user_manager"])
    manager = _new_client(app, "manager@example.com")
    response = _post(manager, f"/admin/users/{admin_id}/status", {"action": "disable"})
    assert response.status_code == 403
    assert "permissions you do not hold" in response.get_data(as_text=True)
    assert _load(app, ADMIN_EMAIL)["active"] is True

    # ... nor hand out the administrator role, whose permissions they do not hold.
    manager_id = _user_id(app, "manager@example.com")
    response = _post(
        manager,
        f"/admin/users/{manager_id}/roles",
        {"roles": ["user_manager", "administrator"]},
    )
    assert response.status_code == 422
    assert "permissions you do not hold" in response.get_data(as_text=True)
    assert _load(app, "manager@example.com")["roles"] == ["user_manager"]


def test_the_last_administrator_keeps_the_administrator_role(app, admin_client):
    admin_id = _user_id(app, ADMIN_EMAIL)
    response = _post(admin_client, f"/admin/users/{admin_id}/roles", {"roles": ["auditor"]})
    assert response.status_code == 422
    assert "last active administrator" in response.get_data(as_text=True)
    assert _load(app, ADMIN_EMAIL)["roles"] == ["administrator"]


def test_role_change_rotates_the_users_sessions(app, admin_client):
    user_id = add_user(app, "rory@example.com", PASSWORD, roles=["sales_rep"])
    rory = _new_client(app, "rory@example.com")
    assert rory.get("/").status_code == 200
    old_cookie = rory.get_cookie("bastion_session").value

    response = _post(
        admin_client,
        f"/admin/users/{user_id}/roles",
        {"roles": ["sales_manager"], "team": ""},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _load(app, "rory@example.com")["roles"] == ["sales_manager"]

    # Rory's next request still works, on a fresh session; the old cookie is dead.
    assert rory.get("/").status_code == 200
    assert rory.get_cookie("bastion_session").value != old_cookie
    thief = app.test_client()
    thief.set_cookie("bastion_session", old_cookie)
    stale = thief.get("/")
    assert stale.status_code == 302
    assert stale.headers["Location"].startswith("/login")


def test_role_and_team_changes_need_a_recent_authentication(app, admin_client):
    user_id = add_user(app, "rita@example.com", PASSWORD, roles=["sales_rep"])
    _age_authentication(app, ADMIN_EMAIL)
    token = csrf_token(admin_client, f"/admin/users/{user_id}")
    response = admin_client.post(
        f"/admin/users/{user_id}/roles",
        data={"csrf_token": token, "roles": ["administrator"]},
        headers={"Referer": f"http://localhost/admin/users/{user_id}"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/reauth")
    assert _load(app, "rita@example.com")["roles"] == ["sales_rep"]

    # The plain profile fields need no re-authentication.
    response = _post(
        admin_client,
        f"/admin/users/{user_id}",
        {"name": "Rita Renamed", "time_zone": "Europe/Paris", "locale": "fr"},
    )
    assert response.status_code == 302
    assert _load(app, "rita@example.com")["name"] == "Rita Renamed"


def test_profile_edit_by_an_administrator_validates(app, admin_client):
    user_id = add_user(app, "tim@example.com", PASSWORD)
    response = _post(
        admin_client,
        f"/admin/users/{user_id}",
        {"name": "Tim", "time_zone": "Nowhere/Land", "locale": "en"},
    )
    assert response.status_code == 422
    assert "is not a time zone" in response.get_data(as_text=True)
    response = _post(
        admin_client, f"/admin/users/{user_id}", {"name": "Tim", "time_zone": "UTC", "locale": "xx"}
    )
    assert response.status_code == 422
    assert "not a supported language" in response.get_data(as_text=True)


def test_team_assignment_from_the_user_page(app, admin_client, cli):
    assert cli("teams", "create", "Northern").exit_code == 0
    user_id = add_user(app, "tara@example.com", PASSWORD, roles=["sales_rep"])
    response = _post(
        admin_client,
        f"/admin/users/{user_id}/roles",
        {"roles": ["sales_rep"], "team": "Northern"},
    )
    assert response.status_code == 302
    assert _load(app, "tara@example.com")["team"] == "Northern"
    listing = admin_client.get("/admin/users").get_data(as_text=True)
    assert "Northern" in listing


def test_user_page_shows_sessions_tokens_and_the_access_link(app, admin_client):
    user_id = add_user(app, "sue@example.com", PASSWORD)
    _new_client(app, "sue@example.com")
    _new_client(app, "sue@example.com")
    page = admin_client.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert re.search(r'id="user-sessions">2<', page)
    assert re.search(r'id="user-tokens">0<', page)
    assert f"/admin/users/{user_id}/access" in page
    # No MFA: no reset button.
    assert 'id="reset-mfa"' not in page


def test_sign_out_everywhere(app, admin_client):
    user_id = add_user(app, "sol@example.com", PASSWORD)
    sol = _new_client(app, "sol@example.com")
    response = _post(admin_client, f"/admin/users/{user_id}/sign-out")
    assert response.status_code == 302
    assert sol.get("/").headers["Location"].startswith("/login")
    # They can sign in again: signing out is not disabling.
    assert sign_in(app.test_client(), "sol@example.com", PASSWORD).status_code == 302


def test_force_password_reset(app, admin_client):
    user_id = add_user(app, "fay@example.com", PASSWORD)
    fay = _new_client(app, "fay@example.com")
    response = _post(admin_client, f"/admin/users/{user_id}/password-reset")
    assert response.status_code == 302
    assert _load(app, "fay@example.com")["must_change_password"] is True
    assert fay.get("/").headers["Location"].startswith("/login")


def test_reset_mfa_needs_recent_authentication_and_turns_mfa_off(app, admin_client):
    user_id = add_user(app, "max@example.com", PASSWORD)
    with app.app_context():
        user = find_user_by_email("max@example.com")
        user.mfa_secret = "placeholder-not-a-real-secret"
        db.session.commit()
    page = admin_client.get(f"/admin/users/{user_id}").get_data(as_text=True)
    assert 'id="reset-mfa"' in page

    _age_authentication(app, ADMIN_EMAIL)
    response = _post(admin_client, f"/admin/users/{user_id}/mfa-reset")
    assert response.headers["Location"].startswith("/account/reauth")
    assert _load(app, "max@example.com")["mfa"] is True

    _age_authentication(app, ADMIN_EMAIL, seconds=0)
    response = _post(admin_client, f"/admin/users/{user_id}/mfa-reset")
    assert response.status_code == 302
    assert _load(app, "max@example.com")["mfa"] is False


def test_users_list_filters_by_text_and_status(app, admin_client):
    add_user(app, "alpha@example.com", PASSWORD, name="Alpha Person")
    beta = add_user(app, "beta@example.com", PASSWORD, name="Beta Person")
    _post(admin_client, f"/admin/users/{beta}/status", {"action": "disable"})
    everyone = admin_client.get("/admin/users").get_data(as_text=True)
    assert "alpha@example.com" in everyone and "beta@example.com" in everyone
    disabled = admin_client.get("/admin/users?status=disabled").get_data(as_text=True)
    assert "beta@example.com" in disabled and "alpha@example.com" not in disabled
    by_name = admin_client.get("/admin/users?q=alpha+PERSON").get_data(as_text=True)
    assert "alpha@example.com" in by_name and "beta@example.com" not in by_name
    # Nonsense parameters are ignored, never an error.
    assert admin_client.get("/admin/users?status=x&page=-3").status_code == 200


def test_admin_index_lists_the_new_sections(admin_client):
    body = admin_client.get("/admin/").get_data(as_text=True)
    for path in ("/admin/users", "/admin/teams", "/admin/security"):
        assert f'href="{path}"' in body


def test_security_page_requires_mfa_for_all_and_per_role(app, admin_client):
    page = admin_client.get("/admin/security")
    assert page.status_code == 200
    response = _post(
        admin_client,
        "/admin/security",
        {"require_mfa": ["sales_rep"]},
        form_page="/admin/security",
    )
    assert response.status_code == 302
    with app.app_context():
        from bastion import mfa_policy
        from bastion.models import Role

        assert db.session.query(Role).filter_by(name="sales_rep").one().require_mfa
        assert not mfa_policy.required_for_all()

    _age_authentication(app, ADMIN_EMAIL)
    response = _post(admin_client, "/admin/security", {"required_for_all": "yes"})
    assert response.headers["Location"].startswith("/account/reauth")
    with app.app_context():
        from bastion import mfa_policy

        assert not mfa_policy.required_for_all()


def test_non_administrators_get_403_on_every_admin_users_page(app):
    add_user(app, "rep@example.com", PASSWORD, roles=["sales_rep"])
    rep = _new_client(app, "rep@example.com")
    token = csrf_token(rep, "/account")
    admin_id = _user_id(app, ADMIN_EMAIL)
    with app.app_context():
        from bastion.accounts import create_team

        team_id = create_team("Blue", actor="test").id
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin_users.")]
    assert len(rules) >= 14
    for rule in rules:
        path = rule.rule.replace("<int:user_id>", str(admin_id)).replace(
            "<int:team_id>", str(team_id)
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                response = rep.get(path)
            else:
                response = rep.post(path, data={"csrf_token": token, "action": "disable"})
            assert response.status_code == 403, (method, path, response.status_code)
    assert _load(app, ADMIN_EMAIL)["active"] is True
