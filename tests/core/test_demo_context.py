"""DemoContext as plugins use it in load_demo_data: teams, users, object rules."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.data.records import RecordService
from bastion.db import db
from bastion.models import Role, Team, User
from bastion.provision import load_demo
from bastion.runtime import platform
from tests.conftest import ADMIN_PASSWORD, sign_in

MARIA = "maria.manager@example.com"


def run_demo(app, monkeypatch, plugin_demo, *, sample_records=False, others=None):
    """load_demo with ``plugin_demo(demo)`` standing in for the sales plugin's hook and
    ``others`` (plugin name -> demo function) for other plugins'; the rest do nothing."""
    registry = platform(app).registry
    original = registry.call
    demos = {"sales": plugin_demo, **(others or {})}

    def call(name, enabled, **kwargs):
        if name == "load_demo_data":
            # As registry.call(raise_from=plugin) does: the plugin's exception goes on.
            for plugin in sorted(enabled or ()):
                if plugin in demos:
                    demos[plugin](kwargs["demo"])
            return []
        return original(name, enabled, **kwargs)

    monkeypatch.setattr(registry, "call", call)
    with app.app_context():
        load_demo(app, ADMIN_PASSWORD, sample_records=sample_records)


def test_add_team_add_user_and_allow(app, monkeypatch):
    made = {}

    def plugin_demo(demo):
        assert demo.sample_records is False
        demo.add_team("Sales South", parent="Sales", manager_email=MARIA)
        made["sven"] = demo.add_user(
            "Sven.South@example.com", "Sven South", "sales_rep", team="Sales South"
        )
        demo.add_user("nina.north@example.com", "Nina North", "sales_rep", team="Sales North")
        demo.allow("sales_rep", "leads", ("read",), "own")
        demo.allow("sales_rep", "products", ["read", "export"], "all")
        demo.allow("support_agent", "cases", "read", "team_tree")
        made["users"] = demo.users
        made["rep"] = demo.user_for_role("sales_rep")

    run_demo(app, monkeypatch, plugin_demo)
    assert made["sven"].email == "sven.south@example.com" and made["sven"].role == "sales_rep"
    assert made["sven"] in made["users"] and len(made["users"]) == 7
    assert made["rep"].email == "sam.sales@example.com"  # the core's users come first
    with app.app_context():
        south = db.session.scalar(select(Team).where(Team.name == "Sales South"))
        sales = db.session.scalar(select(Team).where(Team.name == "Sales"))
        maria = db.session.scalar(select(User).where(User.email == MARIA))
        assert south.parent_id == sales.id and south.manager_id == maria.id
        sven = db.session.scalar(select(User).where(User.email == "sven.south@example.com"))
        assert sven.team_id == south.id and [r.name for r in sven.roles] == ["sales_rep"]
        rules = {
            r.object_name: r
            for r in db.session.scalar(select(Role).where(Role.name == "sales_rep")).object_rules
        }
        leads = rules["leads"]  # replaced: exactly the actions given
        assert (leads.can_read, leads.can_create, leads.can_edit, leads.scope) == (
            True,
            False,
            False,
            "own",
        )
        products = rules["products"]
        assert (products.can_read, products.can_export, products.can_edit, products.scope) == (
            True,
            True,
            False,
            "all",
        )
        agent = db.session.scalar(select(Role).where(Role.name == "support_agent"))
        cases = next(r for r in agent.object_rules if r.object_name == "cases")
        assert cases.can_read and not cases.can_create and cases.scope == "team_tree"
    # The new user signs in with the demo password.
    client = app.test_client()
    assert sign_in(client, "sven.south@example.com", ADMIN_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda d: d.add_team("Sales"), "already has a team"),
        (lambda d: d.add_team("X", parent="Nowhere"), "no team named"),
        (lambda d: d.add_team("X", manager_email="nobody@example.com"), "no user"),
        (lambda d: d.add_user(MARIA, "Maria Again", "sales_rep"), "already exists"),
        (lambda d: d.add_user("x@example.com", "X", "astronaut"), "no role"),
        (lambda d: d.add_user("x@example.com", "X", "sales_rep", team="Nowhere"), "no team"),
        (lambda d: d.add_user("not an email", "X", "sales_rep"), "not a valid email"),
        (lambda d: d.allow("sales_rep", "leads", ("fly",), "team"), "Unknown object actions"),
        (lambda d: d.allow("sales_rep", "leads", ("read",), "galaxy"), "Unknown record scope"),
        (lambda d: d.allow("astronaut", "leads", ("read",), "all"), "no role"),
        # A plugin's demo never makes administrators or rules on every object.
        (lambda d: d.add_user("x@example.com", "X", "administrator"), "no role"),
        (lambda d: d.allow("administrator", "leads", ("read",), "all"), "no role"),
        (lambda d: d.allow("sales_rep", "*", ("read",), "all"), "one object"),
    ],
)
def test_mistakes_are_clear_value_errors(app, monkeypatch, action, message):
    def plugin_demo(demo):
        before = demo.users
        with pytest.raises(ValueError, match=message):
            action(demo)
        assert demo.users == before

    run_demo(app, monkeypatch, plugin_demo)


def test_sample_records_exist_before_the_plugins_demo(app, monkeypatch):
    seen = {}

    def plugin_demo(demo):
        seen["sample_records"] = demo.sample_records
        seen["accounts"] = RecordService(None, system=True).count("accounts")

    run_demo(app, monkeypatch, plugin_demo, sample_records=True)
    assert seen == {"sample_records": True, "accounts": 5}


def test_a_plugin_demo_that_fails_halfway_is_undone_whole(app, monkeypatch):
    seen = {}

    def failing(demo):
        demo.add_team("Half Team", parent="Sales")
        demo.add_user("half@example.com", "Half Way", "sales_rep", team="Half Team")
        demo.allow("sales_rep", "leads", ("read",), "all")
        RecordService(None, system=True).create("accounts", {"name": "Half-made Ltd"})
        raise RuntimeError("the demo breaks halfway")

    def status(demo):
        # Another plugin's demo still runs, and sees neither the half-made user...
        seen["users"] = [u.email for u in demo.users]
        demo.add_team("Whole Team")

    run_demo(app, monkeypatch, failing, others={"status": status})
    assert "half@example.com" not in seen["users"]
    with app.app_context():
        names = set(db.session.scalars(select(Team.name)))
        assert "Half Team" not in names and "Whole Team" in names
        assert db.session.scalar(select(User).where(User.email == "half@example.com")) is None
        assert RecordService(None, system=True).count("accounts") == 0
        rep = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        assert not any(r.object_name == "leads" and r.scope == "all" for r in rep.object_rules)
