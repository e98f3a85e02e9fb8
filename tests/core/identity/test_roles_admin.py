"""The roles pages and "why can X see Y", through HTTP like a browser would use them."""

from __future__ import annotations

import logging
import time
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, update

from bastion.db import db
from bastion.models import Role, RoleFieldRule, Team, User, UserSession
from bastion.plugins.contributions import FieldDefinition, ObjectDefinition
from bastion.runtime import platform
from tests.conftest import csrf_token, sign_in
from tests.core.identity.conftest import add_user

PASSWORD = "a long enough test password"


class FormReader(HTMLParser):
    """The fields a browser would submit from the form with the given id."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._first_option: str | None = None
        self._chosen = False
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in {"checkbox", "radio"}:
                if "checked" in a:
                    self.fields.append((a["name"], a.get("value") or "on"))
            elif kind != "submit":
                self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select, self._first_option, self._chosen = a.get("name"), None, False
        elif tag == "option" and self._select:
            value = a.get("value") or ""
            if self._first_option is None:
                self._first_option = value
            if "selected" in a and not self._chosen:
                self.fields.append((self._select, value))
                self._chosen = True
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            if not self._chosen and self._first_option is not None:
                self.fields.append((self._select, self._first_option))
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, self._text))
            self._textarea = None


def read_form(client, path: str, form_id: str = "role-form") -> dict[str, list[str]]:
    page = client.get(path)
    assert page.status_code == 200
    reader = FormReader(form_id)
    reader.feed(page.get_data(as_text=True))
    fields: dict[str, list[str]] = {}
    for name, value in reader.fields:
        fields.setdefault(name, []).append(value)
    return fields


def set_row(fields: dict, obj: str, actions: set[str], scope: str) -> None:
    for action in ("read", "create", "edit", "delete", "import", "export"):
        fields.pop(f"rule:{obj}:{action}", None)
        if action in actions:
            fields[f"rule:{obj}:{action}"] = ["on"]
    fields[f"scope:{obj}"] = [scope]


def _rule(slug: str, obj: str):
    role = db.session.scalar(select(Role).where(Role.name == slug))
    return next((r for r in role.object_rules if r.object_name == obj), None)


@pytest.fixture
def rep(app):
    return add_user(app, "sam@example.com", PASSWORD, roles=["sales_rep"], name="Sam Sales")


@pytest.fixture
def rep_client(app, rep):
    client = app.test_client()
    assert sign_in(client, "sam@example.com", PASSWORD).status_code == 302
    return client


def test_the_roles_page_lists_roles_with_member_counts(admin_client, rep):
    page = admin_client.get("/admin/roles")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for slug in ("administrator", "sales_manager", "sales_rep", "marketing", "auditor"):
        assert f'data-role="{slug}"' in html
    assert "Sales representative" in html
    assert 'href="/admin/roles"' in admin_client.get("/admin/").get_data(as_text=True)


def test_creating_a_role(admin_client, app):
    csrf = csrf_token(admin_client, "/admin/roles")
    bad = admin_client.post(
        "/admin/roles", data={"csrf_token": csrf, "slug": "Bad Slug", "label": "x"}
    )
    assert bad.status_code == 422
    assert "lower-case letter" in bad.get_data(as_text=True)
    taken = admin_client.post(
        "/admin/roles", data={"csrf_token": csrf, "slug": "auditor", "label": "Again"}
    )
    assert taken.status_code == 422 and "already exists" in taken.get_data(as_text=True)
    made = admin_client.post(
        "/admin/roles",
        data={"csrf_token": csrf, "slug": "claims_handler", "label": "Claims handler"},
    )
    assert made.status_code == 302
    assert made.headers["Location"].endswith("/admin/roles/claims_handler")
    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "claims_handler"))
        assert role.label == "Claims handler" and not role.object_rules


def test_the_matrix_saves_in_one_go_and_rotates_members_sessions(
    admin_client, app, rep, rep_client, caplog
):
    fields = read_form(admin_client, "/admin/roles/sales_rep")
    assert fields["scope:contacts"] == ["team"]
    set_row(fields, "contacts", {"read"}, "own")
    set_row(fields, "leads", set(), "")  # back to "same as every other object"
    fields["new_object"] = ["custom_things"]
    set_row(fields, "__new__", {"read", "export"}, "all")
    fields["require_mfa"] = ["on"]
    fields["capability"] = ["admin.access"]
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        saved = admin_client.post("/admin/roles/sales_rep", data=fields)
    assert saved.status_code == 302, saved.get_data(as_text=True)

    with app.app_context():
        contacts = _rule("sales_rep", "contacts")
        assert contacts.scope == "own" and contacts.can_read and not contacts.can_edit
        assert _rule("sales_rep", "leads") is None
        custom = _rule("sales_rep", "custom_things")
        assert custom.can_read and custom.can_export and custom.scope == "all"
        role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        assert role.require_mfa and role.permission_names == {"admin.access"}
        rows = db.session.scalars(select(UserSession).where(UserSession.user_id == rep))
        assert [s.rotate for s in rows if s.ended_at is None] == [True]

    entry = next(r for r in caplog.records if getattr(r, "action", None) == "role.change")
    assert entry.object_id == "sales_rep"
    assert entry.changes["object:contacts"] == {
        "before": "read,create,edit scope team",
        "after": "read scope own",
    }
    assert entry.changes["require_mfa"] == {"before": False, "after": True}

    # The member's next request swaps the session; the old cookie is dead afterwards.
    rep_client.get("/")
    with app.app_context():
        rows = list(db.session.scalars(select(UserSession).where(UserSession.user_id == rep)))
        assert any(s.end_reason == "rotated" for s in rows)


def test_an_unchanged_matrix_saves_nothing_and_shows_the_same(admin_client, caplog):
    page = admin_client.get("/admin/roles/marketing").get_data(as_text=True)
    # The wide matrix scrolls inside its own box on a 360 px screen.
    assert '<div class="matrix-scroll" tabindex="0" role="region"' in page
    before = read_form(admin_client, "/admin/roles/marketing")
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        saved = admin_client.post("/admin/roles/marketing", data=before)
    assert saved.status_code == 302
    assert not [r for r in caplog.records if getattr(r, "action", None) == "role.change"]
    after = read_form(admin_client, "/admin/roles/marketing")
    before.pop("csrf_token"), after.pop("csrf_token")
    assert after == before
    assert after["scope:campaigns"] == ["all"] and "rule:campaigns:delete" in after


def test_a_refused_form_saves_nothing(admin_client, app):
    fields = read_form(admin_client, "/admin/roles/sales_rep")
    set_row(fields, "contacts", {"read"}, "own")
    set_row(fields, "leads", {"read"}, "")  # ticked, but no scope of its own
    refused = admin_client.post("/admin/roles/sales_rep", data=fields)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "Nothing was saved" in html and "Choose a record scope for leads" in html
    with app.app_context():
        assert _rule("sales_rep", "contacts").scope == "team"

    bad_scope = read_form(admin_client, "/admin/roles/sales_rep")
    bad_scope["scope:contacts"] = ["everyone"]
    assert admin_client.post("/admin/roles/sales_rep", data=bad_scope).status_code == 422

    unknown = read_form(admin_client, "/admin/roles/sales_rep")
    unknown["capability"] = ["nonexistent.power"]
    response = admin_client.post("/admin/roles/sales_rep", data=unknown)
    assert response.status_code == 422
    assert "nonexistent.power" in response.get_data(as_text=True)


def test_the_administrator_role_keeps_everything(admin_client, app):
    fields = read_form(admin_client, "/admin/roles/administrator")
    assert fields["capability"] == ["*"]
    fields.pop("capability")
    refused = admin_client.post("/admin/roles/administrator", data=fields)
    assert refused.status_code == 422
    assert "always keeps every capability" in refused.get_data(as_text=True)
    csrf = csrf_token(admin_client, "/admin/roles/administrator")
    deleted = admin_client.post("/admin/roles/administrator/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 409
    assert "cannot be deleted" in deleted.get_data(as_text=True)
    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "administrator"))
        assert role is not None and role.permission_names == {"*"}


def test_deleting_a_custom_role(admin_client, app):
    user_id = add_user(app, "claims@example.com", roles=["claims_handler"])
    csrf = csrf_token(admin_client, "/admin/roles/claims_handler")
    response = admin_client.post("/admin/roles/claims_handler/delete", data={"csrf_token": csrf})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Role).where(Role.name == "claims_handler")) is None
        assert db.session.get(User, user_id).roles == []


def test_field_rules_are_edited_per_object(admin_client, app):
    platform(app).objects["contacts"] = (
        "core",
        ObjectDefinition(
            "contacts",
            "Contact",
            "Contacts",
            fields=(
                FieldDefinition("name", "text", "Name"),
                FieldDefinition("ssn", "text", "Social security number"),
            ),
        ),
    )
    fields = read_form(admin_client, "/admin/roles/sales_rep")
    assert fields["field:contacts:ssn"] == ["edit"]
    fields["field:contacts:ssn"] = ["hidden"]
    fields["field:contacts:name"] = ["read_only"]
    assert admin_client.post("/admin/roles/sales_rep", data=fields).status_code == 302
    with app.app_context():
        rules = {
            r.field_name: r.access
            for r in db.session.scalars(
                select(RoleFieldRule).where(RoleFieldRule.object_name == "contacts")
            )
        }
        assert rules == {"ssn": "hidden", "name": "read_only"}
    again = read_form(admin_client, "/admin/roles/sales_rep")
    assert again["field:contacts:ssn"] == ["hidden"]
    again["field:contacts:name"] = ["edit"]
    assert admin_client.post("/admin/roles/sales_rep", data=again).status_code == 302
    with app.app_context():
        names = set(db.session.scalars(select(RoleFieldRule.field_name)))
        assert names == {"ssn"}


def test_non_administrators_are_refused(rep_client):
    assert rep_client.get("/admin/roles").status_code == 403
    assert rep_client.get("/admin/roles/sales_rep").status_code == 403
    csrf = csrf_token(rep_client, "/")
    response = rep_client.post(
        "/admin/roles/sales_rep", data={"csrf_token": csrf, "label": "Mine", "capability": "*"}
    )
    assert response.status_code == 403
    assert rep_client.get("/admin/users/1/access?object=contacts").status_code == 403


def test_saving_needs_a_recent_authentication(admin_client, app):
    fields = read_form(admin_client, "/admin/roles/sales_rep")
    set_row(fields, "contacts", {"read"}, "own")
    with app.app_context():
        db.session.execute(update(UserSession).values(authenticated_at=int(time.time()) - 3600))
        db.session.commit()
    response = admin_client.post("/admin/roles/sales_rep", data=fields)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/reauth")
    with app.app_context():
        assert _rule("sales_rep", "contacts").scope == "team"


def test_unknown_roles_answer_404(admin_client):
    assert admin_client.get("/admin/roles/nope").status_code == 404


# --------------------------------------------------------------------------- explain


@pytest.fixture
def north(app, rep):
    nina = add_user(app, "nina@example.com", roles=["sales_rep"], name="Nina North")
    sofia = add_user(app, "sofia@example.com", roles=["support_agent"], name="Sofia Support")
    with app.app_context():
        team = Team(name="Sales North")
        db.session.add(team)
        db.session.flush()
        db.session.get(User, rep).team_id = team.id
        db.session.get(User, nina).team_id = team.id
        db.session.commit()
    return {"sam": rep, "nina": nina, "sofia": sofia}


def test_the_explain_page_names_the_deciding_role_and_scope(admin_client, north):
    url = f"/admin/users/{north['sam']}/access"
    blank = admin_client.get(url)
    assert blank.status_code == 200
    assert 'id="explain-form"' in blank.get_data(as_text=True)

    page = admin_client.get(
        url, query_string={"object": "contacts", "action": "read", "owner": north["nina"]}
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-role="sales_rep" data-scope="team"' in html
    assert "Nina North is in team Sales North" in html
    assert "Allowed" in html

    refused = admin_client.get(
        url, query_string={"object": "contacts", "action": "read", "owner": north["sofia"]}
    ).get_data(as_text=True)
    assert 'explain-line--final" data-allowed="no"' in refused
    assert "Sofia Support is in team" in refused or "Sofia Support is in no team" in refused


def test_the_explain_page_refuses_bad_input_politely(admin_client, north):
    url = f"/admin/users/{north['sam']}/access"
    assert admin_client.get(url, query_string={"object": "Robert'); DROP"}).status_code == 422
    assert (
        admin_client.get(url, query_string={"object": "contacts", "action": "fly"}).status_code
        == 422
    )
    assert (
        admin_client.get(url, query_string={"object": "contacts", "owner": "999999"}).status_code
        == 422
    )
    assert admin_client.get("/admin/users/999999/access").status_code == 404


def test_a_role_emptied_in_the_matrix_stays_empty_after_an_upgrade(admin_client, app, cli):
    fields = read_form(admin_client, "/admin/roles/support_agent")
    for key in [k for k in fields if k.startswith("rule:")]:
        fields.pop(key)
    for key in [k for k in fields if k.startswith("scope:") and k != "scope:*"]:
        fields[key] = [""]
    assert admin_client.post("/admin/roles/support_agent", data=fields).status_code == 302
    assert cli("upgrade").exit_code == 0
    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "support_agent"))
        assert [(r.object_name, r.can_read) for r in role.object_rules] == [("*", False)]
