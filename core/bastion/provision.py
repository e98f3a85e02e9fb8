"""First-time set-up of a data directory, and the demo organization."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from bastion import audit
from bastion.audit.anchors import CHAIN_KEY, SIGNING_KEY, ensure_audit_keys
from bastion.data.records import RecordService
from bastion.data.setup import sync_definitions
from bastion.db import db
from bastion.default_roles import DEFAULT_ROLE_SLUGS, ensure_default_roles
from bastion.identity import (
    ADMIN_ROLE,
    IdentityError,
    create_user,
    ensure_role,
    find_user_by_email,
)
from bastion.keyfiles import CREDENTIALS_KEY, SESSION_KEY, ensure_secrets_dir, write_secret
from bastion.models import OBJECT_ACTIONS, SCOPES, Role, RoleObjectRule, Team, User
from bastion.passwords import Passwords
from bastion.plugins import state
from bastion.plugins.contributions import DemoContext, DemoUser
from bastion.plugins.registry import CORE
from bastion.runtime import platform
from bastion.schema import upgrade

MARKER = ".initialized"


class ProvisionError(RuntimeError):
    """Set-up was refused; the message says why."""


def is_initialized(data_dir: Path) -> bool:
    return (data_dir / MARKER).exists()


def prepare_data_dir(data_dir: Path, *, force: bool) -> None:
    """Create the folder and its secrets; refuse an initialized one unless forced."""
    if is_initialized(data_dir) and not force:
        raise ProvisionError(
            f"{data_dir} is already initialized. Use --force to wipe and initialize it again."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    if force:
        for stale in ("bastion.db", "bastion.db-wal", "bastion.db-shm", MARKER):
            (data_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(data_dir / "search", ignore_errors=True)
        # A new audit trail starts: the old one's checkpoints and keys would not match it.
        shutil.rmtree(data_dir / "audit", ignore_errors=True)
        # A pre-keyring credentials key would otherwise become data key 1 of the new
        # database's keyring: a fresh installation's version 1 is random.
        for key_file in (CHAIN_KEY, SIGNING_KEY, CREDENTIALS_KEY):
            (data_dir / "secrets" / key_file).unlink(missing_ok=True)
    ensure_secrets_dir(data_dir / "secrets")
    write_secret(data_dir / "secrets", SESSION_KEY, replace=force)
    ensure_audit_keys(data_dir / "secrets")


def reset_database() -> None:
    """With --force on a server database: drop Bastion's tables before creating them anew."""
    from sqlalchemy import inspect

    # Models imported only where used must be known to drop_all below.
    import bastion.keys.models  # noqa: F401

    # Record tables first: they reference users and each other.
    generated = [
        name for name in inspect(db.engine).get_table_names() if name.startswith(("obj_", "m2m_"))
    ]
    with db.engine.begin() as connection:
        quote = connection.dialect.identifier_preparer.quote
        cascade = " CASCADE" if connection.dialect.name == "postgresql" else ""
        for name in sorted(generated, key=lambda n: not n.startswith("m2m_")):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}{cascade}")
    db.metadata.drop_all(db.engine)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


def initialize(
    app: Flask,
    *,
    admin_email: str,
    admin_password: str,
    demo: bool,
    sample_records: bool = False,
) -> list[str]:
    """Schema, plugin rows, first administrator and optionally the demo organization."""
    plat = platform(app)
    with app.app_context():
        upgrade()
        # The master key file (unless the environment or a plugin supplies the key),
        # then the keyring it wraps, before anything is encrypted.
        from bastion.keys.keyring import ensure_keys
        from bastion.keys.master import ensure_key_file

        ensure_key_file(plat.settings, registry=plat.registry)
        ensure_keys()
        sync_definitions(app)
        enabled = state.sync_new_plugins(plat.registry)
        # Every installation starts with the default roles, not only the demo.
        ensure_default_roles()
        admin_role = db.session.scalar(select(Role).where(Role.name == ADMIN_ROLE))
        admin = create_user(
            app.extensions["bastion.passwords"],
            email=admin_email,
            password=admin_password,
            name="Administrator",
            roles=[admin_role],
        )
        db.session.flush()
        audit.record(
            "user.create",
            actor="system",
            object_type="user",
            object_id=admin.id,
            changes={"email": admin.email, "roles": [ADMIN_ROLE], "team": None},
        )
        db.session.commit()
        if demo:
            # sample_records: `bastion init --demo`; tests start from no records.
            load_demo(app, admin_password, sample_records=sample_records)
    (plat.settings.data_dir / MARKER).write_text("initialized\n", encoding="ascii")
    return enabled


# The demo uses the default roles (bastion.default_roles); plugins add their own
# permissions to them through the load_demo_data hook.
DEMO_ROLES = tuple(slug for slug in DEFAULT_ROLE_SLUGS if slug != ADMIN_ROLE)
# Team name -> (parent team, manager's email, members' emails): scopes become visible.
DEMO_TEAMS = {
    "Sales": (None, "maria.manager@example.com", ("maria.manager@example.com",)),
    "Sales North": ("Sales", None, ("sam.sales@example.com",)),
    "Support": (None, None, ("sofia.support@example.com",)),
}
DEMO_USERS = (
    DemoUser("maria.manager@example.com", "Maria Manager", "sales_manager"),
    DemoUser("sam.sales@example.com", "Sam Sales", "sales_rep"),
    DemoUser("sofia.support@example.com", "Sofia Support", "support_agent"),
    DemoUser("mark.marketing@example.com", "Mark Marketing", "marketing"),
    DemoUser("aiko.auditor@example.com", "Aiko Auditor", "auditor"),
)


def load_demo(app: Flask, password: str, *, sample_records: bool = False) -> None:
    """Users in several roles, the core's sample records when asked, then each enabled
    plugin's demo (after the core's records, so a plugin's may refer to them)."""
    passwords = app.extensions["bastion.passwords"]
    # initialize() created the default roles, the demo's among them.
    roles = {r.name: r for r in db.session.scalars(select(Role).where(Role.name.in_(DEMO_ROLES)))}
    created = {}
    for user in DEMO_USERS:
        created[user.email] = create_user(
            passwords,
            email=user.email,
            password=password,
            name=user.name,
            roles=[roles[user.role]],
        )
    db.session.flush()
    _load_demo_teams(created)
    db.session.commit()
    if sample_records:
        from bastion.demo_records import load_demo_records

        load_demo_records()

    def grant(role: str, *permissions: str) -> None:
        if role not in roles:
            raise KeyError(f"The demo organization has no role {role!r}.")
        ensure_role(role, roles[role].label, permissions)

    demo = DemoContext(
        roles=DEMO_ROLES,
        users=DEMO_USERS,
        grant=grant,
        sample_records=sample_records,
        _add_team=_demo_add_team,
        _add_user=lambda email, name, role, *, team=None: _demo_add_user(
            passwords, password, email, name, role, team=team
        ),
        _allow=_demo_allow,
    )
    _load_plugin_demos(app, demo)
    db.session.commit()


def _load_plugin_demos(app: Flask, demo: DemoContext) -> None:
    """Each enabled plugin's demo in a transaction of its own.

    A plugin whose demo fails halfway has all of its demo undone (its record writes are
    savepoints inside the block, so nothing was committed yet) and the failure recorded
    against it; the other plugins' demos still load. Only the plugins are called here:
    the core implements no load_demo_data.
    """
    plat = platform(app)
    registry = plat.registry
    caller = registry.pm.hook.load_demo_data
    # pluggy's call order, as Platform.hook would call them.
    names = dict.fromkeys(impl.plugin_name for impl in reversed(caller.get_hookimpls()))
    enabled = plat.enabled_plugins()
    service = RecordService(None, system=True)
    for name in names:
        if name == CORE or name not in enabled:
            continue
        users = demo.users
        try:
            with service.atomic():
                registry.call(
                    "load_demo_data", frozenset({name}), raise_from=name, app=app, demo=demo
                )
        except Exception:  # recorded against the plugin by registry.call
            demo.users = users  # the users it added were rolled back with the rest


def _load_demo_teams(users: dict[str, User]) -> None:
    teams: dict[str, Team] = {}
    for name, (parent, manager, members) in DEMO_TEAMS.items():
        team = Team(name=name, parent=teams.get(parent) if parent else None)
        team.manager_id = users[manager].id if manager else None
        db.session.add(team)
        db.session.flush()
        teams[name] = team
        for email in members:
            users[email].team_id = team.id


def _team_named(name: str) -> Team:
    team = db.session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise ValueError(f"The demo organization has no team named {name!r}.")
    return team


def _demo_add_team(
    name: str, *, parent: str | None = None, manager_email: str | None = None
) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("A demo team needs a name.")
    name = name.strip()
    if db.session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise ValueError(f"The demo organization already has a team named {name!r}.")
    team = Team(name=name, parent_id=_team_named(parent).id if parent else None)
    if manager_email:
        manager = find_user_by_email(manager_email)
        if manager is None:
            raise ValueError(f"The demo organization has no user {manager_email!r}.")
        team.manager_id = manager.id
    db.session.add(team)
    db.session.flush()


def _demo_role(role: str) -> Role:
    """One of the demo's roles: a plugin's demo never makes administrators."""
    role_row = db.session.scalar(select(Role).where(Role.name == role))
    if role not in DEMO_ROLES or role_row is None:
        raise ValueError(
            f"The demo organization has no role {role!r}; use one of {', '.join(DEMO_ROLES)}."
        )
    return role_row


def _demo_add_user(
    passwords: Passwords,
    password: str,
    email: str,
    name: str,
    role: str,
    *,
    team: str | None = None,
) -> str:
    role_row = _demo_role(role)
    team_id = _team_named(team).id if team else None
    try:
        user = create_user(passwords, email=email, password=password, name=name, roles=[role_row])
    except IdentityError as exc:  # taken or malformed email
        raise ValueError(str(exc)) from None
    user.team_id = team_id
    db.session.flush()
    return user.email


def _demo_allow(role: str, object_name: str, actions: tuple[str, ...], scope: str) -> None:
    unknown = sorted(set(actions) - set(OBJECT_ACTIONS))
    if unknown:
        raise ValueError(
            f"Unknown object actions {', '.join(unknown)}; use {', '.join(OBJECT_ACTIONS)}."
        )
    if scope not in SCOPES:
        raise ValueError(f"Unknown record scope {scope!r}; use {', '.join(SCOPES)}.")
    if not isinstance(object_name, str) or not object_name or object_name == "*":
        # "*" would be a rule on every object, the core's and other plugins' included.
        raise ValueError("allow() needs the name of one object.")
    role_row = _demo_role(role)
    rule = next((r for r in role_row.object_rules if r.object_name == object_name), None)
    if rule is None:
        rule = RoleObjectRule(object_name=object_name)
        role_row.object_rules.append(rule)
    for action in OBJECT_ACTIONS:
        setattr(rule, f"can_{action}", action in actions)
    rule.scope = scope
    db.session.flush()
