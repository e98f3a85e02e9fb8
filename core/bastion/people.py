"""Read-only facts about users and teams, for plugins (through ``bastion.api``).

Plugins need to know who is in which team and who manages whom (round-robin
assignment, approvals by a manager, forecasts by team) without touching the identity
models. Everything here returns small frozen value objects, never ORM instances, so a
plugin cannot change a user by accident and nothing lazy-loads later. Teams are few, so
questions about the team tree read the whole ``teams`` table once (one query) and walk
it in memory; questions about users are one query each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, func, select

from bastion.db import db
from bastion.models import Team, User


@dataclass(frozen=True)
class UserInfo:
    """A user as plugins see them: no password, MFA or session details."""

    id: int
    email: str
    name: str
    team_id: int | None
    team_name: str | None
    active: bool


@dataclass(frozen=True)
class TeamInfo:
    """A team: its parent team and its manager (a user id), each None when unset."""

    id: int
    name: str
    parent_id: int | None
    manager_id: int | None


def _user_rows() -> Select:
    # Columns only: the ORM's joined relationships (team, manager, roles) stay unloaded.
    return select(User.id, User.email, User.name, User.team_id, Team.name, User.active).outerjoin(
        Team, Team.id == User.team_id
    )


def _user_info(row: Row[Any]) -> UserInfo:
    uid, email, name, team_id, team_name, active = row
    return UserInfo(uid, email, name or "", team_id, team_name, bool(active))


def _teams() -> dict[int, TeamInfo]:
    rows = db.session.execute(
        select(Team.id, Team.name, Team.parent_id, Team.manager_id).order_by(Team.id)
    )
    return {row[0]: TeamInfo(*row) for row in rows}


def _with_sub_teams(start: Iterable[int], teams: dict[int, TeamInfo]) -> set[int]:
    children: dict[int, list[int]] = {}
    for team in teams.values():
        if team.parent_id is not None:
            children.setdefault(team.parent_id, []).append(team.id)
    seen: set[int] = set()
    pending = list(start)
    while pending:  # the visited set guards against a cycle of parents
        current = pending.pop()
        if current in seen or current not in teams:
            continue
        seen.add(current)
        pending.extend(children.get(current, ()))
    return seen


def user_info(user_id: int) -> UserInfo | None:
    """The user with this id, or None when there is none."""
    row = db.session.execute(_user_rows().where(User.id == user_id)).first()
    return _user_info(row) if row is not None else None


def users_info(user_ids: Iterable[int]) -> dict[int, UserInfo]:
    """The users with these ids, by id, in one query; unknown ids are left out."""
    wanted = {uid for uid in user_ids if isinstance(uid, int)}
    if not wanted:
        return {}
    rows = db.session.execute(_user_rows().where(User.id.in_(sorted(wanted))))
    return {info.id: info for info in map(_user_info, rows)}


def find_user_info(email: str) -> UserInfo | None:
    """The user with this email address (case-insensitive), or None."""
    wanted = (email or "").strip().lower()
    if not wanted:
        return None
    row = db.session.execute(_user_rows().where(func.lower(User.email) == wanted)).first()
    return _user_info(row) if row is not None else None


def list_teams() -> list[TeamInfo]:
    """Every team, ordered by id."""
    return list(_teams().values())


def team_by_name(name: str) -> TeamInfo | None:
    """The team with exactly this name, or None."""
    row = db.session.execute(
        select(Team.id, Team.name, Team.parent_id, Team.manager_id).where(Team.name == name)
    ).first()
    return TeamInfo(*row) if row is not None else None


def team_members(
    team_id: int, *, include_sub_teams: bool = False, active_only: bool = True
) -> list[UserInfo]:
    """Users whose team is this one (and its sub-teams when asked), ordered by id.

    Membership is the user's team: a manager who is not a member of the team they
    manage is not listed (round-robin assignment must not hand leads to a manager
    of another team)."""
    team_ids = _with_sub_teams([team_id], _teams()) if include_sub_teams else {team_id}
    query = _user_rows().where(User.team_id.in_(team_ids)).order_by(User.id)
    if active_only:
        query = query.where(User.active.is_(True))
    return [_user_info(row) for row in db.session.execute(query)]


def manager_of(user_id: int) -> UserInfo | None:
    """Who approves for this user: their team's manager or, when that team has none, the
    user is its manager, or the manager is deactivated, the nearest ancestor team's
    active manager; None at the top.

    A manager outside any team answers to the manager above the top-most team they
    manage (fewest teams above it; the lowest id among equals)."""
    own_team = db.session.scalar(select(User.team_id).where(User.id == user_id))
    teams = _teams()
    if own_team is None:
        managed = [t.id for t in teams.values() if t.manager_id == user_id]
        own_team = min(managed, key=lambda tid: (_depth(tid, teams), tid)) if managed else None
    seen: set[int] = set()
    current = own_team
    while current is not None and current in teams and current not in seen:
        seen.add(current)
        team = teams[current]
        if team.manager_id is not None and team.manager_id != user_id:
            manager = user_info(team.manager_id)
            if manager is not None and manager.active:
                return manager
        current = team.parent_id
    return None


def _depth(team_id: int, teams: dict[int, TeamInfo]) -> int:
    """How many teams lie above this one (a cycle of parents counts once)."""
    seen: set[int] = set()
    current = teams[team_id].parent_id
    while current is not None and current in teams and current not in seen:
        seen.add(current)
        current = teams[current].parent_id
    return len(seen)


def teams_managed_by(user_id: int) -> list[TeamInfo]:
    """The teams this user manages, with all their sub-teams, ordered by id."""
    teams = _teams()
    ids = _with_sub_teams([t.id for t in teams.values() if t.manager_id == user_id], teams)
    return [team for tid, team in teams.items() if tid in ids]
