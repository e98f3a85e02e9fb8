"""Account administration: users, their roles and team, teams, and the MFA requirement.

One service for the admin pages and the operators' CLI, so both apply the same checks.
Every function validates its input, writes, records an audit entry and commits; bad
input raises :class:`AccountError` with a sentence saying what was wrong, before anything
is written.

Locales: Bastion accepts the locales it formats dates and numbers for, listed in
:data:`SUPPORTED_LOCALES`; anything else is refused rather than stored unused. Time zones
are the IANA names that :func:`zoneinfo.available_timezones` knows.
"""

from __future__ import annotations

import time
import unicodedata
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache, wraps
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from bastion import audit, authz, identity, mfa_policy
from bastion.db import db
from bastion.identity import ADMIN_ROLE, IdentityError, find_user_by_email
from bastion.models import ApiToken, Role, Team, User, UserSession, utcnow
from bastion.passwords import PasswordPolicyError
from bastion.sessions import end_all_sessions, request_rotation
from bastion.tokens import is_expired

#: Locale code -> the language's own name, for the profile forms.
SUPPORTED_LOCALES: dict[str, str] = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "es": "Español",
    "it": "Italiano",
    "nl": "Nederlands",
    "pt": "Português",
    "pl": "Polski",
}
#: The password hash of an invited user who has not chosen a password: no hash matches it.
MAX_NAME_LENGTH = 200
MAX_TEAM_NAME_LENGTH = 100


class AccountError(ValueError):
    """An account change was refused; the message says why and what to do."""


# Validation ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The IANA time zone names, sorted (read once: it scans the zone database)."""
    return tuple(sorted(zoneinfo.available_timezones()))


@lru_cache(maxsize=1)
def _time_zone_set() -> frozenset[str]:
    return frozenset(time_zones())


def _time_zone(value: str) -> str:
    value = (value or "").strip()
    if value not in _time_zone_set():
        raise AccountError(
            f"{value!r} is not a time zone Bastion knows. Choose one such as "
            "Europe/Berlin or America/New_York."
        )
    return value


def _locale(value: str) -> str:
    value = (value or "").strip()
    if value not in SUPPORTED_LOCALES:
        raise AccountError(
            f"{value!r} is not a supported language. Choose one of: {', '.join(SUPPORTED_LOCALES)}."
        )
    return value


def _clean_text(value: str | None, what: str, max_length: int, *, required: bool) -> str:
    value = (value or "").strip()
    if required and not value:
        raise AccountError(f"The {what} must not be empty.")
    if len(value) > max_length:
        raise AccountError(f"The {what} must be at most {max_length} characters long.")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise AccountError(f"The {what} must not contain control characters.")
    return value


def find_user(email: str) -> User:
    """The user with this email, or AccountError."""
    user = find_user_by_email(email or "")
    if user is None:
        raise AccountError(f"There is no user with the email {email}.")
    return user


def find_role(slug: str) -> Role:
    role = db.session.scalar(select(Role).where(Role.name == (slug or "").strip()))
    if role is None:
        raise AccountError(
            f"There is no role named {slug!r}. `bastion roles list` shows the roles."
        )
    return role


def _roles(slugs: Iterable[str]) -> list[Role]:
    seen: dict[str, Role] = {}
    for slug in slugs:
        slug = (slug or "").strip()
        if slug and slug not in seen:
            seen[slug] = find_role(slug)
    return list(seen.values())


def find_team(name: str) -> Team:
    wanted = (name or "").strip()
    team = db.session.scalar(select(Team).where(func.lower(Team.name) == wanted.lower()))
    if team is None:
        raise AccountError(f"There is no team named {wanted!r}.")
    return team


def _optional_team(name: str | None) -> Team | None:
    return find_team(name) if name and name.strip() else None


def _is_actor(user: User, actor: str) -> bool:
    return actor == f"user:{user.id}"


def _check_grantable(roles: Iterable[Role], granted_by: User | None) -> None:
    """An administrator of users may hand out only what they hold themselves.

    That is every capability of the role and, for each object, every action the role
    allows with a record scope no wider than their own (:func:`authz.beyond_actor`).
    Without this, someone trusted to manage users but not roles could give themselves or
    an accomplice the administrator role, or a default role such as sales_manager that
    has no capabilities but reads every record. ``granted_by`` None is the operator at
    the command line, who already holds the server.
    """
    if granted_by is None:
        return
    for role in roles:
        problems = authz.beyond_actor(granted_by, role)
        if problems:
            raise AccountError(
                f"You cannot assign or remove the role {role.label} ({role.name}): it grants "
                f"permissions you do not hold yourself ({'; '.join(problems)}). Ask an "
                "administrator to make this change."
            )


def _check_own_reach(granted_by: User | None, team: Team | None, what: str) -> None:
    """Refuse a team change that would widen the acting user's own record scope.

    Team and team-tree scopes reach the records of the members of the actor's team and of
    the teams they manage (and, for team_tree, their sub-teams). Only holders of "*" (and
    the operator at the command line, ``granted_by`` None) may change that reach.
    """
    if granted_by is None or team is None or authz.unrestricted(granted_by):
        return
    if team.id in authz.user_team_ids(granted_by, with_sub_teams=True):
        raise AccountError(
            f"You cannot {what}: {team.name} is a team you belong to or manage (or one of "
            "its sub-teams), so it would widen the records you can reach yourself. "
            "Ask an administrator to make this change."
        )


def _check_not_self_manager(granted_by: User | None, manager: User | None) -> None:
    """Managing a team widens one's own team scope: only "*" holders may do it to themselves."""
    if granted_by is None or manager is None or manager.id != granted_by.id:
        return
    if not authz.unrestricted(granted_by):
        raise AccountError(
            "You cannot make yourself the manager of a team: it would widen the records you "
            "can reach. Ask an administrator to make this change."
        )


def _active_admin_ids() -> set[int]:
    rows = db.session.scalars(
        select(User.id).join(User.roles).where(Role.name == ADMIN_ROLE, User.active.is_(True))
    )
    return set(rows)


def _is_last_active_admin(user: User) -> bool:
    return _active_admin_ids() == {user.id}


def _commit() -> None:
    db.session.commit()


def _rollback_on_error(func_: Any) -> Any:
    """Refusals leave nothing half-written in the session."""

    @wraps(func_)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func_(*args, **kwargs)
        except (AccountError, PasswordPolicyError, IdentityError):
            db.session.rollback()
            raise

    return wrapper


# Users --------------------------------------------------------------------------------


@_rollback_on_error
def create_user(
    *,
    email: str,
    name: str,
    password: str | None,
    role_slugs: list[str],
    team_name: str | None,
    time_zone: str = "UTC",
    locale: str = "en",
    actor: str,
    granted_by: User | None = None,
    must_change_password: bool = False,
) -> User:
    """Create a user, or invite one when ``password`` is None.

    An invited user has an unusable password and receives (by email when mail is
    configured) a single-use link to choose one; the link is also left on the returned
    user as ``invitation_link`` (never stored) so an administrator can hand it over when
    mail is off. ``must_change_password`` makes a user whose password an administrator
    typed choose their own at the first sign-in. ``granted_by`` is the administrator
    acting in the web UI: they may hand out only roles whose permissions they hold.
    """
    name = _clean_text(name, "name", MAX_NAME_LENGTH, required=False)
    time_zone = _time_zone(time_zone)
    locale = _locale(locale)
    roles = _roles(role_slugs)
    _check_grantable(roles, granted_by)
    team = _optional_team(team_name)
    try:
        user = identity.create_user(
            current_app.extensions["bastion.passwords"],
            email=email,
            password=password,
            name=name,
            roles=roles,
        )
    except (IdentityError, PasswordPolicyError) as exc:
        raise AccountError(str(exc)) from None
    user.time_zone, user.locale, user.team = time_zone, locale, team
    user.must_change_password = must_change_password and password is not None
    email = user.email
    db.session.flush()
    audit.record(
        "user.invite" if password is None else "user.create",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={
            "email": email,
            "roles": sorted(r.name for r in roles),
            "team": team.name if team else None,
        },
    )
    _commit()
    user.invitation_link = None  # type: ignore[attr-defined]
    if password is None:
        from bastion.password_tokens import send_invitation

        user.invitation_link = send_invitation(user)  # type: ignore[attr-defined]
    return user


@_rollback_on_error
def update_profile(user: User, *, name: str, time_zone: str, locale: str, actor: str) -> None:
    """Name, time zone and language of a user (their own profile or an administrator's edit)."""
    after = {
        "name": _clean_text(name, "name", MAX_NAME_LENGTH, required=False),
        "time_zone": _time_zone(time_zone),
        "locale": _locale(locale),
    }
    changes = {
        key: {"before": getattr(user, key), "after": value}
        for key, value in after.items()
        if getattr(user, key) != value
    }
    if not changes:
        return
    for key, value in after.items():
        setattr(user, key, value)
    audit.record("user.update", actor=actor, object_type="user", object_id=user.id, changes=changes)
    _commit()


@_rollback_on_error
def set_active(user: User, active: bool, *, actor: str) -> bool:
    """Enable or disable a user; returns whether anything changed.

    Disabling ends every session of theirs: their next request is signed out, and they
    cannot sign in again until enabled.
    """
    if user.active == active:
        return False
    if not active:
        if _is_actor(user, actor):
            raise AccountError("You cannot disable your own account.")
        if _is_last_active_admin(user):
            raise AccountError(
                f"{user.email} is the last active administrator and cannot be disabled. "
                "Give another user the administrator role first."
            )
    user.active = active
    audit.record(
        "user.enable" if active else "user.disable",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"active": {"before": not active, "after": active}},
    )
    _commit()
    if not active:
        end_all_sessions(user.id, "revoked")
    return True


@_rollback_on_error
def set_roles(
    user: User, role_slugs: Iterable[str], *, actor: str, granted_by: User | None = None
) -> bool:
    """Replace a user's roles; their sessions are rotated. Returns whether anything changed."""
    roles = _roles(role_slugs)
    before = sorted(r.name for r in user.roles)
    after = sorted(r.name for r in roles)
    if before == after:
        return False
    changed = [r for r in roles if r.name not in before] + [
        r for r in user.roles if r.name not in after
    ]
    _check_grantable(changed, granted_by)
    if ADMIN_ROLE in before and ADMIN_ROLE not in after and _is_last_active_admin(user):
        raise AccountError(
            f"{user.email} is the last active administrator; the administrator role cannot "
            "be removed. Give another user the administrator role first."
        )
    user.roles[:] = roles
    audit.record(
        "user.roles",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"roles": {"before": before, "after": after}},
    )
    request_rotation(user.id)
    _commit()
    return True


def _check_team_move(user: User, team: Team | None, granted_by: User | None) -> None:
    if granted_by is None or team is None or authz.unrestricted(granted_by):
        return
    if user.id == granted_by.id:
        raise AccountError(
            "You cannot put yourself into a team: it would widen the records you can reach. "
            "Ask an administrator to make this change."
        )
    _check_own_reach(granted_by, team, f"move {user.email} into {team.name}")


def check_team_change(user: User, team_name: str | None, *, granted_by: User | None) -> None:
    """Raise AccountError if :func:`set_team` would refuse; writes nothing.

    The user page saves roles and team together: this refuses the team before the roles
    are written.
    """
    team = _optional_team(team_name)
    if user.team_id != (team.id if team else None):
        _check_team_move(user, team, granted_by)


@_rollback_on_error
def set_team(
    user: User, team_name: str | None, *, actor: str, granted_by: User | None = None
) -> bool:
    """Move a user to a team (None: no team); their record scope changes, so sessions rotate.

    ``granted_by`` is the administrator acting in the web UI: unless they hold "*", they
    may not move themselves into a team, nor anyone into a team within their own reach.
    """
    team = _optional_team(team_name)
    before = user.team.name if user.team else None
    after = team.name if team else None
    if user.team_id == (team.id if team else None):
        return False
    _check_team_move(user, team, granted_by)
    user.team = team
    audit.record(
        "user.team",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"team": {"before": before, "after": after}},
    )
    request_rotation(user.id)
    _commit()
    return True


def sign_out_everywhere(user: User, *, actor: str) -> int:
    """End every session of a user; returns how many were open."""
    ended = end_all_sessions(user.id, "revoked")
    audit.record(
        "user.sessions_revoked",
        actor=actor,
        object_type="user",
        object_id=user.id,
        changes={"sessions": ended},
    )
    return ended


def open_session_count(user: User) -> int:
    """Sessions not ended and within the idle and absolute timeouts."""
    settings = current_app.extensions["bastion"].settings
    now = int(time.time())
    return (
        db.session.scalar(
            select(func.count())
            .select_from(UserSession)
            .where(
                UserSession.user_id == user.id,
                UserSession.ended_at.is_(None),
                UserSession.seen_at >= now - settings.session_idle_minutes * 60,
                UserSession.started_at >= now - settings.session_absolute_hours * 3600,
            )
        )
        or 0
    )


def live_token_count(user: User) -> int:
    """API tokens neither revoked nor expired."""
    tokens = db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    )
    now = utcnow()
    return sum(1 for t in tokens if not is_expired(t, now))


# Teams --------------------------------------------------------------------------------


def _team_name(name: str, *, current: Team | None = None) -> str:
    name = _clean_text(name, "team name", MAX_TEAM_NAME_LENGTH, required=True)
    clash = db.session.scalar(select(Team).where(func.lower(Team.name) == name.lower()))
    if clash is not None and clash is not current:
        raise AccountError(f"A team named {clash.name} already exists. Choose another name.")
    return name


def _manager(email: str | None) -> User | None:
    if not email or not email.strip():
        return None
    return find_user(email.strip())


def _check_no_cycle(team: Team, parent: Team | None) -> None:
    """A team may not be its own ancestor: walking up from the new parent never meets it."""
    seen: set[int] = set()
    node = parent
    while node is not None:
        if node.id == team.id:
            raise AccountError(
                f"{parent.name} cannot be the parent of {team.name}: it is {team.name} itself "
                "or one of its sub-teams. Choose a team outside it."
            )
        if node.id in seen:  # an existing loop in the data: stop rather than spin
            break
        seen.add(node.id)
        node = node.parent


@_rollback_on_error
def create_team(
    name: str,
    *,
    manager_email: str | None = None,
    parent_name: str | None = None,
    actor: str,
    granted_by: User | None = None,
) -> Team:
    """A new team; ``granted_by`` (the web UI's actor) may not widen their own reach."""
    name = _team_name(name)
    manager = _manager(manager_email)
    parent = _optional_team(parent_name)
    _check_not_self_manager(granted_by, manager)
    _check_own_reach(granted_by, parent, f"create a team under {parent.name if parent else ''}")
    team = Team(name=name, manager=manager, parent=parent)
    db.session.add(team)
    db.session.flush()
    audit.record(
        "team.create",
        actor=actor,
        object_type="team",
        object_id=team.id,
        changes={
            "name": name,
            "manager": manager.email if manager else None,
            "parent": parent.name if parent else None,
        },
    )
    _commit()
    return team


@_rollback_on_error
def update_team(
    team: Team,
    *,
    name: str,
    manager_email: str | None,
    parent_name: str | None,
    actor: str,
    granted_by: User | None = None,
) -> bool:
    """Rename a team, change its manager or parent; returns whether anything changed.

    ``granted_by`` (the web UI's actor) may not make themselves the manager, give a team
    within their own reach a new manager, or move a team under one within their reach.
    """
    name = _team_name(name, current=team)
    manager = _manager(manager_email)
    parent = _optional_team(parent_name)
    _check_no_cycle(team, parent)
    if manager is not team.manager:
        _check_not_self_manager(granted_by, manager)
        _check_own_reach(granted_by, team, f"change the manager of {team.name}")
    if parent is not team.parent:
        _check_own_reach(
            granted_by, parent, f"move {team.name} under {parent.name if parent else ''}"
        )
    before = {
        "name": team.name,
        "manager": team.manager.email if team.manager else None,
        "parent": team.parent.name if team.parent else None,
    }
    after = {
        "name": name,
        "manager": manager.email if manager else None,
        "parent": parent.name if parent else None,
    }
    changes = {k: {"before": before[k], "after": after[k]} for k in before if before[k] != after[k]}
    if not changes:
        return False
    team.name, team.manager, team.parent = name, manager, parent
    audit.record("team.update", actor=actor, object_type="team", object_id=team.id, changes=changes)
    _commit()
    return True


def team_member_count(team: Team) -> int:
    return (
        db.session.scalar(select(func.count()).select_from(User).where(User.team_id == team.id))
        or 0
    )


def team_member_counts() -> dict[int, int]:
    """Team id -> number of members, in one query (for lists of teams)."""
    rows = db.session.execute(
        select(User.team_id, func.count()).where(User.team_id.is_not(None)).group_by(User.team_id)
    )
    return {team_id: count for team_id, count in rows}


def sub_teams(team: Team) -> list[Team]:
    return list(db.session.scalars(select(Team).where(Team.parent_id == team.id)))


@_rollback_on_error
def delete_team(team: Team, *, actor: str) -> None:
    members = team_member_count(team)
    if members:
        raise AccountError(
            f"{team.name} still has {members} member{'s' if members != 1 else ''}. "
            "Move them to another team first."
        )
    children = sub_teams(team)
    if children:
        raise AccountError(
            f"{team.name} still has sub-teams ({', '.join(t.name for t in children)}). "
            "Move or delete them first."
        )
    team_id, name = team.id, team.name
    db.session.delete(team)
    audit.record(
        "team.delete", actor=actor, object_type="team", object_id=team_id, changes={"name": name}
    )
    _commit()


# The MFA requirement ------------------------------------------------------------------


@_rollback_on_error
def set_mfa_required_for_all(required: bool, *, actor: str) -> bool:
    """Require MFA of everyone (or stop requiring it); returns whether anything changed."""
    changed = _require_mfa_for_all(required, actor)
    _commit()
    return changed


@_rollback_on_error
def set_role_mfa(role_slug: str, required: bool, *, actor: str) -> bool:
    """Require MFA of a role's members (or stop); returns whether anything changed."""
    changed = _require_mfa_for_role(find_role(role_slug), required, actor)
    _commit()
    return changed


def set_mfa_requirement(*, for_all: bool, role_slugs: set[str], actor: str) -> bool:
    """The whole requirement at once (the Security page), saved in one transaction."""
    changed = _require_mfa_for_all(for_all, actor)
    for role in db.session.scalars(select(Role).order_by(Role.name)):
        changed |= _require_mfa_for_role(role, role.name in role_slugs, actor)
    _commit()
    return changed


def _require_mfa_for_all(required: bool, actor: str) -> bool:
    before = mfa_policy.required_for_all()
    if before == required:
        return False
    mfa_policy.set_required_for_all(required, actor=actor)
    audit.record(
        "security.mfa_requirement",
        actor=actor,
        object_type="setting",
        object_id=mfa_policy.MFA_REQUIRED_SETTING,
        changes={"required_for_all": {"before": before, "after": required}},
    )
    return True


def _require_mfa_for_role(role: Role, required: bool, actor: str) -> bool:
    if role.require_mfa == required:
        return False
    role.require_mfa = required
    audit.record(
        "security.mfa_requirement",
        actor=actor,
        object_type="role",
        object_id=role.name,
        changes={"require_mfa": {"before": not required, "after": required}},
    )
    return True
