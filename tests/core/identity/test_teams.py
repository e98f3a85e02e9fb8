"""Teams through the admin pages: create, nest, refuse cycles and duplicates, delete."""

from __future__ import annotations

from bastion.db import db
from bastion.models import Team
from tests.conftest import csrf_token
from tests.core.identity.conftest import add_user


def _post(client, path: str, data: dict | None = None):
    token = csrf_token(client, "/admin/teams")
    return client.post(path, data={"csrf_token": token, **(data or {})})


def _team(app, name: str) -> dict | None:
    with app.app_context():
        team = db.session.query(Team).filter_by(name=name).one_or_none()
        if team is None:
            return None
        return {
            "id": team.id,
            "parent": team.parent.name if team.parent else None,
            "manager": team.manager.email if team.manager else None,
        }


def _create(client, name: str, parent: str = "", manager: str = ""):
    return _post(client, "/admin/teams", {"name": name, "parent": parent, "manager": manager})


def test_create_and_nest_teams(app, admin_client):
    add_user(app, "boss@example.com", name="Bea Boss")
    assert _create(admin_client, "Sales", manager="boss@example.com").status_code == 302
    assert _create(admin_client, "Sales North", parent="Sales").status_code == 302
    assert _team(app, "Sales") == {
        "id": _team(app, "Sales")["id"],
        "parent": None,
        "manager": "boss@example.com",
    }
    assert _team(app, "Sales North")["parent"] == "Sales"
    page = admin_client.get("/admin/teams").get_data(as_text=True)
    assert 'data-team="Sales North"' in page
    assert "boss@example.com" in page


def test_a_team_cannot_become_its_own_ancestor(app, admin_client):
    _create(admin_client, "Top")
    _create(admin_client, "Middle", parent="Top")
    _create(admin_client, "Bottom", parent="Middle")
    top = _team(app, "Top")["id"]

    response = _post(admin_client, f"/admin/teams/{top}", {"name": "Top", "parent": "Bottom"})
    assert response.status_code == 422
    assert "cannot be the parent of Top" in response.get_data(as_text=True)
    assert _team(app, "Top")["parent"] is None

    response = _post(admin_client, f"/admin/teams/{top}", {"name": "Top", "parent": "Top"})
    assert response.status_code == 422
    assert _team(app, "Top")["parent"] is None

    # Moving a team elsewhere in the tree is fine.
    bottom = _team(app, "Bottom")["id"]
    response = _post(admin_client, f"/admin/teams/{bottom}", {"name": "Bottom", "parent": "Top"})
    assert response.status_code == 302
    assert _team(app, "Bottom")["parent"] == "Top"


def test_team_names_are_unique_and_not_empty(app, admin_client):
    _create(admin_client, "Support")
    response = _create(admin_client, "support")
    assert response.status_code == 422
    assert "A team named Support already exists" in response.get_data(as_text=True)
    response = _create(admin_client, "   ")
    assert response.status_code == 422
    assert "must not be empty" in response.get_data(as_text=True)
    _create(admin_client, "Other")
    other = _team(app, "Other")["id"]
    response = _post(admin_client, f"/admin/teams/{other}", {"name": "SUPPORT"})
    assert response.status_code == 422
    assert _team(app, "Other") is not None


def test_unknown_manager_or_parent_is_named(admin_client):
    response = _create(admin_client, "Ghosts", manager="nobody@example.com")
    assert "There is no user with the email nobody@example.com." in response.get_data(as_text=True)
    response = _create(admin_client, "Ghosts", parent="Atlantis")
    assert response.status_code == 422
    assert "There is no team named &#39;Atlantis&#39;." in response.get_data(as_text=True)


def test_delete_refused_while_the_team_has_members_or_sub_teams(app, admin_client, cli):
    _create(admin_client, "Parent")
    _create(admin_client, "Child", parent="Parent")
    parent = _team(app, "Parent")["id"]
    response = _post(admin_client, f"/admin/teams/{parent}/delete")
    assert response.status_code == 409
    assert "still has sub-teams (Child)" in response.get_data(as_text=True)

    child = _team(app, "Child")["id"]
    user_id = add_user(app, "kid@example.com", roles=["sales_rep"])
    _post(admin_client, f"/admin/users/{user_id}/roles", {"roles": ["sales_rep"], "team": "Child"})
    response = _post(admin_client, f"/admin/teams/{child}/delete")
    assert response.status_code == 409
    assert "still has 1 member" in response.get_data(as_text=True)

    _post(admin_client, f"/admin/users/{user_id}/roles", {"roles": ["sales_rep"], "team": ""})
    assert _post(admin_client, f"/admin/teams/{child}/delete").status_code == 302
    assert _post(admin_client, f"/admin/teams/{parent}/delete").status_code == 302
    assert _team(app, "Child") is None and _team(app, "Parent") is None


def test_unknown_team_is_404(admin_client):
    assert admin_client.get("/admin/teams/99999").status_code == 404
    assert _post(admin_client, "/admin/teams/99999/delete").status_code == 404
