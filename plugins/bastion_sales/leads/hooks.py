"""The leads area's record hooks: assignment and scoring of leads, checks of rules."""

from __future__ import annotations

from typing import Any

from bastion.api import RecordChange, RecordService, find_user_info, get_logger, team_by_name
from bastion_sales.activities.last_activity import only_open_tasks
from bastion_sales.leads import assignment, scores
from bastion_sales.leads.conversion import converting
from bastion_sales.leads.scoring import check_rule, now_utc

log = get_logger("sales")
CONVERTED = "converted"


def lead_changing(change: RecordChange) -> dict[str, str] | None:
    """A new lead gets its owner from the assignment rules; every write its score."""
    if change.action not in {"create", "update"}:
        return None
    # Checked before assignment: a refused lead must not use up a round robin turn.
    problems = status_problems(change)
    if problems:
        return problems
    if change.action == "update" and set(change.values) == {"score"}:
        return None  # ``scores.rescore`` computed this score just now
    if change.action == "create":
        assignment.assign(change)
    system = RecordService(None, system=True)
    values: dict[str, Any] = {**(change.before or {}), **change.values}
    if change.action == "create":
        values.setdefault("created_at", now_utc())
    result = scores.score_lead(system, change.record_id, values)
    if (change.before or {}).get("score") != result.total or change.action == "create":
        change.values["score"] = result.total
    return None


def status_problems(change: RecordChange) -> dict[str, str] | None:
    """Users reach "converted" only through conversion, and never leave it.

    A lead marked converted by hand would have no links and could no longer be
    converted; one set back to working would keep links to records made from it. The
    system (demo data, jobs) may still write any status.
    """
    if change.actor is None or "status" not in change.values:
        return None
    new = change.values.get("status")
    old = (change.before or {}).get("status")
    if new == old:
        return None
    if old == CONVERTED:
        return {
            "status": "This lead was converted: its status stays Converted, and it keeps "
            "its links to the account and contact made from it."
        }
    if new == CONVERTED and (change.record_id is None or converting() != change.record_id):
        return {
            "status": "A lead becomes Converted only through its Convert button (or "
            "POST /api/v1/leads/<id>/convert), which creates or links its account and contact."
        }
    return None


def activity_changed(change: RecordChange) -> None:
    """Rescore the leads an activity belongs to (or belonged to) when it matters."""
    if change.cause is not None:
        # The core released the activity's link because its lead is being deleted or
        # merged away: writing that lead now would make its delete or merge fail (409).
        # A merge's master is rescored by its own update (``lead_changing``).
        return
    if change.action == "update" and not set(change.changed) & set(scores.ACTIVITY_FIELDS):
        return
    if only_open_tasks(change):  # scoring counts done activities and the last activity
        return
    leads = scores.linked_leads(change)
    if not leads:
        return
    system = RecordService(None, system=True)
    rules = scores.request_rules(system)
    for lead_id in sorted(leads):
        scores.rescore(system, lead_id, rules=rules)


def rule_changing(change: RecordChange) -> dict[str, str] | None:
    """A scoring rule must be complete for its kind and test a lead field that exists."""
    if change.action not in {"create", "update"}:
        return None
    values = {**(change.before or {}), **change.values}
    lead_fields = RecordService(None, system=True).object("leads").fields
    return check_rule(values, lead_fields) or None


def assignment_rule_changing(change: RecordChange) -> dict[str, str] | None:
    """An assignment rule must name what its method needs."""
    if change.action not in {"create", "update"}:
        return None
    values = {**(change.before or {}), **change.values}
    problems: dict[str, str] = {}
    if values.get("method") == "territory":
        field = values.get("territory_field") or "territory"
        lead_fields = RecordService(None, system=True).object("leads").fields
        item = lead_fields.get(field)
        if item is None:
            problems["territory_field"] = f"Leads have no field {field!r}."
        elif item.type not in assignment.TERRITORY_TYPES:
            problems["territory_field"] = (
                f"{item.label} does not hold a territory name; choose a text or picklist field."
            )
        if not str(values.get("territory_value") or "").strip():
            problems["territory_value"] = "Give the value the lead field must match."
        if not values.get("assignee"):
            problems["assignee"] = "Give the email address of the user who gets these leads."
        else:
            user = find_user_info(str(values["assignee"]))
            if user is None or not user.active:
                problems["assignee"] = "No active user has this email address."
    elif values.get("method") == "round_robin":
        name = str(values.get("team") or "").strip()
        if not name:
            problems["team"] = "Give the team whose members take turns."
        elif team_by_name(name) is None:
            problems["team"] = f"There is no team named {name!r}."
    return problems or None
