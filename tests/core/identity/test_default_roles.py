"""Default roles: every install gets them, upgrades add missing ones, edits are kept."""

from __future__ import annotations

from sqlalchemy import select

from bastion.db import db
from bastion.default_roles import DEFAULT_ROLE_SLUGS, DEFAULT_ROLES, ensure_default_roles
from bastion.models import Role, RoleObjectRule, Team, User
from tests.conftest import ADMIN_EMAIL
from tests.core.conftest import run_init


def _role(slug: str) -> Role | None:
    return db.session.scalar(select(Role).where(Role.name == slug))


def _rules(slug: str) -> dict[str, tuple[tuple[str, ...], str]]:
    role = _role(slug)
    return {
        r.object_name: (
            tuple(
                a for a in ("read", "create", "edit", "delete", "import", "export") if r.allows(a)
            ),
            r.scope,
        )
        for r in role.object_rules
    }


def test_every_install_gets_the_default_roles(app):
    with app.app_context():
        slugs = set(db.session.scalars(select(Role.name)))
        assert set(DEFAULT_ROLE_SLUGS) <= slugs
        assert set(DEFAULT_ROLE_SLUGS) == {
            "administrator",
            "sales_manager",
            "sales_rep",
            "marketing",
            "support_agent",
            "auditor",
        }
        for default in DEFAULT_ROLES:
            role = _role(default.slug)
            assert role.label == default.label
            assert role.require_mfa is False
            assert role.permission_names == set(default.capabilities)
        assert _rules("administrator") == {
            "*": (("read", "create", "edit", "delete", "import", "export"), "all")
        }
        assert _rules("auditor") == {"*": (("read",), "all")}
        assert _role("auditor").permission_names == {"audit.view"}
        for obj in ("accounts", "contacts", "leads", "opportunities"):
            assert _rules("sales_rep")[obj] == (("read", "create", "edit"), "team")
            assert _rules("sales_manager")[obj][1] == "team_tree"
        admin = db.session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        assert [r.name for r in admin.roles] == ["administrator"]


def test_ensure_default_roles_is_idempotent(app):
    with app.app_context():
        before = {slug: _rules(slug) for slug in DEFAULT_ROLE_SLUGS}
        ensure_default_roles()
        ensure_default_roles()
        db.session.commit()
        assert {slug: _rules(slug) for slug in DEFAULT_ROLE_SLUGS} == before
        assert db.session.scalar(select(db.func.count()).select_from(Role)) == len(DEFAULT_ROLES)


def test_upgrade_adds_missing_roles_and_keeps_edits(app, cli):
    with app.app_context():
        rep = _role("sales_rep")
        contacts = next(r for r in rep.object_rules if r.object_name == "contacts")
        contacts.scope, contacts.can_edit = "own", False
        rep.object_rules.remove(next(r for r in rep.object_rules if r.object_name == "leads"))
        rep.label = "Account executive"
        auditor = _role("auditor")
        auditor.permissions.clear()
        db.session.delete(_role("marketing"))
        db.session.commit()

    result = cli("upgrade")
    assert result.exit_code == 0, result.output

    with app.app_context():
        db.session.expire_all()
        rules = _rules("sales_rep")
        assert rules["contacts"] == (("read", "create"), "own")
        assert "leads" not in rules  # a removed rule is not silently given back
        assert _role("sales_rep").label == "Account executive"
        assert _role("auditor").permission_names == set()
        marketing = _rules("marketing")
        assert marketing["campaigns"][1] == "all" and marketing["accounts"] == (("read",), "all")


def test_upgrade_gives_rules_to_roles_from_before_rules_existed(app, cli):
    with app.app_context():
        for role in db.session.scalars(select(Role)):
            role.object_rules.clear()
        db.session.commit()
        assert db.session.scalar(select(db.func.count()).select_from(RoleObjectRule)) == 0

    assert cli("upgrade").exit_code == 0

    with app.app_context():
        db.session.expire_all()
        assert _rules("administrator")["*"][1] == "all"
        assert _rules("support_agent")["cases"] == (
            ("read", "create", "edit", "delete", "import", "export"),
            "team",
        )


def test_the_demo_has_teams_that_show_the_scopes(cli, settings, app_for):
    result = run_init(cli, "--demo")
    assert result.exit_code == 0, result.output
    app = app_for(settings)
    with app.app_context():
        teams = {t.name: t for t in db.session.scalars(select(Team))}
        assert set(teams) >= {"Sales", "Sales North", "Support"}
        assert teams["Sales North"].parent_id == teams["Sales"].id
        users = {u.email: u for u in db.session.scalars(select(User))}
        assert teams["Sales"].manager_id == users["maria.manager@example.com"].id
        assert users["sam.sales@example.com"].team_id == teams["Sales North"].id
        assert users["sofia.support@example.com"].team_id == teams["Support"].id
        # Plugins still add their permissions to the demo roles.
        assert "status.view" in _role("sales_manager").permission_names
        assert _rules("sales_manager")["accounts"][1] == "team_tree"

        from bastion import authz

        maria = users["maria.manager@example.com"]
        sam = users["sam.sales@example.com"]
        assert authz.record_decision(maria, "contacts", "read", sam.id).allowed
        assert not authz.record_decision(
            maria, "contacts", "read", users["sofia.support@example.com"].id
        ).allowed
