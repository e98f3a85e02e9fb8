"""Lead assignment: who owns a new lead, by the administrators' assignment rules.

Rules run in ``position`` order (then id) when a lead is created, from every door: the
form, the REST API, CSV imports and other plugins all create through the record
service, whose ``record_changing`` hook calls :func:`assign`. The first rule that
applies decides:

- ``territory``: the lead's ``territory_field`` equals ``territory_value`` (case- and
  spacing-insensitive) -> the active user whose email is ``assignee``;
- ``round_robin``: the next active member of team ``team`` (by name; members ordered
  by user id) after the rule's ``last_assigned``, wrapping around. The rule remembers
  whom it chose (``last_assigned``, read-only) through the system's record service in
  the lead's transaction: a lead whose create fails as a whole (a single create, a
  rolled-back request) gives its turn back with it. A team is referenced by its name:
  renaming the team leaves the rule without a team (it is skipped; the rules page warns).

When rules apply: the core gives a new record to its creator unless an owner is given,
and the form pre-selects the creator, so "owner = creator" cannot tell a default from a
choice. Rules therefore apply to every new lead whose owner is unset or is the person
creating it; a lead created *for someone else* (owner chosen on the form, an ``owner``
in the API body or the CSV file) keeps that owner. A rule that cannot act (unknown
team, no active member, unknown or inactive assignee) is skipped. Whether the assignee
may then see the lead is up to their role (record scope), as for any owner.

Concurrency: two leads created at the same moment read the same ``last_assigned``; the
rule's version makes the second write fail (optimistic concurrency), and the loser
re-reads the rule and takes the following member (a few retries). On SQLite writers are
serialized anyway.

Imports: rows take turns in file order. The core runs the ``record_changing`` hooks of
a row even when it already has errors of its own and the import then skips it, and the
hook cannot tell: such a row **uses up a turn** (rows this area refuses itself, such as
a status of converted, are refused before assignment and do not). On PostgreSQL the
rule's row stays locked by the import's transaction until the import commits, so leads
created meanwhile elsewhere wait for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import g, has_app_context

from bastion.api import (
    Conflict,
    Filter,
    RecordChange,
    RecordService,
    find_user_info,
    get_logger,
    team_by_name,
    team_members,
)

RULES = "lead_assignment_rules"
RETRIES = 5
CACHE_KEY = "_sales_assignment_rules"
#: What taking a turn changes on a rule (the core stamps the last three on every write).
TURN_FIELDS = frozenset({"last_assigned", "version", "updated_at", "updated_by"})
#: Lead field types an assignment rule may compare with its territory value.
TERRITORY_TYPES = frozenset({"text", "picklist", "email", "phone", "url"})
log = get_logger("sales")


def wants_assignment(change: RecordChange) -> bool:
    """Whether the new lead's owner is left to the rules (unset or its creator)."""
    owner = change.values.get("owner")
    actor_id = getattr(change.actor, "id", None)
    return owner is None or (actor_id is not None and owner == actor_id)


def assign(change: RecordChange) -> int | None:
    """Set the new lead's owner from the first rule that applies; the chosen user's id."""
    if change.action != "create" or not wants_assignment(change):
        return None
    system = RecordService(None, system=True)
    for rule in request_rules(system):
        chosen = apply_rule(system, rule, change.values)
        if chosen is not None:
            change.values["owner"] = chosen
            return chosen
    return None


def active_rules(service: RecordService) -> list[dict[str, Any]]:
    page = service.query(
        RULES, filters=[Filter("active", "eq", True)], sort="position,id", limit=500
    )
    return [dict(r.values, id=r.id, version=r.version) for r in page.records]


def request_rules(service: RecordService) -> list[dict[str, Any]]:
    """The active rules, read once per request or command (an import assigns many
    leads). A round robin turn updates the cached rule in place (:func:`next_in_turn`);
    any other write of a rule forgets them (:func:`forget_rules`)."""
    if not has_app_context():
        return active_rules(service)
    rules = g.get(CACHE_KEY)
    if rules is None:
        rules = active_rules(service)
        setattr(g, CACHE_KEY, rules)
    return rules


def forget_rules(change: RecordChange | None = None) -> None:
    """CHANGED["lead_assignment_rules"]: an administrator's edit invalidates the cache;
    a turn taken (only ``last_assigned`` changed) was recorded in it already."""
    if change is not None and set(change.changed) <= TURN_FIELDS:
        return
    if has_app_context():
        g.pop(CACHE_KEY, None)


def apply_rule(
    system: RecordService, rule: Mapping[str, Any], lead: Mapping[str, Any]
) -> int | None:
    if rule.get("method") == "territory":
        return territory_owner(rule, lead)
    if rule.get("method") == "round_robin":
        return next_in_turn(system, rule)
    return None


def territory_owner(rule: Mapping[str, Any], lead: Mapping[str, Any]) -> int | None:
    field = rule.get("territory_field") or "territory"
    wanted = _fold(rule.get("territory_value"))
    actual = lead.get(field)
    if not wanted or actual is None or _fold(actual) != wanted:
        return None
    user = find_user_info(str(rule.get("assignee") or ""))
    if user is None or not user.active:
        log.warning("Assignment rule %s names no active user; skipped.", rule.get("id"))
        return None
    return user.id


def members_of(rule: Mapping[str, Any]) -> list[int]:
    team = team_by_name(str(rule.get("team") or "").strip())
    if team is None:
        return []
    return [user.id for user in team_members(team.id)]


def following(members: list[int], last: int | None) -> int:
    """The member after ``last`` (by id), wrapping around; the first when ``last`` is None."""
    for member in members:
        if last is None or member > last:
            return member
    return members[0]


def next_in_turn(system: RecordService, rule: dict[str, Any]) -> int | None:
    """The team's next member, remembered on the rule (retried on a concurrent turn).

    ``rule`` (possibly the request's cached copy) is brought up to date in place, so the
    next lead of the same request starts from this turn without reading the rule again.
    """
    members = members_of(rule)
    if not members:
        log.warning("Assignment rule %s has no team with active members; skipped.", rule["id"])
        return None
    current = dict(rule)
    for _ in range(RETRIES):
        chosen = following(members, current.get("last_assigned"))
        try:
            saved = system.update(
                RULES, current["id"], {"last_assigned": chosen}, version=current["version"]
            )
        except Conflict:
            fresh = system.get(RULES, current["id"])
            current = dict(fresh.values, id=fresh.id, version=fresh.version)
            continue
        rule.update(saved.values, id=saved.id, version=saved.version)
        return chosen
    log.warning("Assignment rule %s stayed busy; the lead keeps its owner.", rule["id"])
    return None


def _fold(value: Any) -> str:
    return " ".join(str(value or "").casefold().split())
