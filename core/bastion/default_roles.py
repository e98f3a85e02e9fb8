"""The roles every installation starts with, and their default permissions.

Every install gets them (``bastion init``), and ``bastion upgrade`` adds those that are
missing. They are ordinary data afterwards: administrators edit them in the permission
matrix (Administration > Roles).

=============  ============  ==========================================  =============  =========
Role (slug)    Capabilities  Objects                                     Actions        Scope
=============  ============  ==========================================  =============  =========
administrator  ``*`` (all)   ``*`` (every object)                        all six        all
sales_manager  (none)        accounts, contacts, leads, opportunities,   all six        team_tree
                             activities
sales_rep      (none)        accounts, contacts, leads, opportunities,   read, create,  team
                             activities                                  edit
marketing      (none)        campaigns                                   all six        all
                             leads                                       read, create,  all
                                                                         edit, import,
                                                                         export
                             accounts, contacts                          read           all
support_agent  (none)        cases                                       all six        team
                             accounts, contacts                          read           all
                             activities                                  read, create,  own
                                                                         edit
auditor        audit.view    ``*`` (every object)                        read           all
=============  ============  ==========================================  =============  =========

"All six" is read, create, edit, delete, import and export. A rep or agent with no team
reaches only their own records (scope ``team`` without a team is ``own``). The auditor
reads everything, changes nothing and reads the audit trail. No default role requires
MFA; administrators switch that on per role. Plugins add their own capabilities to these
roles in the demo (``load_demo_data``) and administrators grant them in the matrix.

Nothing an administrator edited is overwritten: :func:`ensure_default_roles` creates a
missing role with its rules, and gives default rules only to a role that has no object
rules at all (one created before rules existed). It never re-adds a single rule or
capability an administrator removed: that would silently widen access on an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from bastion.db import db
from bastion.models import OBJECT_ACTIONS, Role, RoleObjectRule, RolePermission

READ_ONLY = ("read",)
READ_WRITE = ("read", "create", "edit")
SALES_OBJECTS = ("accounts", "contacts", "leads", "opportunities", "activities")


@dataclass(frozen=True)
class DefaultRule:
    object_name: str
    actions: tuple[str, ...]
    scope: str


@dataclass(frozen=True)
class DefaultRole:
    slug: str
    label: str
    description: str
    capabilities: tuple[str, ...] = ()
    rules: tuple[DefaultRule, ...] = ()


def _rules(objects: tuple[str, ...], actions: tuple[str, ...], scope: str) -> tuple:
    return tuple(DefaultRule(name, actions, scope) for name in objects)


DEFAULT_ROLES: tuple[DefaultRole, ...] = (
    DefaultRole(
        "administrator",
        "Administrator",
        "Every capability, and every action on every record.",
        capabilities=("*",),
        rules=(DefaultRule("*", OBJECT_ACTIONS, "all"),),
    ),
    DefaultRole(
        "sales_manager",
        "Sales manager",
        "Leads a sales team: everything on sales records of their team and its sub-teams.",
        rules=_rules(SALES_OBJECTS, OBJECT_ACTIONS, "team_tree"),
    ),
    DefaultRole(
        "sales_rep",
        "Sales representative",
        "Works accounts, leads and opportunities of their team (their own without a team).",
        rules=_rules(SALES_OBJECTS, READ_WRITE, "team"),
    ),
    DefaultRole(
        "marketing",
        "Marketing",
        "Runs campaigns and works leads; reads accounts and contacts.",
        rules=(
            DefaultRule("campaigns", OBJECT_ACTIONS, "all"),
            DefaultRule("leads", ("read", "create", "edit", "import", "export"), "all"),
            *_rules(("accounts", "contacts"), READ_ONLY, "all"),
        ),
    ),
    DefaultRole(
        "support_agent",
        "Support agent",
        "Answers customer cases of their team; reads accounts and contacts.",
        rules=(
            DefaultRule("cases", OBJECT_ACTIONS, "team"),
            *_rules(("accounts", "contacts"), READ_ONLY, "all"),
            DefaultRule("activities", READ_WRITE, "own"),
        ),
    ),
    DefaultRole(
        "auditor",
        "Auditor",
        "Reads everything, changes nothing, reads the audit trail.",
        capabilities=("audit.view",),
        rules=(DefaultRule("*", READ_ONLY, "all"),),
    ),
)
DEFAULT_ROLE_SLUGS = tuple(role.slug for role in DEFAULT_ROLES)


def _object_rule(rule: DefaultRule) -> RoleObjectRule:
    flags = {f"can_{action}": action in rule.actions for action in OBJECT_ACTIONS}
    return RoleObjectRule(object_name=rule.object_name, scope=rule.scope, **flags)


def ensure_default_roles() -> None:
    """Create missing default roles with their rules; never overwrite an administrator's edits.

    Flushes but does not commit: the caller's transaction decides.
    """
    existing = {role.name: role for role in db.session.scalars(select(Role))}
    for default in DEFAULT_ROLES:
        role = existing.get(default.slug)
        if role is None:
            role = Role(
                name=default.slug,
                label=default.label,
                description=default.description,
            )
            role.permissions = [RolePermission(permission=p) for p in default.capabilities]
            db.session.add(role)
        if not role.object_rules:
            role.object_rules = [_object_rule(rule) for rule in default.rules]
    db.session.flush()
