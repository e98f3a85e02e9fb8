"""The one authorization service: may this user do this action on this object, record, field?

Everything that touches business records asks here (the record service of the data model
first of all); nothing else decides. Rules are data (``Role.object_rules`` and
``Role.field_rules``) that administrators edit in the permission matrix:

* **Object permission.** For each of the user's roles the rule for the object applies,
  else the role's ``"*"`` rule (every object without a rule of its own), else nothing.
  Across roles the most permissive wins: an action is allowed when any role allows it,
  with the widest scope among the roles that allow it. Deny by default: no rule, no
  access. The administrator role is no exception: it reaches records through its own
  ``"*"`` rule, which stays editable data.
* **Record scope.** ``own`` reaches records the user owns; ``team`` those owned by the
  members of the user's team and of the teams they manage (a user without a team gets
  ``own``); ``team_tree`` adds every sub-team below those teams; ``all`` every record.
  The scopes nest, so the widest one among the allowing roles decides.
* **Field-level security.** A role may mark a field ``hidden`` or ``read_only``; across
  the roles that can read the object the most permissive access wins.
* **Narrowing.** Disabled users get nothing; objects of a disabled plugin grant nothing;
  a request authenticated by an API token is limited to the token's object permissions
  (``flask.g.api_token_scopes``, a frozenset of ``"object:action"`` strings).

Every answer is a :class:`Decision` with a sentence an administrator understands, and
:func:`explain` lists the contribution of each role for the "why can X see Y" page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import g, has_app_context, has_request_context
from sqlalchemy import select
from sqlalchemy.orm import lazyload

from bastion.access import token_scopes_for
from bastion.db import db
from bastion.models import OBJECT_ACTIONS, SCOPES, Role, RoleObjectRule, Team, User

#: The rule of a role that covers every object without a rule of its own.
EVERY_OBJECT = "*"
#: Field access levels, least permissive first.
FIELD_ACCESS = ("hidden", "read", "edit")
SCOPE_LABELS = {
    "own": "own",
    "team": "team",
    "team_tree": "team and sub-teams",
    "all": "all",
}
_CACHE_KEY = "_bastion_authz_cache"


@dataclass(frozen=True)
class Decision:
    """An answer and its reason, in a sentence an administrator understands."""

    allowed: bool
    reason: str
    #: The slug of the role that decided, when one did.
    role: str | None = None
    #: The record scope that applies (own, team, team_tree, all), when access is allowed.
    scope: str | None = None


class AuthorizationError(ValueError):
    """A question the service cannot answer (an unknown action); a programming error."""


# --------------------------------------------------------------------------- helpers


def _cache() -> dict[str, Any] | None:
    """Per-request memo; None outside a request so CLI jobs never see stale answers."""
    if not has_request_context():
        return None
    cache = g.get(_CACHE_KEY)
    if cache is None:
        cache = {}
        setattr(g, _CACHE_KEY, cache)
    return cache


def forget_cached() -> None:
    """Drop this request's memo, after changing teams or roles mid-request."""
    if has_request_context():
        g.pop(_CACHE_KEY, None)


def _check_action(action: str) -> None:
    if action not in OBJECT_ACTIONS:
        raise AuthorizationError(
            f"Unknown action {action!r}; use one of {', '.join(OBJECT_ACTIONS)}."
        )


def _name(user: Any) -> str:
    return getattr(user, "display_name", None) or f"user {getattr(user, 'id', '?')}"


def _object_label(object_name: str) -> str:
    return "every object" if object_name == EVERY_OBJECT else object_name


def rule_for(role: Role, object_name: str) -> RoleObjectRule | None:
    """The role's rule for the object, else its "*" rule, else None."""
    fallback = None
    for rule in role.object_rules:
        if rule.object_name == object_name:
            return rule
        if rule.object_name == EVERY_OBJECT:
            fallback = rule
    return fallback


def _scope_rank(scope: str) -> int:
    return SCOPES.index(scope) if scope in SCOPES else 0  # an unknown scope is the narrowest


def _signed_in(user: Any) -> bool:
    return user is not None and bool(getattr(user, "is_authenticated", False))


def _plugin_problem(object_name: str) -> str | None:
    """Objects declared by a disabled plugin grant nothing; say so."""
    if object_name == EVERY_OBJECT or not has_app_context():
        return None
    from bastion.runtime import platform

    plat = platform()
    declared = plat.objects.get(object_name)
    if declared is None or plat.is_active(declared[0]):
        return None
    return f"The plugin {declared[0]} that defines {object_name} is disabled, so nobody may use it."


def _precheck(user: Any, object_name: str, action: str) -> Decision | None:
    """Refusals that no role can override, or None."""
    if user is not None and getattr(user, "active", True) is False:
        return Decision(False, f"{_name(user)} is disabled, so every access is refused.")
    if not _signed_in(user):
        return Decision(False, "Nobody is signed in.")
    scopes = token_scopes_for(user)
    if scopes is not None and f"{object_name}:{action}" not in scopes:
        return Decision(False, f"The API token does not carry {object_name}:{action}.")
    problem = _plugin_problem(object_name)
    if problem is not None:
        return Decision(False, problem)
    return None


def _granting(user: Any, object_name: str, action: str) -> list[tuple[Role, RoleObjectRule]]:
    """The user's roles allowing the action on the object, widest scope first."""
    found = []
    for role in user.roles:
        rule = rule_for(role, object_name)
        if rule is not None and rule.allows(action):
            found.append((role, rule))
    found.sort(key=lambda pair: (-_scope_rank(pair[1].scope), pair[0].name))
    return found


def _rule_origin(rule: RoleObjectRule, object_name: str) -> str:
    if rule.object_name == EVERY_OBJECT and object_name != EVERY_OBJECT:
        return " (its rule for every other object)"
    return ""


# --------------------------------------------------------------------------- objects


def object_decision(user: Any, object_name: str, action: str) -> Decision:
    """May the user do ``action`` on records of ``object_name`` at all (some record)?

    Asked many times per request (every field, every related list), so the answer is
    kept for the rest of the request, like the team graph.
    """
    _check_action(action)
    user_id = getattr(user, "id", None)
    cache = _cache() if user_id is not None else None
    # The token's scopes are part of the question: they narrow the answer.
    key = ("decision", user_id, object_name, action, token_scopes_for(user))
    if cache is not None and key in cache:
        return cache[key]
    decision = _object_decision(user, object_name, action)
    if cache is not None:
        cache[key] = decision
    return decision


def _object_decision(user: Any, object_name: str, action: str) -> Decision:
    refused = _precheck(user, object_name, action)
    if refused is not None:
        return refused
    granting = _granting(user, object_name, action)
    if not granting:
        if not user.roles:
            return Decision(False, f"{_name(user)} has no role, so nothing is allowed.")
        labels = ", ".join(role.label for role in user.roles)
        return Decision(
            False, f"None of {_name(user)}'s roles ({labels}) allows {action} on {object_name}."
        )
    role, rule = granting[0]
    return Decision(
        True,
        f"Role {role.label} allows {action} on {object_name} with scope "
        f"{SCOPE_LABELS.get(rule.scope, rule.scope)}{_rule_origin(rule, object_name)}.",
        role=role.name,
        scope=rule.scope,
    )


# --------------------------------------------------------------------------- teams


def _team_graph() -> tuple[dict[int, list[int]], dict[int, Team]]:
    """Children of each team and the teams by id; computed once per request."""
    cache = _cache()
    if cache is not None and "teams" in cache:
        return cache["teams"]
    # Only ids, names, parents and managers' ids are needed: not the managers themselves
    # (and with them their roles and rules), which the relationships load eagerly.
    plain = select(Team).options(lazyload(Team.manager), lazyload(Team.parent))
    teams = {team.id: team for team in db.session.scalars(plain)}
    children: dict[int, list[int]] = {}
    for team in teams.values():
        if team.parent_id is not None:
            children.setdefault(team.parent_id, []).append(team.id)
    result = (children, teams)
    if cache is not None:
        cache["teams"] = result
    return result


def user_team_ids(user: Any, *, with_sub_teams: bool = False) -> frozenset[int]:
    """The user's own team and the teams they manage, and optionally every sub-team."""
    children, teams = _team_graph()
    start = {tid for tid, team in teams.items() if team.manager_id == user.id}
    if user.team_id is not None:
        start.add(user.team_id)
    if not with_sub_teams:
        return frozenset(start)
    seen: set[int] = set()
    pending = list(start)
    while pending:  # the visited set guards against a cycle of parents
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        pending.extend(children.get(current, ()))
    return frozenset(seen)


def _members(team_ids: frozenset[int]) -> frozenset[int]:
    """Users in the teams, and the teams' managers (a manager belongs to their team)."""
    if not team_ids:
        return frozenset()
    ids = set(db.session.scalars(select(User.id).where(User.team_id.in_(team_ids))))
    _, teams = _team_graph()
    ids.update(teams[t].manager_id for t in team_ids if t in teams and teams[t].manager_id)
    return frozenset(ids)


def owner_ids_for_scope(user: Any, scope: str) -> frozenset[int] | None:
    """Owners whose records ``scope`` reaches for this user; None means every record."""
    if scope == "all":
        return None
    cache = _cache()
    key = f"owners:{user.id}:{scope}"
    if cache is not None and key in cache:
        return cache[key]
    if scope in {"team", "team_tree"}:
        team_ids = user_team_ids(user, with_sub_teams=scope == "team_tree")
        result = _members(team_ids) | {user.id} if team_ids else frozenset({user.id})
    else:  # "own", and any unknown scope is treated as the narrowest
        result = frozenset({user.id})
    if cache is not None:
        cache[key] = result
    return result


def reachable_owner_ids(user: Any, object_name: str, action: str = "read") -> frozenset[int] | None:
    """Owner ids whose records the user may act on; None = every record, empty = none.

    The record service filters queries with ``owner_id IN (...)`` unless this is None.
    """
    decision = object_decision(user, object_name, action)
    if not decision.allowed:
        return frozenset()
    return owner_ids_for_scope(user, decision.scope or "own")


# --------------------------------------------------------------------------- records


def _owner_phrase(owner: User | None, owner_id: int | None) -> str:
    if owner is None:
        return "the record has no owner" if owner_id is None else "the record's owner is unknown"
    team = f"in team {owner.team.name}" if owner.team is not None else "in no team"
    return f"the record's owner {_name(owner)} is {team}"


def _reach_phrase(user: Any, scope: str) -> str:
    if scope == "own":
        return f"only {_name(user)}'s own records"
    if scope == "all":
        return "every record"
    team_ids = user_team_ids(user, with_sub_teams=scope == "team_tree")
    if not team_ids:
        return f"only {_name(user)}'s own records, as {_name(user)} is in no team"
    _, teams = _team_graph()
    names = ", ".join(sorted(teams[t].name for t in team_ids if t in teams))
    return f"records of {_name(user)} and of the members of {names}"


def _scope_reaches(user: Any, scope: str, owner_id: int | None) -> bool:
    owners = owner_ids_for_scope(user, scope)
    return owners is None or (owner_id is not None and owner_id in owners)


def record_decision(user: Any, object_name: str, action: str, owner_id: int | None) -> Decision:
    """May the user do ``action`` on one record of ``object_name`` owned by ``owner_id``?"""
    decision = object_decision(user, object_name, action)
    if not decision.allowed:
        return decision
    owner = db.session.get(User, owner_id) if owner_id is not None else None
    granting = _granting(user, object_name, action)
    for role, rule in granting:
        if _scope_reaches(user, rule.scope, owner_id):
            if rule.scope == "all":
                why = "every record"
            elif owner_id == user.id:
                why = f"the record belongs to {_name(user)}"
            else:
                why = _owner_phrase(owner, owner_id)
            return Decision(
                True,
                f"Role {role.label} allows {action} on {object_name} with scope "
                f"{SCOPE_LABELS.get(rule.scope, rule.scope)}; {why}.",
                role=role.name,
                scope=rule.scope,
            )
    role, rule = granting[0]
    return Decision(
        False,
        f"Role {role.label} allows {action} on {object_name} only with scope "
        f"{SCOPE_LABELS.get(rule.scope, rule.scope)}, which reaches "
        f"{_reach_phrase(user, rule.scope)}; {_owner_phrase(owner, owner_id)}.",
        role=role.name,
        scope=rule.scope,
    )


# --------------------------------------------------------------------------- fields


def _role_field_access(role: Role, rule: RoleObjectRule, object_name: str, field: str) -> str:
    for item in role.field_rules:
        if item.object_name == object_name and item.field_name == field:
            if item.access == "hidden":
                return "hidden"
            if item.access == "read_only":
                return "read"
    return "edit" if (rule.can_edit or rule.can_create) else "read"


def field_access(user: Any, object_name: str, field_name: str) -> str:
    """ "edit", "read" or "hidden" for one field, the most permissive among the roles.

    Only roles that can read the object count. "edit" means the field may be written
    where the user may create or edit the record; the record service still checks the
    object action itself.
    """
    if not object_decision(user, object_name, "read").allowed:
        return "hidden"
    best = "hidden"
    for role, rule in _granting(user, object_name, "read"):
        access = _role_field_access(role, rule, object_name, field_name)
        if FIELD_ACCESS.index(access) > FIELD_ACCESS.index(best):
            best = access
    scopes = token_scopes_for(user)
    if (
        best == "edit"
        and scopes is not None
        and not {f"{object_name}:edit", f"{object_name}:create"} & scopes
    ):
        best = "read"  # a token that may not write makes every field read-only
    return best


def readable_fields(user: Any, object_name: str, names: Iterable[str]) -> list[str]:
    """The given field names the user may see, in their order."""
    return [n for n in names if field_access(user, object_name, n) != "hidden"]


def editable_fields(user: Any, object_name: str, names: Iterable[str]) -> list[str]:
    """The given field names the user may write, in their order."""
    return [n for n in names if field_access(user, object_name, n) == "edit"]


# --------------------------------------------------------------------------- explain


def _role_line(
    user: Any,
    role: Role,
    object_name: str,
    action: str,
    owner_id: int | None,
    owner: User | None,
    field_name: str | None,
) -> Decision:
    rule = rule_for(role, object_name)
    if rule is None:
        return Decision(
            False,
            f"Role {role.label} has no rule for {object_name} and none for every other "
            "object, so it grants nothing here.",
            role=role.name,
        )
    origin = _rule_origin(rule, object_name)
    scope = SCOPE_LABELS.get(rule.scope, rule.scope)
    if not rule.allows(action):
        granted = [a for a in OBJECT_ACTIONS if rule.allows(a)]
        has = f"only {', '.join(granted)}" if granted else "nothing"
        return Decision(
            False,
            f"Role {role.label} does not allow {action} on {object_name}{origin}; it allows {has}.",
            role=role.name,
        )
    reason = f"Role {role.label} allows {action} on {object_name} with scope {scope}{origin}"
    allowed = True
    if owner_id is not None:
        if _scope_reaches(user, rule.scope, owner_id):
            reason += f"; it reaches this record: {_owner_phrase(owner, owner_id)}"
        else:
            allowed = False
            reason += (
                f", which reaches {_reach_phrase(user, rule.scope)}; "
                f"{_owner_phrase(owner, owner_id)}, so not this record"
            )
    if field_name:
        access = _role_field_access(role, rule, object_name, field_name)
        words = {"hidden": "hidden", "read": "read-only", "edit": "editable"}[access]
        reason += f"; field {field_name} is {words} for this role"
    return Decision(allowed, reason + ".", role=role.name, scope=rule.scope)


def explain(
    user: Any,
    object_name: str,
    action: str,
    *,
    owner_id: int | None = None,
    field_name: str | None = None,
) -> list[Decision]:
    """One line per role of the user, then the final decision (and the field's access)."""
    _check_action(action)
    lines: list[Decision] = []
    refused = _precheck(user, object_name, action)
    if isinstance(user, User):
        owner = db.session.get(User, owner_id) if owner_id is not None else None
        for role in sorted(user.roles, key=lambda r: r.name):
            lines.append(_role_line(user, role, object_name, action, owner_id, owner, field_name))
    if refused is not None:
        lines.append(refused)
        return lines
    final = (
        record_decision(user, object_name, action, owner_id)
        if owner_id is not None
        else object_decision(user, object_name, action)
    )
    lines.append(final)
    if field_name:
        access = field_access(user, object_name, field_name)
        words = {"hidden": "hidden from", "read": "read-only for", "edit": "editable by"}[access]
        lines.append(
            Decision(
                access != "hidden",
                f"Field {field_name} of {object_name} is {words} {_name(user)} "
                "(the most permissive access among the roles that can read the object).",
            )
        )
    return lines


def users_with_role(role_id: int) -> list[int]:
    """Ids of the members of a role (for rotating their sessions after a change)."""
    from bastion.models import user_roles

    return list(
        db.session.scalars(select(user_roles.c.user_id).where(user_roles.c.role_id == role_id))
    )


# --------------------------------------------------------------------------- delegation


def held_capabilities(user: Any) -> set[str]:
    """The capabilities the user's roles carry, as stored ("*" included)."""
    held: set[str] = set()
    for role in getattr(user, "roles", ()):
        held |= role.permission_names
    return held


def unrestricted(user: Any) -> bool:
    """Holders of the "*" capability (administrators) may grant and act on anything."""
    return "*" in held_capabilities(user)


def beyond_actor(actor: Any, role: Role) -> list[str]:
    """What ``role`` grants that ``actor`` does not hold, one phrase each; empty: within.

    An actor may only grant, or act on, what they hold themselves: every capability of
    the role, and for every object every action the role allows with a record scope no
    wider than the actor's own (:func:`object_decision`). The objects checked are the
    role's rules, the actor's rules and "*" (every other object), so that a role's "*"
    rule is also compared with the actor's narrower rule for a named object.
    """
    if unrestricted(actor):
        return []
    problems: list[str] = []
    missing = role.permission_names - held_capabilities(actor)
    if missing:
        problems.append(f"the capabilities {', '.join(sorted(missing))}")
    names = {EVERY_OBJECT} | {r.object_name for r in role.object_rules}
    for actor_role in getattr(actor, "roles", ()):
        names |= {r.object_name for r in actor_role.object_rules}
    for name in sorted(names):
        rule = rule_for(role, name)
        if rule is None:
            continue
        wider = []
        for action in OBJECT_ACTIONS:
            if not rule.allows(action):
                continue
            own = object_decision(actor, name, action)
            if not own.allowed or _scope_rank(own.scope or "") < _scope_rank(rule.scope):
                wider.append(action)
        if wider:
            problems.append(
                f"{', '.join(wider)} on {_object_label(name)} with scope "
                f"{SCOPE_LABELS.get(rule.scope, rule.scope)}"
            )
    return problems


__all__ = [
    "EVERY_OBJECT",
    "Decision",
    "beyond_actor",
    "editable_fields",
    "explain",
    "field_access",
    "forget_cached",
    "held_capabilities",
    "object_decision",
    "owner_ids_for_scope",
    "reachable_owner_ids",
    "readable_fields",
    "record_decision",
    "rule_for",
    "unrestricted",
    "user_team_ids",
    "users_with_role",
]
