"""Nobody but an administrator may grant, or act on, more than they hold themselves.

A user manager (admin.access + admin.users) and a role administrator (admin.access +
admin.roles) are refused every change that would widen their own rights or touch a more
powerful account; an administrator ("*") still may do all of it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.db import db
from bastion.identity import ensure_role, find_user_by_email
from bastion.models import Role, Team
from tests.conftest import ADMIN_EMAIL, csrf_token, dispose, make_app, sign_in
from tests.core.identity.conftest import add_user
from tests.core.identity.test_password_reset import free_port, mail_settings
from tests.core.identity.test_roles_admin import read_form, set_row

PASSWORD = "a long enough test password"
MANAGER = "manager@example.com"
ROLE_ADMIN = "roles@example.com"


def _client(app, email: str):
    client = app.test_client()
    assert sign_in(client, email, PASSWORD).status_code == 302
    return client


def _post(client, path: str, data: dict | None = None):
    return client.post(path, data={"csrf_token": csrf_token(client, "/account"), **(data or {})})


def _user(app, email: str) -> dict:
    with app.app_context():
        user = find_user_by_email(email)
        assert user is not None
        return {
            "id": user.id,
            "roles": sorted(r.name for r in user.roles),
            "team": user.team.name if user.team else None,
            "active": user.active,
            "must_change_password": user.must_change_password,
        }


def _team(app, name: str) -> dict | None:
    with app.app_context():
        team = db.session.scalar(select(Team).where(Team.name == name))
        if team is None:
            return None
        return {"id": team.id, "manager": team.manager.email if team.manager else None}


def _role(app, slug: str) -> dict:
    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == slug))
        return {
            "capabilities": role.permission_names,
            "rules": {
                r.object_name: ({a for a in ("read", "edit") if r.allows(a)}, r.scope)
                for r in role.object_rules
            },
        }


def _add_with_role(app, email: str, slug: str, capabilities: list[str]) -> int:
    with app.app_context():
        ensure_role(slug, slug.replace("_", " ").title(), capabilities)
        db.session.commit()
    return add_user(app, email, PASSWORD, roles=[slug])


@pytest.fixture
def manager(app):
    _add_with_role(app, MANAGER, "user_manager", ["admin.access", "admin.users"])
    return _client(app, MANAGER)


@pytest.fixture
def role_admin(app):
    _add_with_role(app, ROLE_ADMIN, "role_admin", ["admin.access", "admin.roles"])
    add_user(app, "claims@example.com", PASSWORD, roles=["claims_handler"])
    return _client(app, ROLE_ADMIN)


# User manager ----------------------------------------------------------------------------


def test_a_user_manager_cannot_give_themselves_a_default_record_role(app, manager):
    me = _user(app, MANAGER)["id"]
    for slug in ("sales_manager", "sales_rep", "marketing", "support_agent"):
        response = _post(manager, f"/admin/users/{me}/roles", {"roles": ["user_manager", slug]})
        assert response.status_code == 422, slug
        assert "permissions you do not hold" in response.get_data(as_text=True)
    assert _user(app, MANAGER)["roles"] == ["user_manager"]

    # Nor hand it to someone else, or create a user with it.
    rep_id = add_user(app, "new@example.com", PASSWORD)
    response = _post(manager, f"/admin/users/{rep_id}/roles", {"roles": ["sales_manager"]})
    assert response.status_code == 422
    assert _user(app, "new@example.com")["roles"] == []


def test_a_user_manager_cannot_join_or_manage_a_team(app, admin_client, manager):
    assert _post(admin_client, "/admin/teams", {"name": "North"}).status_code == 302
    north = _team(app, "North")["id"]
    me = _user(app, MANAGER)["id"]

    joined = _post(
        manager, f"/admin/users/{me}/roles", {"roles": ["user_manager"], "team": "North"}
    )
    assert joined.status_code == 422
    assert "You cannot put yourself into a team" in joined.get_data(as_text=True)
    assert _user(app, MANAGER)["team"] is None

    created = _post(manager, "/admin/teams", {"name": "South", "manager": MANAGER})
    assert created.status_code == 422
    assert "manager of a team" in created.get_data(as_text=True)
    assert _team(app, "South") is None

    managed = _post(manager, f"/admin/teams/{north}", {"name": "North", "manager": MANAGER})
    assert managed.status_code == 422
    assert _team(app, "North")["manager"] is None

    # Other users they may still move between teams.
    other = add_user(app, "other@example.com", PASSWORD)
    assert _post(manager, f"/admin/users/{other}/roles", {"team": "North"}).status_code == 302
    assert _user(app, "other@example.com")["team"] == "North"


def test_a_user_manager_cannot_act_on_an_administrator(app, manager):
    admin_id = _user(app, ADMIN_EMAIL)["id"]
    for path, data in (
        ("status", {"action": "disable"}),
        ("mfa-reset", {}),
        ("password-reset", {}),
        ("sign-out", {}),
        ("roles", {"roles": ["administrator"]}),
    ):
        response = _post(manager, f"/admin/users/{admin_id}/{path}", data)
        assert response.status_code == 403, path
        assert "holds permissions you do not hold yourself (*)" in response.get_data(as_text=True)
    admin = _user(app, ADMIN_EMAIL)
    assert admin["active"] and not admin["must_change_password"]
    assert admin["roles"] == ["administrator"]


def test_a_user_manager_still_manages_ordinary_users(app, manager):
    plain = add_user(app, "plain@example.com", PASSWORD)
    response = _post(manager, f"/admin/users/{plain}/status", {"action": "disable"})
    assert response.status_code == 302
    assert _user(app, "plain@example.com")["active"] is False


def test_an_administrator_still_can_do_all_of_it(app, admin_client):
    _add_with_role(app, MANAGER, "user_manager", ["admin.access", "admin.users"])
    manager_id = _user(app, MANAGER)["id"]
    admin_id = _user(app, ADMIN_EMAIL)["id"]
    assert _post(admin_client, "/admin/teams", {"name": "North"}).status_code == 302

    granted = _post(
        admin_client,
        f"/admin/users/{manager_id}/roles",
        {"roles": ["user_manager", "sales_manager"], "team": "North"},
    )
    assert granted.status_code == 302
    assert _user(app, MANAGER)["roles"] == ["sales_manager", "user_manager"]
    assert _user(app, MANAGER)["team"] == "North"

    own = _post(
        admin_client,
        f"/admin/users/{admin_id}/roles",
        {"roles": ["administrator"], "team": "North"},
    )
    assert own.status_code == 302 and _user(app, ADMIN_EMAIL)["team"] == "North"
    created = _post(admin_client, "/admin/teams", {"name": "South", "manager": ADMIN_EMAIL})
    assert created.status_code == 302 and _team(app, "South")["manager"] == ADMIN_EMAIL

    for path, data in (("password-reset", {}), ("status", {"action": "disable"})):
        assert _post(admin_client, f"/admin/users/{manager_id}/{path}", data).status_code == 302
    assert _user(app, MANAGER)["active"] is False


def test_forcing_a_password_reset_needs_a_recent_authentication(app, admin_client):
    import time

    from sqlalchemy import update

    from bastion.models import UserSession

    target = add_user(app, "fay@example.com", PASSWORD)
    with app.app_context():
        db.session.execute(update(UserSession).values(authenticated_at=int(time.time()) - 3600))
        db.session.commit()
    response = _post(admin_client, f"/admin/users/{target}/password-reset")
    assert response.status_code == 302 and "/account/reauth" in response.headers["Location"]
    assert _user(app, "fay@example.com")["must_change_password"] is False


@pytest.fixture
def broken_mail_app(data_dir, database_url):
    """Mail is configured, but nothing listens on the port: every send fails."""
    application = make_app(mail_settings(data_dir, database_url, free_port()))
    yield application
    dispose(application)


def test_only_administrators_see_a_reset_link_that_could_not_be_mailed(broken_mail_app):
    app = broken_mail_app
    _add_with_role(app, MANAGER, "user_manager", ["admin.access", "admin.users"])
    target = add_user(app, "fay@example.com", PASSWORD)

    manager = _client(app, MANAGER)
    response = _post(manager, f"/admin/users/{target}/password-reset")
    assert response.status_code == 302
    page = manager.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ask an administrator" in page and "/password/reset/" not in page
    assert _user(app, "fay@example.com")["must_change_password"] is True

    admin = app.test_client()
    assert sign_in(admin).status_code == 302
    shown = _post(admin, f"/admin/users/{target}/password-reset")
    assert shown.status_code == 200
    assert 'id="reset-link"' in shown.get_data(as_text=True)


# Role administrator ----------------------------------------------------------------------


def test_a_role_administrator_cannot_grant_what_they_do_not_hold(app, role_admin):
    before = _role(app, "claims_handler")

    star = read_form(role_admin, "/admin/roles/claims_handler")
    star["capability"] = ["*"]
    response = role_admin.post("/admin/roles/claims_handler", data=star)
    assert response.status_code == 403
    assert "You can only grant what you hold yourself" in response.get_data(as_text=True)

    other = read_form(role_admin, "/admin/roles/claims_handler")
    other["capability"] = ["admin.users"]
    assert role_admin.post("/admin/roles/claims_handler", data=other).status_code == 403

    records = read_form(role_admin, "/admin/roles/claims_handler")
    set_row(records, "*", {"read"}, "all")
    response = role_admin.post("/admin/roles/claims_handler", data=records)
    assert response.status_code == 403
    assert "read on every object with scope all" in response.get_data(as_text=True)
    assert _role(app, "claims_handler") == before

    # What they hold themselves they may grant.
    held = read_form(role_admin, "/admin/roles/claims_handler")
    held["capability"] = ["admin.access"]
    assert role_admin.post("/admin/roles/claims_handler", data=held).status_code == 302
    assert _role(app, "claims_handler")["capabilities"] == {"admin.access"}


def test_a_role_administrator_cannot_widen_their_own_role_or_the_administrators(app, role_admin):
    before = _role(app, "role_admin")
    own = read_form(role_admin, "/admin/roles/role_admin")
    own["capability"] = ["admin.access", "admin.roles", "admin.users"]
    response = role_admin.post("/admin/roles/role_admin", data=own)
    assert response.status_code == 403
    assert "You are a member of Role Admin" in response.get_data(as_text=True)
    assert _role(app, "role_admin") == before

    admin_role = read_form(role_admin, "/admin/roles/administrator")
    response = role_admin.post("/admin/roles/administrator", data=admin_role)
    assert response.status_code == 403
    assert "Only administrators may change the administrator role" in response.get_data(
        as_text=True
    )

    # A default role that reads records they cannot read is out of reach too.
    sales = read_form(role_admin, "/admin/roles/sales_rep")
    sales["label"] = ["Renamed"]
    assert role_admin.post("/admin/roles/sales_rep", data=sales).status_code == 403


def test_an_administrator_may_tick_every_capability(app, admin_client):
    add_user(app, "claims@example.com", PASSWORD, roles=["claims_handler"])
    fields = read_form(admin_client, "/admin/roles/claims_handler")
    fields["capability"] = ["*"]
    set_row(fields, "*", {"read", "edit"}, "all")
    assert admin_client.post("/admin/roles/claims_handler", data=fields).status_code == 302
    saved = _role(app, "claims_handler")
    assert saved["capabilities"] == {"*"} and saved["rules"]["*"] == ({"read", "edit"}, "all")
