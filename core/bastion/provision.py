"""First-time set-up of a data directory, and the demo organization."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from bastion import audit
from bastion.audit.anchors import CHAIN_KEY, SIGNING_KEY, ensure_audit_keys
from bastion.data.setup import sync_definitions
from bastion.db import db
from bastion.default_roles import DEFAULT_ROLE_SLUGS, ensure_default_roles
from bastion.identity import ADMIN_ROLE, create_user, ensure_role
from bastion.keyfiles import CREDENTIALS_KEY, SESSION_KEY, ensure_secrets_dir, write_secret
from bastion.models import Role, Team, User
from bastion.plugins import state
from bastion.plugins.contributions import DemoContext, DemoUser
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
            load_demo(app, admin_password)
            if sample_records:  # `bastion init --demo`; tests start from no records
                from bastion.demo_records import load_demo_records

                load_demo_records()
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


def load_demo(app: Flask, password: str) -> None:
    """Users in several roles, then each enabled plugin's demo records."""
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

    def grant(role: str, *permissions: str) -> None:
        if role not in roles:
            raise KeyError(f"The demo organization has no role {role!r}.")
        ensure_role(role, roles[role].label, permissions)

    demo = DemoContext(roles=DEMO_ROLES, users=DEMO_USERS, grant=grant)
    plat = platform(app)
    plat.hook("load_demo_data", app=app, demo=demo)
    db.session.commit()


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
