"""The authorization service on its own: object permissions, record scope, field security."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from flask import g

from bastion import authz
from bastion.db import db
from bastion.models import OBJECT_ACTIONS, Role, RoleFieldRule, RoleObjectRule, Team, User
from bastion.plugins.contributions import FieldDefinition, ObjectDefinition
from bastion.runtime import platform
from tests.core.identity.conftest import add_user

ALL = "read create edit delete import export"
#: Expected actions of each default role on each object (through the service).
EXPECTED = {
    "administrator": {
        "accounts": ALL,
        "contacts": ALL,
        "leads": ALL,
        "cases": ALL,
        "custom_things": ALL,
    },
    "sales_manager": {"accounts": ALL, "contacts": ALL, "leads": ALL},
    "sales_rep": {
        "accounts": "read create edit",
        "contacts": "read create edit",
        "leads": "read create edit",
    },
    "marketing": {
        "accounts": "read",
        "contacts": "read",
        "leads": "read create edit import export",
    },
    "support_agent": {"accounts": "read", "contacts": "read", "cases": ALL},
    "auditor": {
        "accounts": "read",
        "contacts": "read",
        "leads": "read",
        "cases": "read",
        "custom_things": "read",
    },
}
OBJECTS = ("accounts", "contacts", "leads", "cases", "custom_things")


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_default_role_matrix(app, role):
    """Every action on every object for one default role, against the table above."""
    user_id = add_user(app, f"{role}@example.com", roles=[role])
    with app.app_context():
        user = db.session.get(User, user_id)
        actual, wrong_reasons = {}, []
        for obj in OBJECTS:
            granted = []
            for action in OBJECT_ACTIONS:
                decision = authz.object_decision(user, obj, action)
                if decision.allowed:
                    granted.append(action)
                    if decision.role != role or not decision.reason.startswith("Role "):
                        wrong_reasons.append(decision)
                elif decision.role is not None:
                    wrong_reasons.append(decision)
            if granted:
                actual[obj] = " ".join(granted)
        assert actual == EXPECTED[role]
        assert wrong_reasons == []


# --------------------------------------------------------------------------- scopes


@pytest.fixture
def org(app):
    """Sales (managed by Maria) > Sales North (Sam, Nina); Support (Sofia); Lonely has no team."""
    ids = {
        "maria": add_user(app, "maria@example.com", roles=["sales_manager"], name="Maria Manager"),
        "sam": add_user(app, "sam@example.com", roles=["sales_rep"], name="Sam Sales"),
        "nina": add_user(app, "nina@example.com", roles=["sales_rep"], name="Nina North"),
        "lonely": add_user(app, "lonely@example.com", roles=["sales_rep"], name="Lonely Rep"),
        "sofia": add_user(app, "sofia@example.com", roles=["support_agent"], name="Sofia"),
        "aiko": add_user(app, "aiko@example.com", roles=["auditor"], name="Aiko Auditor"),
    }
    with app.app_context():
        sales = Team(name="Sales", manager_id=ids["maria"])
        db.session.add(sales)
        db.session.flush()
        north = Team(name="Sales North", parent_id=sales.id)
        support = Team(name="Support")
        db.session.add_all([north, support])
        db.session.flush()
        users = {key: db.session.get(User, value) for key, value in ids.items()}
        users["maria"].team_id = sales.id
        users["sam"].team_id = users["nina"].team_id = north.id
        users["sofia"].team_id = support.id
        db.session.commit()
    return ids


def _user(key_or_id, org=None) -> User:
    return db.session.get(User, org[key_or_id] if org else key_or_id)


def test_a_rep_without_a_team_reaches_only_their_own_records(app, org):
    with app.app_context():
        lonely = _user("lonely", org)
        assert authz.reachable_owner_ids(lonely, "contacts") == {org["lonely"]}
        assert authz.record_decision(lonely, "contacts", "read", org["lonely"]).allowed
        refused = authz.record_decision(lonely, "contacts", "read", org["sam"])
        assert not refused.allowed
        assert "in no team" in refused.reason


def test_a_rep_in_a_team_reaches_teammates_records(app, org):
    with app.app_context():
        sam = _user("sam", org)
        assert authz.reachable_owner_ids(sam, "contacts") == {org["sam"], org["nina"]}
        decision = authz.record_decision(sam, "contacts", "edit", org["nina"])
        assert decision.allowed and decision.scope == "team" and decision.role == "sales_rep"
        assert "Nina North is in team Sales North" in decision.reason
        # Team, not the tree above it: the manager of the parent team is out of reach.
        assert not authz.record_decision(sam, "contacts", "read", org["maria"]).allowed
        assert not authz.record_decision(sam, "contacts", "read", org["sofia"]).allowed


def test_a_manager_reaches_the_sub_teams_but_not_other_teams(app, org):
    with app.app_context():
        maria = _user("maria", org)
        reach = authz.reachable_owner_ids(maria, "accounts", "delete")
        assert {org["maria"], org["sam"], org["nina"]} <= reach
        assert org["sofia"] not in reach and org["lonely"] not in reach
        decision = authz.record_decision(maria, "accounts", "delete", org["sam"])
        assert decision.allowed and decision.scope == "team_tree"
        assert not authz.record_decision(maria, "accounts", "read", org["sofia"]).allowed


def test_scope_all_and_no_permission(app, org):
    with app.app_context():
        aiko, sofia, sam = _user("aiko", org), _user("sofia", org), _user("sam", org)
        assert authz.reachable_owner_ids(aiko, "contacts") is None
        assert authz.reachable_owner_ids(aiko, "contacts", "edit") == frozenset()
        assert authz.reachable_owner_ids(sofia, "contacts") is None
        assert authz.reachable_owner_ids(sofia, "cases") == {org["sofia"]}
        assert authz.reachable_owner_ids(sam, "cases") == frozenset()
        # A record without an owner is reached only by scope all.
        assert authz.record_decision(aiko, "leads", "read", None).allowed
        assert not authz.record_decision(sam, "leads", "read", None).allowed


def test_roles_combine_to_the_widest_scope(app, org):
    with app.app_context():
        sam = _user("sam", org)
        sam.roles.append(db.session.scalar(db.select(Role).where(Role.name == "auditor")))
        db.session.commit()
        decision = authz.object_decision(sam, "contacts", "read")
        assert decision.scope == "all" and decision.role == "auditor"
        assert authz.reachable_owner_ids(sam, "contacts") is None
        # Editing still comes only from sales_rep, with its team scope.
        assert authz.reachable_owner_ids(sam, "contacts", "edit") == {org["sam"], org["nina"]}


def test_an_object_rule_overrides_the_every_object_rule(app, org):
    with app.app_context():
        auditor = db.session.scalar(db.select(Role).where(Role.name == "auditor"))
        auditor.object_rules.append(RoleObjectRule(object_name="salaries", scope="own"))
        db.session.commit()
        aiko = _user("aiko", org)
        assert not authz.object_decision(aiko, "salaries", "read").allowed
        assert authz.object_decision(aiko, "contacts", "read").allowed


def test_a_cycle_of_parent_teams_does_not_hang(app, org):
    with app.app_context():
        sales = db.session.scalar(db.select(Team).where(Team.name == "Sales"))
        north = db.session.scalar(db.select(Team).where(Team.name == "Sales North"))
        sales.parent_id = north.id  # Sales > North > Sales ...
        db.session.commit()
        sam = _user("sam", org)
        assert authz.user_team_ids(sam, with_sub_teams=True) == {sales.id, north.id}
        owners = authz.owner_ids_for_scope(sam, "team_tree")
        assert {org["sam"], org["nina"], org["maria"]} <= owners


def test_disabled_users_are_refused(app, org):
    with app.app_context():
        aiko = _user("aiko", org)
        aiko.active = False
        db.session.commit()
        decision = authz.object_decision(aiko, "contacts", "read")
        assert not decision.allowed and "disabled" in decision.reason
        assert authz.reachable_owner_ids(aiko, "contacts") == frozenset()
        assert authz.field_access(aiko, "contacts", "email") == "hidden"


def test_unknown_actions_are_a_programming_error(app, org):
    with app.app_context(), pytest.raises(authz.AuthorizationError):
        authz.object_decision(_user("sam", org), "contacts", "approve")


def test_objects_of_a_disabled_plugin_grant_nothing(app, org):
    from bastion.plugins import state

    platform(app).objects["status_notes"] = (
        "status",
        ObjectDefinition("status_notes", "Status note", "Status notes"),
    )
    with app.app_context():
        assert authz.object_decision(_user("aiko", org), "status_notes", "read").allowed
        state.disable(platform(app).registry, ["status"], actor="test")
        db.session.commit()
        decision = authz.object_decision(_user("aiko", org), "status_notes", "read")
        assert not decision.allowed and "disabled" in decision.reason


# --------------------------------------------------------------------------- fields


def _field_rule(app, role: str, obj: str, field: str, access: str) -> None:
    with app.app_context():
        row = db.session.scalar(db.select(Role).where(Role.name == role))
        row.field_rules.append(RoleFieldRule(object_name=obj, field_name=field, access=access))
        db.session.commit()


def test_field_rules_of_one_role(app, org):
    _field_rule(app, "sales_rep", "contacts", "ssn", "hidden")
    _field_rule(app, "sales_rep", "contacts", "email", "read_only")
    with app.app_context():
        sam = _user("sam", org)
        assert authz.field_access(sam, "contacts", "ssn") == "hidden"
        assert authz.field_access(sam, "contacts", "email") == "read"
        assert authz.field_access(sam, "contacts", "phone") == "edit"
        names = ["name", "email", "ssn", "phone"]
        assert authz.readable_fields(sam, "contacts", names) == ["name", "email", "phone"]
        assert authz.editable_fields(sam, "contacts", names) == ["name", "phone"]
        # A role that may only read the object makes its fields read-only.
        assert authz.field_access(_user("aiko", org), "contacts", "ssn") == "read"
        # Without read on the object every field is hidden.
        assert authz.field_access(_user("sofia", org), "leads", "email") == "hidden"


def test_the_most_permissive_role_wins_for_fields(app, org):
    _field_rule(app, "sales_rep", "contacts", "ssn", "hidden")
    _field_rule(app, "sales_rep", "leads", "ssn", "hidden")
    with app.app_context():
        sam = _user("sam", org)
        for slug in ("marketing", "support_agent"):
            sam.roles.append(db.session.scalar(db.select(Role).where(Role.name == slug)))
        db.session.commit()
        # Marketing reads contacts without a rule on ssn: read beats hidden.
        assert authz.field_access(sam, "contacts", "ssn") == "read"
        # Marketing edits leads and has no rule: edit beats hidden.
        assert authz.field_access(sam, "leads", "ssn") == "edit"
        # Support cannot read leads, so it does not count; cases are support's alone.
        assert authz.field_access(sam, "cases", "ssn") == "edit"


def test_hidden_stays_hidden_when_no_other_role_reads_the_object(app, org):
    _field_rule(app, "sales_rep", "leads", "ssn", "hidden")
    with app.app_context():
        sam = _user("sam", org)
        sam.roles.append(db.session.scalar(db.select(Role).where(Role.name == "support_agent")))
        db.session.commit()
        assert authz.field_access(sam, "leads", "ssn") == "hidden"


# --------------------------------------------------------------------------- tokens


def test_a_token_narrows_object_permissions(app, org):
    with app.test_request_context("/api/v1/contacts"):
        sam = _user("sam", org)
        _made_with_token_of(sam, {"contacts:read"})
        assert authz.object_decision(sam, "contacts", "read").allowed
        refused = authz.object_decision(sam, "contacts", "edit")
        assert not refused.allowed
        assert refused.reason == "The API token does not carry contacts:edit."
        assert authz.reachable_owner_ids(sam, "leads") == frozenset()
        assert authz.field_access(sam, "contacts", "phone") == "read"
        # Questions about someone else are not narrowed by the caller's token.
        assert authz.object_decision(_user("maria", org), "contacts", "edit").allowed
    with app.test_request_context("/contacts"):
        # Without a token (a browser session) the user's own roles apply in full.
        assert authz.object_decision(_user("sam", org), "contacts", "edit").allowed


def test_a_token_cannot_widen_the_users_roles(app, org):
    with app.test_request_context("/api/v1/cases"):
        sam = _user("sam", org)
        _made_with_token_of(sam, {"cases:read"})
        assert not authz.object_decision(sam, "cases", "read").allowed


def _made_with_token_of(user, scopes: set[str]) -> None:
    """What bastion.web.api_auth sets when a request carries the user's token."""
    g.api_token = SimpleNamespace(user_id=user.id)
    g.api_token_scopes = frozenset(scopes)


def test_decisions_are_cached_per_request_but_see_changes_next_request(app, org):
    with app.test_request_context("/"):
        lonely = _user("lonely", org)
        assert authz.reachable_owner_ids(lonely, "contacts") == {org["lonely"]}
    with app.app_context():
        lonely = _user("lonely", org)
        lonely.team_id = db.session.scalar(db.select(Team.id).where(Team.name == "Sales North"))
        db.session.commit()
    with app.test_request_context("/"):
        reach = authz.reachable_owner_ids(_user("lonely", org), "contacts")
        assert reach == {org["lonely"], org["sam"], org["nina"]}


# --------------------------------------------------------------------------- explain


def test_explain_lists_each_role_and_the_final_decision(app, org):
    platform(app).objects["contacts"] = (
        "core",
        ObjectDefinition(
            "contacts",
            "Contact",
            "Contacts",
            fields=(FieldDefinition("email", "email", "Email"),),
        ),
    )
    _field_rule(app, "sales_rep", "contacts", "email", "read_only")
    with app.app_context():
        sam = _user("sam", org)
        sam.roles.append(db.session.scalar(db.select(Role).where(Role.name == "support_agent")))
        db.session.commit()
        lines = authz.explain(sam, "contacts", "edit", owner_id=org["nina"], field_name="email")
        by_role = {line.role: line for line in lines[:2]}
        assert set(by_role) == {"sales_rep", "support_agent"}
        assert by_role["sales_rep"].allowed and by_role["sales_rep"].scope == "team"
        assert "read-only" in by_role["sales_rep"].reason
        assert not by_role["support_agent"].allowed
        assert "does not allow edit on contacts" in by_role["support_agent"].reason
        final, field_line = lines[2], lines[3]
        assert final.allowed and final.role == "sales_rep"
        assert field_line.allowed and "read-only" in field_line.reason

        out_of_reach = authz.explain(sam, "contacts", "edit", owner_id=org["sofia"])
        assert not out_of_reach[-1].allowed
        assert "Sofia is in team Support" in out_of_reach[-1].reason


def test_explain_for_a_user_without_roles(app):
    user_id = add_user(app, "nobody@example.com")
    with app.app_context():
        lines = authz.explain(db.session.get(User, user_id), "contacts", "read")
        assert len(lines) == 1 and not lines[0].allowed
        assert "has no role" in lines[0].reason
