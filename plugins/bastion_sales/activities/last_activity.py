"""Keep ``last_activity_at`` of leads and opportunities in step with their activities.

Definition (also in docs/sales.md): an activity counts unless it is an open task (a
plan, not a contact); its time is its ``completed_at`` when it has one, else its
``created_at``. A record's ``last_activity_at`` is the latest time of the counting
activities whose ``related_to`` points at it, or empty when there are none.

It is recomputed (not just raised) whenever such an activity is created, updated in a
field that matters, or deleted, so moving or deleting an activity lowers it again. The
cost is two indexed "latest one" queries (limit 1), however many activities the record
has, plus the write when the value changed. The write goes through a system record
service inside the activity's transaction: the field is read-only for users.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime

from bastion.api import (
    AnyOf,
    Filter,
    NotFound,
    RecordChange,
    RecordLink,
    RecordService,
)

ACTIVITIES = "activities"
#: Objects whose records carry ``last_activity_at``.
TRACKED = ("leads", "opportunities")
#: Activity fields whose change can move a record's last activity.
RELEVANT = frozenset({"related_to", "done", "completed_at", "kind"})
#: Set while the plugin closes the follow-up tasks of a converted, won or lost record:
#: closing them is housekeeping, not a contact, so it does not move the last activity.
closing: ContextVar[bool] = ContextVar("sales_closing_follow_ups", default=False)


def counts(values: dict | None) -> bool:
    """Whether an activity in this state is a contact: anything but an open task."""
    return values is not None and not (values.get("kind") == "task" and not values.get("done"))


def only_open_tasks(change: RecordChange) -> bool:
    """An open task created, edited or deleted: neither last activity nor score moves.

    The follow-up command creates thousands of them; skipping them halves its cost.
    """
    return not counts(change.before) and not counts(change.after)


def tracked_links(change: RecordChange) -> set[RecordLink]:
    """The leads and opportunities the activity pointed at, before and after the change."""
    found: set[RecordLink] = set()
    for values in (change.before, change.after):
        link = (values or {}).get("related_to")
        if isinstance(link, RecordLink) and link.object in TRACKED:
            found.add(link)
    return found


def on_activity_changed(change: RecordChange) -> None:
    """CHANGED["activities"]: refresh the last activity of the records concerned."""
    if change.cause is not None:
        # The core released this activity's link because its record is being deleted
        # or merged away: writing that record now would race its own delete or merge.
        return
    if closing.get():
        return
    if change.action == "update" and not RELEVANT.intersection(change.changed):
        return
    if only_open_tasks(change):
        return
    links = tracked_links(change)
    if not links:
        return
    service = RecordService(None, system=True)
    for link in sorted(links, key=str):
        refresh(service, link)


def latest_activity_time(service: RecordService, link: RecordLink) -> datetime | None:
    """The time of the latest counting activity related to ``link`` (see the module doc)."""
    related = Filter("related_to", "eq", str(link))
    completed = service.query(
        ACTIVITIES,
        filters=[related, Filter("completed_at", "empty", False)],
        sort="-completed_at",
        limit=1,
        fields=["completed_at"],
    ).records
    logged = service.query(
        ACTIVITIES,
        filters=[
            related,
            Filter("completed_at", "empty", True),
            AnyOf((Filter("done", "eq", True), Filter("kind", "ne", "task"))),
        ],
        sort="-created_at",
        limit=1,
        fields=["created_at"],
    ).records
    times = [r.get("completed_at") for r in completed] + [r.get("created_at") for r in logged]
    times = [t for t in times if t is not None]
    return max(times) if times else None


def refresh(service: RecordService, link: RecordLink) -> None:
    """Write the record's ``last_activity_at`` when it differs from its activities'."""
    try:
        record = service.get(link.object, link.id, fields=["last_activity_at"])
    except NotFound:
        return  # deleted meanwhile, or an object that no longer exists
    latest = latest_activity_time(service, link)
    if record.get("last_activity_at") == latest:
        return
    service.update(link.object, link.id, {"last_activity_at": latest}, version=record.version)
