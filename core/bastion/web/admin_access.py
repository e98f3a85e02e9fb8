"""Roles, the permission matrix, and why a user can or cannot reach something.

Saving a role is one transaction: capabilities, object rules (actions and record scope),
field rules and the MFA requirement change together or not at all. It needs a recent
authentication, is audited with a before/after diff, and rotates the sessions of every
member, whose privileges just changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import delete, func, select

from bastion import audit, authz, sessions
from bastion.access import ALL_PERMISSIONS, requires
from bastion.data.catalog import current_catalog
from bastion.db import db
from bastion.default_roles import DEFAULT_ROLE_SLUGS
from bastion.identity import ADMIN_ROLE
from bastion.models import (
    OBJECT_ACTIONS,
    SCOPES,
    Role,
    RoleFieldRule,
    RoleObjectRule,
    RolePermission,
    User,
    user_roles,
)
from bastion.plugins.registry import CORE
from bastion.reauth import recent_auth_required
from bastion.runtime import platform
from bastion.web.params import bounded_int

bp = Blueprint("admin_access", __name__, url_prefix="/admin")

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}\Z")
OBJECT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}\Z")
FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}\Z")
#: The scope select's value for "no rule of its own: the 'every other object' row applies".
INHERIT = ""
NEW_ROW = "__new__"
SCOPE_CHOICES = (
    ("own", "Own records"),
    ("team", "Team"),
    ("team_tree", "Team and sub-teams"),
    ("all", "All records"),
)
FIELD_CHOICES = (("edit", "Editable"), ("read_only", "Read-only"), ("hidden", "Hidden"))
ACTION_LABELS = {
    "read": "Read",
    "create": "Create",
    "edit": "Edit",
    "delete": "Delete",
    "import": "Import",
    "export": "Export",
}


class FormError(ValueError):
    """A submitted role form was refused; nothing was saved."""

    def __init__(self, problems: list[str], submitted: dict[str, Any] | None = None) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems
        self.submitted = submitted


# --------------------------------------------------------------------------- roles list


def _member_counts() -> dict[int, int]:
    rows = db.session.execute(
        select(user_roles.c.role_id, func.count()).group_by(user_roles.c.role_id)
    )
    return {role_id: count for role_id, count in rows}


def _render_roles(error: str | None = None, form: dict[str, str] | None = None, status: int = 200):
    roles = list(db.session.scalars(select(Role).order_by(Role.label)))
    return (
        render_template(
            "admin/roles.html",
            roles=roles,
            counts=_member_counts(),
            error=error,
            form=form or {},
            default_slugs=DEFAULT_ROLE_SLUGS,
        ),
        status,
    )


@bp.get("/roles")
@requires("admin.roles")
def roles():
    return _render_roles()


@bp.post("/roles")
@requires("admin.roles")
@recent_auth_required
def roles_create():
    slug = request.form.get("slug", "").strip()
    label = request.form.get("label", "").strip()
    description = request.form.get("description", "").strip()
    form = {"slug": slug, "label": label, "description": description}
    error = None
    if not SLUG_RE.match(slug):
        error = (
            "The slug must start with a lower-case letter and hold 2 to 64 lower-case "
            "letters, digits or underscores, such as claims_handler."
        )
    elif not label or len(label) > 200:
        error = "Give the role a name of at most 200 characters, such as Claims handler."
    elif len(description) > 2000:
        error = "Keep the description under 2,000 characters."
    elif db.session.scalar(select(Role.id).where(Role.name == slug)) is not None:
        error = f"A role with the slug {slug} already exists; choose another slug."
    if error:
        return _render_roles(error, form, 422)
    role = Role(name=slug, label=label, description=description, require_mfa=False)
    db.session.add(role)
    audit.record(
        "role.create",
        object_type="role",
        object_id=slug,
        changes={"label": {"before": None, "after": label}},
    )
    db.session.commit()
    flash(f"Role {label} created. It grants nothing until you tick permissions below.", "success")
    return redirect(url_for("admin_access.role", slug=slug))


# --------------------------------------------------------------------------- matrix


@dataclass
class MatrixRow:
    name: str
    label: str
    actions: set[str] = field(default_factory=set)
    #: A scope, or INHERIT when the role has no rule of its own for the object.
    scope: str = INHERIT
    plugin: str | None = None
    inactive: bool = False


@dataclass
class FieldRow:
    name: str
    label: str
    access: str = "edit"


def _role_or_404(slug: str) -> Role:
    role = db.session.scalar(select(Role).where(Role.name == slug))
    if role is None:
        abort(404)
    return role


def _object_names(role: Role) -> list[str]:
    """Declared objects, custom objects of the data model, and those the role has rules for."""
    custom = {meta.name for meta in current_catalog().active()}
    names = set(platform().objects) | custom | {r.object_name for r in role.object_rules}
    names.discard(authz.EVERY_OBJECT)
    return sorted(names)


def _matrix_rows(role: Role) -> list[MatrixRow]:
    plat = platform()
    rules = {r.object_name: r for r in role.object_rules}
    rows = []
    for name in [*_object_names(role), authz.EVERY_OBJECT]:
        declared = plat.objects.get(name)
        if name == authz.EVERY_OBJECT:
            label = "Every other object"
        elif declared:
            label = declared[1].label_plural
        else:
            meta = current_catalog().objects.get(name)
            label = meta.label_plural if meta is not None else name
        row = MatrixRow(name=name, label=label)
        if declared:
            row.plugin = declared[0]
            row.inactive = not plat.is_active(declared[0])
        rule = rules.get(name)
        if rule is not None:
            row.actions = {a for a in OBJECT_ACTIONS if rule.allows(a)}
            row.scope = rule.scope
        elif name == authz.EVERY_OBJECT:
            row.scope = "own"
        rows.append(row)
    return rows


def _field_sections(role: Role) -> list[tuple[str, str, list[FieldRow]]]:
    """(object, plural label, field rows) of every object whose fields a role can restrict.

    Read from the live data-model catalog, so fields administrators added and custom
    objects are listed as well as the fields plugins declare; standard fields (id, owner,
    ...) and removed fields are left out. Declared fields the catalog does not hold yet
    (before the data model is synced) are listed from their declaration.
    """
    current = {(r.object_name, r.field_name): r.access for r in role.field_rules}
    catalog = current_catalog()
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for meta in catalog.active():
        fields = [(item.name, item.label) for item in meta.declared_fields.values()]
        found[meta.name] = (meta.label_plural, fields)
    for name, (_owner, definition) in platform().objects.items():
        meta = catalog.objects.get(name)
        if meta is not None and meta.retired:
            continue
        known = meta.all_fields if meta is not None else {}
        label, fields = found.get(name, (definition.label_plural, []))
        # Declared but not yet synced into the catalog (a removed one is in all_fields).
        fields += [(item.name, item.label) for item in definition.fields if item.name not in known]
        found[name] = (label, fields)
    sections = []
    for name, (label, fields) in sorted(found.items()):
        if fields:
            rows = [FieldRow(f, text, current.get((name, f), "edit")) for f, text in fields]
            sections.append((name, label, rows))
    return sections


def _capability_groups(role: Role) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(group title, [(name, label, description)]): the core first, then each plugin."""
    plat = platform()
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for name, (owner, permission) in sorted(plat.permissions.items()):
        if not plat.is_active(owner):
            continue
        groups.setdefault(owner, []).append((name, permission.label, permission.description))
    ordered = []
    for owner in sorted(groups, key=lambda o: (o != CORE, o)):
        if owner == CORE:
            title = "Core"
        else:
            plugin = plat.registry.plugins.get(owner)
            title = f"Plugin: {plugin.label if plugin else owner}"
        ordered.append((title, groups[owner]))
    return ordered


def _render_role(
    role: Role,
    *,
    errors: list[str] | None = None,
    submitted: dict[str, Any] | None = None,
    status: int = 200,
):
    """The matrix; after a refused save it shows what was submitted, not what is stored."""
    rows = _matrix_rows(role)
    sections = _field_sections(role)
    capabilities = role.permission_names
    require_mfa = role.require_mfa
    label, description = role.label, role.description
    new_row = MatrixRow(name=NEW_ROW, label="")
    if submitted is not None:
        capabilities = submitted["capabilities"]
        require_mfa = submitted["require_mfa"]
        label, description = submitted["label"], submitted["description"]
        for row in rows:
            row.actions, row.scope = submitted["rows"].get(row.name, (set(), INHERIT))
        for _name, _label, field_rows in sections:
            for item in field_rows:
                item.access = submitted["fields"].get((_name, item.name), item.access)
        new_row.label = submitted.get("new_object", "")
        new_row.actions, new_row.scope = submitted["rows"].get(NEW_ROW, (set(), INHERIT))
    return (
        render_template(
            "admin/roles_edit.html",
            role=role,
            label=label,
            description=description,
            rows=rows,
            new_row=new_row,
            sections=sections,
            capability_groups=_capability_groups(role),
            capabilities=capabilities,
            require_mfa=require_mfa,
            is_admin_role=role.name == ADMIN_ROLE,
            is_default=role.name in DEFAULT_ROLE_SLUGS,
            members=_members(role),
            actions=OBJECT_ACTIONS,
            action_labels=ACTION_LABELS,
            scope_choices=SCOPE_CHOICES,
            field_choices=FIELD_CHOICES,
            inherit=INHERIT,
            every_object=authz.EVERY_OBJECT,
            errors=errors or [],
        ),
        status,
    )


def _members(role: Role) -> list[User]:
    return list(
        db.session.scalars(
            select(User)
            .join(user_roles, user_roles.c.user_id == User.id)
            .where(user_roles.c.role_id == role.id)
            .order_by(User.name, User.email)
        )
    )


@bp.get("/roles/<slug>")
@requires("admin.roles")
def role(slug: str):
    return _render_role(_role_or_404(slug))


def _parse_row(form: Any, key: str, display: str, *, inheritable: bool) -> tuple[set[str], str]:
    actions = {a for a in OBJECT_ACTIONS if form.get(f"rule:{key}:{a}")}
    scope = form.get(f"scope:{key}", INHERIT if inheritable else "own")
    if scope == INHERIT and inheritable:
        return actions, INHERIT
    if scope not in SCOPES:
        raise FormError([f"Choose one of the listed record scopes for {display}."])
    return actions, scope


def _parse_form(role: Role) -> dict[str, Any]:
    """Read and check the whole matrix; raises FormError and keeps what was submitted."""
    form = request.form
    plat = platform()
    submitted: dict[str, Any] = {
        "label": form.get("label", "").strip(),
        "description": form.get("description", "").strip(),
        "require_mfa": form.get("require_mfa") == "on",
        "capabilities": set(form.getlist("capability")),
        "rows": {},
        "fields": {},
        "new_object": form.get("new_object", "").strip(),
    }
    problems: list[str] = []
    if not submitted["label"] or len(submitted["label"]) > 200:
        problems.append("Give the role a name of at most 200 characters.")
    if len(submitted["description"]) > 2000:
        problems.append("Keep the description under 2,000 characters.")
    offered = plat.active_permissions() | {ALL_PERMISSIONS}
    unknown = submitted["capabilities"] - offered
    if unknown:
        problems.append(
            f"{', '.join(sorted(unknown))} is not a capability of an enabled module; "
            "reload the page and tick only the listed capabilities."
        )
    if role.name == ADMIN_ROLE and ALL_PERMISSIONS not in submitted["capabilities"]:
        problems.append(
            "The administrator role always keeps every capability (*): without it nobody "
            "could manage roles any more. Create another role for narrower rights."
        )
    names = [*_object_names(role), authz.EVERY_OBJECT]
    for name in names:
        display = "every other object" if name == authz.EVERY_OBJECT else name
        try:
            actions, scope = _parse_row(form, name, display, inheritable=name != authz.EVERY_OBJECT)
        except FormError as exc:
            problems.extend(exc.problems)
            continue
        submitted["rows"][name] = (actions, scope)
        if scope == INHERIT and actions:
            problems.append(
                f"Choose a record scope for {display}: ticked actions need one, not "
                "'Same as every other object'."
            )
    new_name = submitted["new_object"]
    try:
        new_actions, new_scope = _parse_row(form, NEW_ROW, "the new object", inheritable=True)
    except FormError as exc:
        problems.extend(exc.problems)
        new_actions, new_scope = set(), INHERIT
    submitted["rows"][NEW_ROW] = (new_actions, new_scope)
    if new_name:
        if not OBJECT_NAME_RE.match(new_name):
            problems.append(
                "An object's API name is lower-case snake_case, such as insurance_claims."
            )
        elif new_name in names:
            problems.append(f"{new_name} already has a row in the matrix; change it there.")
        elif new_scope == INHERIT:
            problems.append(f"Choose a record scope for {new_name}.")
    elif new_actions:
        problems.append("Name the object whose rule you ticked in the last row.")
    problems.extend(_parse_field_rules(form, role, submitted["fields"]))
    if problems:
        raise FormError(problems, submitted)
    return submitted


def _parse_field_rules(form: Any, role: Role, into: dict[tuple[str, str], str]) -> list[str]:
    """Read the field security selects into ``into``; the problems found, if any.

    Only fields the page lists can be given a rule: a name the catalog does not know (or
    a field removed since the page was loaded) is refused rather than stored unseen.
    """
    problems: list[str] = []
    valid_access = {value for value, _ in FIELD_CHOICES}
    listed: set[tuple[str, str]] = set()
    for object_name, _label, field_rows in _field_sections(role):
        for item in field_rows:
            listed.add((object_name, item.name))
            value = form.get(f"field:{object_name}:{item.name}", "edit")
            if value not in valid_access:
                problems.append(f"Choose editable, read-only or hidden for {item.label}.")
                continue
            into[(object_name, item.name)] = value
    unknown = sorted(
        key
        for key in form
        if key.startswith("field:") and tuple(key.split(":", 2)[1:]) not in listed
    )
    if unknown:
        names = ", ".join(key.removeprefix("field:").replace(":", ".")[:100] for key in unknown[:5])
        problems.append(
            f"{names} is not a field of an object listed on this page; reload the page "
            "and set field security only for the listed fields."
        )
    return problems


def snapshot(role: Role) -> dict[str, Any]:
    """A role's settings as plain values, for the audit diff."""
    return {
        "label": role.label,
        "description": role.description,
        "require_mfa": role.require_mfa,
        "capabilities": sorted(role.permission_names),
        **{
            f"object:{r.object_name}": (
                ",".join(a for a in OBJECT_ACTIONS if r.allows(a)) or "nothing"
            )
            + f" scope {r.scope}"
            for r in role.object_rules
            if r.object_name != authz.EVERY_OBJECT or any(r.allows(a) for a in OBJECT_ACTIONS)
        },
        **{f"field:{r.object_name}.{r.field_name}": r.access for r in role.field_rules},
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"before": before.get(key), "after": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def _apply(role: Role, submitted: dict[str, Any]) -> None:
    """Write the checked form onto the role, updating rows in place (no key clashes)."""
    plat = platform()
    role.label = submitted["label"]
    role.description = submitted["description"]
    role.require_mfa = submitted["require_mfa"]

    # Capabilities of disabled plugins are not shown, so they are kept as they were.
    offered = plat.active_permissions() | {ALL_PERMISSIONS}
    wanted = {p for p in role.permission_names if p not in offered} | submitted["capabilities"]
    for item in list(role.permissions):
        if item.permission not in wanted:
            role.permissions.remove(item)
    have = role.permission_names
    for name in sorted(wanted - have):
        role.permissions.append(RolePermission(permission=name))

    rows = dict(submitted["rows"])
    new_actions, new_scope = rows.pop(NEW_ROW)
    if submitted["new_object"]:
        rows[submitted["new_object"]] = (new_actions, new_scope)
    existing = {r.object_name: r for r in role.object_rules}
    for name, (actions, scope) in rows.items():
        rule = existing.get(name)
        if scope == INHERIT or (name == authz.EVERY_OBJECT and not actions):
            # No rule of its own: the "every other object" row applies (or, for that
            # row itself, nothing does).
            if rule is not None:
                role.object_rules.remove(rule)
            continue
        if rule is None:
            rule = RoleObjectRule(object_name=name)
            role.object_rules.append(rule)
        for action in OBJECT_ACTIONS:
            setattr(rule, f"can_{action}", action in actions)
        rule.scope = scope
    if not role.object_rules:
        # An empty "every other object" rule marks the role as configured, so that
        # ensure_default_roles (which seeds only roles without any rule) never gives
        # a default role back what an administrator took away.
        role.object_rules.append(RoleObjectRule(object_name=authz.EVERY_OBJECT, scope="own"))

    current = {(r.object_name, r.field_name): r for r in role.field_rules}
    for (object_name, field_name), access in submitted["fields"].items():
        rule = current.get((object_name, field_name))
        if access == "edit":
            if rule is not None:
                role.field_rules.remove(rule)
        elif rule is None:
            role.field_rules.append(
                RoleFieldRule(object_name=object_name, field_name=field_name, access=access)
            )
        else:
            rule.access = access


def _may_not_edit(role: Role) -> str | None:
    """Why the current user may not change ``role`` at all, or None.

    Only holders of "*" may touch the administrator role or a role they are a member of
    (editing one's own role is granting oneself), or a role that already grants more than
    they hold themselves.
    """
    if authz.unrestricted(current_user):
        return None
    if role.name == ADMIN_ROLE:
        return "Only administrators may change the administrator role."
    if any(own.id == role.id for own in current_user.roles):
        return (
            f"You are a member of {role.label}, so you cannot change it yourself: that would "
            "change your own rights. Ask an administrator."
        )
    problems = authz.beyond_actor(current_user, role)
    if problems:
        return (
            f"{role.label} grants permissions you do not hold yourself "
            f"({'; '.join(problems)}), so you cannot change it. Ask an administrator."
        )
    return None


def _rotate_members(role: Role) -> list[int]:
    member_ids = authz.users_with_role(role.id)
    for user_id in member_ids:
        sessions.request_rotation(user_id)
    return member_ids


@bp.post("/roles/<slug>")
@requires("admin.roles")
@recent_auth_required
def role_save(slug: str):
    role = _role_or_404(slug)
    refused = _may_not_edit(role)
    if refused:
        return _render_role(role, errors=[refused], status=403)
    try:
        submitted = _parse_form(role)
    except FormError as exc:
        db.session.rollback()
        return _render_role(role, errors=exc.problems, submitted=exc.submitted, status=422)
    before = snapshot(role)
    _apply(role, submitted)
    db.session.flush()
    problems = authz.beyond_actor(current_user, role)
    if problems:
        # Only what one holds may be granted: "*", other capabilities, wider rules.
        db.session.rollback()
        return _render_role(
            role,
            errors=[
                "You can only grant what you hold yourself; nothing was saved. Untick "
                f"{'; '.join(problems)}, or ask an administrator."
            ],
            submitted=submitted,
            status=403,
        )
    after = snapshot(role)
    changes = diff(before, after)
    if not changes:
        db.session.rollback()
        flash(f"Nothing changed in {role.label}.", "info")
        return redirect(url_for("admin_access.role", slug=slug))
    member_ids = _rotate_members(role)
    audit.record("role.change", object_type="role", object_id=slug, changes=changes)
    db.session.commit()
    authz.forget_cached()
    count = len(member_ids)
    flash(
        f"Saved {role.label}. The change applies to its {count} member"
        f"{'s' if count != 1 else ''} from their next request.",
        "success",
    )
    return redirect(url_for("admin_access.role", slug=slug))


@bp.post("/roles/<slug>/delete")
@requires("admin.roles")
@recent_auth_required
def role_delete(slug: str):
    role = _role_or_404(slug)
    refused = _may_not_edit(role)
    if refused and role.name not in DEFAULT_ROLE_SLUGS:
        return _render_role(role, errors=[refused], status=403)
    if role.name in DEFAULT_ROLE_SLUGS:
        what = (
            "The administrator role cannot be deleted: it is how administrators keep access."
            if role.name == ADMIN_ROLE
            else f"{role.label} is a default role and cannot be deleted; remove its "
            "permissions or its members instead."
        )
        return _render_role(role, errors=[what], status=409)
    before = snapshot(role)
    member_ids = _rotate_members(role)
    db.session.execute(delete(user_roles).where(user_roles.c.role_id == role.id))
    db.session.delete(role)
    audit.record(
        "role.delete",
        object_type="role",
        object_id=slug,
        changes={key: {"before": value, "after": None} for key, value in before.items()},
    )
    db.session.commit()
    authz.forget_cached()
    flash(f"Role {before['label']} deleted; {len(member_ids)} member(s) lost it.", "success")
    return redirect(url_for("admin_access.roles"))


# --------------------------------------------------------------------------- explain


def _explain_objects() -> list[str]:
    names = set(platform().objects) | {meta.name for meta in current_catalog().active()}
    names.update(db.session.scalars(select(RoleObjectRule.object_name).distinct()))
    names.discard(authz.EVERY_OBJECT)
    return sorted(names)


@bp.get("/users/<int:user_id>/access")
@requires("admin.users")
def user_access(user_id: int):
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    objects = _explain_objects()
    users = list(db.session.scalars(select(User).order_by(User.name, User.email)))
    args = request.args
    query = {
        "object": args.get("object", "").strip(),
        "action": args.get("action", "read"),
        "owner": args.get("owner", "").strip(),
        "field": args.get("field", "").strip(),
    }
    error = None
    lines: list[authz.Decision] = []
    if query["object"]:
        owner_id = bounded_int(query["owner"])
        if not OBJECT_NAME_RE.match(query["object"]):
            error = "Choose an object from the list."
        elif query["action"] not in OBJECT_ACTIONS:
            error = "Choose an action from the list."
        elif query["owner"] and (owner_id is None or db.session.get(User, owner_id) is None):
            error = "Choose the record's owner from the list, or leave it empty."
        elif query["field"] and not FIELD_NAME_RE.match(query["field"]):
            error = "A field's API name is lower-case snake_case, such as email."
        else:
            lines = authz.explain(
                user,
                query["object"],
                query["action"],
                owner_id=owner_id,
                field_name=query["field"] or None,
            )
    roles = {r.name: r.label for r in db.session.scalars(select(Role))}
    return render_template(
        "admin/access_explain.html",
        subject=user,
        objects=objects,
        users=users,
        actions=OBJECT_ACTIONS,
        query=query,
        lines=lines,
        role_labels=roles,
        # explain() gives one line per role first, then the result(s).
        role_count=len(user.roles) if lines else 0,
        scope_labels=authz.SCOPE_LABELS,
        error=error,
        viewer=current_user,
    ), (422 if error else 200)
