"""Keeping leads' stored ``score`` in step with the scoring rules.

When a score is recalculated:

- whenever a lead is created or changed (its ``record_changing`` hook sets ``score``);
- whenever an activity related to a lead is created, changed or deleted (the lead is
  updated through the system's record service, in the activity's transaction);
- rule edits do not rewrite every lead inside the administrator's request: they apply
  to a lead at its next change, or to all open leads at the next ``bastion sales
  rescore`` run (schedule it, e.g. nightly next to ``bastion sales follow-ups``; it
  also brings inactivity rules up to date as days pass).

Inputs are read through the system's record service: a score does not depend on who
happens to be looking.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import g, has_app_context

from bastion.api import Conflict, Filter, NotFound, RecordLink, RecordService, get_logger
from bastion_sales.leads.scoring import ScoreResult, evaluate, now_utc

RULES = "lead_scoring_rules"
CACHE_KEY = "_sales_scoring_rules"
#: Activity fields an activity rule reads, and whose change can alter a score. The
#: inactivity rules read the lead's ``last_activity_at`` (kept by the activities area,
#: whose write of it rescores the lead through ``lead_changing``).
ACTIVITY_FIELDS = ("kind", "done", "related_to")
RETRIES = 5
log = get_logger("sales")


def active_rules(service: RecordService) -> list[dict[str, Any]]:
    page = service.query(RULES, filters=[Filter("active", "eq", True)], sort="id", limit=500)
    return [dict(r.values, id=r.id) for r in page.records]


def request_rules(service: RecordService) -> list[dict[str, Any]]:
    """The active rules, read once per request or command (an import scores many leads);
    any write of a rule in this request forgets them (:func:`forget_rules`)."""
    if not has_app_context():
        return active_rules(service)
    rules = g.get(CACHE_KEY)
    if rules is None:
        rules = active_rules(service)
        setattr(g, CACHE_KEY, rules)
    return rules


def forget_rules(change: Any = None) -> None:
    if has_app_context():
        g.pop(CACHE_KEY, None)


def lead_activities(service: RecordService, lead_id: int) -> list[dict[str, Any]]:
    link = f"leads:{lead_id}"
    return [
        dict(r.values)
        for r in service.iterate(
            "activities", filters=[Filter("related_to", "eq", link)], fields=("kind", "done")
        )
    ]


def score_lead(
    service: RecordService,
    lead_id: int | None,
    values: Mapping[str, Any],
    *,
    rules: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> ScoreResult:
    """A lead's score from its values and (when it exists) its activities."""
    activities = lead_activities(service, lead_id) if lead_id is not None else []
    return evaluate(
        values,
        activities,
        rules if rules is not None else request_rules(service),
        now or now_utc(),
    )


def rescore(
    system: RecordService,
    lead_id: int,
    *,
    rules: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> bool:
    """Recalculate one stored lead's score; whether it changed.

    Another transaction may write the lead between the read and the write (two
    activities logged at once): the write then fails on the version, and the score is
    recomputed from a fresh read rather than left stale.
    """
    for _ in range(RETRIES):
        try:
            lead = system.get("leads", lead_id)
        except NotFound:
            return False
        result = score_lead(system, lead_id, lead.values, rules=rules, now=now)
        if lead.get("score") == result.total:
            return False
        try:
            system.update("leads", lead_id, {"score": result.total}, version=lead.version)
        except Conflict:
            continue
        return True
    log.warning("Lead %s kept changing while it was rescored; its score is stale.", lead_id)
    raise Conflict(
        f"Lead {lead_id} kept changing while its score was recalculated; try again.",
        field="version",
    )


def linked_leads(change: Any) -> set[int]:
    """Ids of the leads an activity change concerns (before and after a move)."""
    found: set[int] = set()
    for values in (change.before, change.after):
        link = (values or {}).get("related_to")
        if isinstance(link, RecordLink) and link.object == "leads":
            found.add(link.id)
    return found
