"""Who owns what: owner ids to names and teams, through the core's people facade.

One request asks about the same owners many times (every aggregate row names an
owner), so one ``Directory`` per request fetches them together (``prefetch``) and keeps
the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bastion.api import list_teams, team_members, teams_managed_by, user_info, users_info

NO_TEAM = "No team"


@dataclass(frozen=True)
class Group:
    """A row heading of the forecast: an owner or a team (``id`` None: no team)."""

    id: int | None
    name: str


class Directory:
    """Cached owner -> name / team lookups for one request."""

    def __init__(self) -> None:
        self._users: dict[int, Any] = {}
        self._teams: dict[int, Any] | None = None

    def teams(self) -> dict[int, Any]:
        """Every team by id (one query, kept)."""
        if self._teams is None:
            self._teams = {team.id: team for team in list_teams()}
        return self._teams

    def prefetch(self, user_ids: Iterable[int | None]) -> None:
        """Fetch the people not known yet together, not one query each."""
        wanted = sorted({uid for uid in user_ids if uid is not None} - set(self._users))
        if not wanted:
            return
        found = users_info(wanted)  # one query; unknown ids are left out
        for uid in wanted:
            self._users[uid] = found.get(uid)

    def remember(self, infos: Iterable[Any]) -> None:
        """People already fetched elsewhere (team members): no second query."""
        for info in infos:
            self._users[info.id] = info

    def user(self, user_id: int) -> Any:
        if user_id not in self._users:
            self._users[user_id] = user_info(user_id)
        return self._users[user_id]

    def owner(self, user_id: int | None) -> Group:
        if user_id is None:
            return Group(None, "No owner")
        info = self.user(user_id)
        if info is None:
            return Group(user_id, f"User {user_id}")
        return Group(user_id, info.name or info.email)

    def team(self, user_id: int | None) -> Group:
        info = self.user(user_id) if user_id is not None else None
        if info is None or info.team_id is None:
            return Group(None, NO_TEAM)
        return Group(info.team_id, info.team_name or self.team_name(info.team_id))

    def team_name(self, team_id: int) -> str:
        team = self.teams().get(team_id)
        return team.name if team is not None else f"Team {team_id}"

    def group(self, by: str, user_id: int | None) -> Group:
        return self.team(user_id) if by == "team" else self.owner(user_id)


def managed_member_ids(user_id: int, directory: Directory | None = None) -> set[int]:
    """Active members of the teams this user manages, sub-teams included (empty: not a
    manager). One query per managed team that is not below another managed team."""
    managed = teams_managed_by(user_id)
    ids = {team.id for team in managed}
    members: set[int] = set()
    for team in managed:
        if team.parent_id in ids:
            continue  # already among its parent's sub-teams
        infos = team_members(team.id, include_sub_teams=True)
        if directory is not None:
            directory.remember(infos)
        members.update(info.id for info in infos)
    return members
