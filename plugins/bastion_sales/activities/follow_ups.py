"""The follow-up rule: stale leads and open opportunities get a task for their owner.

A lead whose status is anything but converted or unqualified (custom statuses
included), or an opportunity whose outcome is open, is *stale* when it has had no
activity for ``follow_up_days()`` days: its ``last_activity_at`` (else its
``created_at``) lies before now minus that many days. Before a task is created the
record's last activity is recomputed from its activities: a stored value that drifted
(an activity written while the hook could not run) is corrected, not acted on.

A stale record gets one task: kind task, subject "Follow up: no activity for N days"
(neutral: no personal data copied into a record the owner's colleagues may read),
related to the record, due now, owned by the record's owner.

Idempotent: a record that already has ANY open task related to it owned by its current
owner is covered, whatever the task is called, so renaming a task creates no second
one, and a record handed to a new owner gets a task for that owner. The open task does
not count as activity (open tasks never do); marking it done does and resets the clock.
Runs hold the job lock "sales-follow-ups": a run started while another is going stops
at once. A lead that is converted or unqualified, or an opportunity won or lost, has
its open follow-up tasks closed (``close_follow_ups``).

Everything goes through a system record service, a page of 200 records per
transaction (a refused task undoes only itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click

from bastion.api import (
    Filter,
    JobRunning,
    Record,
    RecordChange,
    RecordError,
    RecordLink,
    RecordService,
    get_logger,
    job_lock,
    users_info,
)
from bastion_sales.activities.last_activity import closing, latest_activity_time, refresh
from bastion_sales.settings import follow_up_days

ACTIVITIES = "activities"
SUBJECT_PREFIX = "Follow up:"
LOCK_NAME = "sales-follow-ups"
#: Records examined per page (one transaction, one "who is covered" query).
BATCH = 200
CLOSED_LEAD_STATUSES = ("converted", "unqualified")
#: The field and values that end a record's need for follow-ups, per object.
CLOSED_VALUES = {
    "leads": ("status", CLOSED_LEAD_STATUSES),
    "opportunities": ("outcome", ("won", "lost")),
}
#: The fields the rule reads: never the personal ones (no decrypting for nothing).
STALE_FIELDS = ("owner", "last_activity_at", "created_at")
log = get_logger("sales")


@dataclass
class FollowUpResult:
    examined: int = 0
    created: int = 0
    already_open: int = 0
    #: Stale-looking records whose activities were newer (their last activity corrected).
    refreshed: int = 0
    #: Records without an owner, or whose task was refused by validation.
    skipped: int = 0
    #: Records skipped because their owner is deactivated (or gone), by owner id.
    inactive_owners: dict[int, int] = field(default_factory=dict)
    #: Whether the per-run cap (``--limit``) stopped the run early.
    capped: bool = False
    by_object: dict[str, int] = field(default_factory=dict)


def still_open(object_name: str) -> list[Filter]:
    if object_name == "leads":
        return [Filter("status", "ne", status) for status in CLOSED_LEAD_STATUSES]
    return [Filter("outcome", "eq", "open")]


def stale_queries(object_name: str, cutoff: datetime) -> list[list[Filter]]:
    """Filter sets, one per query, matching the records with no activity since ``cutoff``.

    Two disjoint sets: records whose last activity is older than the cutoff, and records
    that never had any activity and were created before it.
    """
    is_open = still_open(object_name)
    return [
        [*is_open, Filter("last_activity_at", "lt", cutoff.isoformat())],
        [
            *is_open,
            Filter("last_activity_at", "empty", True),
            Filter("created_at", "lt", cutoff.isoformat()),
        ],
    ]


def stale_pages(service: RecordService, object_name: str, cutoff: datetime) -> Iterator[list]:
    """The stale records, a page at a time (keyset pages: safe while tasks are added)."""
    for filters in stale_queries(object_name, cutoff):
        cursor = None
        while True:
            page = service.query(
                object_name,
                filters=filters,
                sort="id",
                limit=BATCH,
                cursor=cursor,
                fields=list(STALE_FIELDS),
            )
            if page.records:
                yield page.records
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def covered(service: RecordService, object_name: str, records: list[Record]) -> set[int]:
    """Ids among ``records`` with an open task related to them owned by their owner."""
    owners = {r.id: r.get("owner") for r in records}
    found: set[int] = set()
    cursor = None
    while True:
        page = service.query(
            ACTIVITIES,
            filters=[
                Filter("related_to", "in", [f"{object_name}:{i}" for i in owners]),
                Filter("done", "eq", False),
                Filter("kind", "eq", "task"),
            ],
            sort="id",
            limit=500,
            cursor=cursor,
            fields=["related_to", "owner"],
        )
        for task in page.records:
            link = task.get("related_to")
            if link is not None and owners.get(link.id) == task.get("owner"):
                found.add(link.id)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def task_values(record: Record, now: datetime, days: int) -> dict:
    return {
        "kind": "task",
        "subject": f"{SUBJECT_PREFIX} no activity for {days} days",
        "related_to": {"object": record.object, "id": record.id},
        "due_at": now,
        "owner": record.get("owner"),
        "description": f"Nothing has happened on this record for {days} days or more.",
    }


def run_follow_ups(
    *, dry_run: bool = False, now: datetime | None = None, limit: int | None = None
) -> FollowUpResult:
    """Create the missing follow-up tasks (or only count them with ``dry_run``).

    ``limit`` caps the tasks created in this run; the next run carries on.
    """
    now = now or datetime.now(UTC)
    days = follow_up_days()
    cutoff = now - timedelta(days=days)
    service = RecordService(None, system=True)
    result = FollowUpResult()
    active: dict[int, bool] = {}
    for object_name in ("leads", "opportunities"):
        created = 0
        for records in stale_pages(service, object_name, cutoff):
            if result.capped:
                break
            result.examined += len(records)
            done = covered(service, object_name, records)
            owners = {r.get("owner") for r in records} - set(active) - {None}
            active.update({uid: False for uid in owners})
            active.update({uid: info.active for uid, info in users_info(owners).items()})
            with nullcontext() if dry_run else service.atomic():
                for record in records:
                    if limit is not None and result.created + created >= limit:
                        result.capped = True
                        break
                    owner = record.get("owner")
                    if record.id in done:
                        result.already_open += 1
                        continue
                    if owner is None:
                        result.skipped += 1
                        continue
                    if not active.get(owner, False):
                        result.inactive_owners[owner] = result.inactive_owners.get(owner, 0) + 1
                        continue
                    link = RecordLink(object_name, record.id)
                    latest = latest_activity_time(service, link)
                    if latest is not None and latest >= cutoff:
                        # The stored last activity drifted: correct it, no task.
                        if not dry_run:
                            refresh(service, link)
                        result.refreshed += 1
                        continue
                    if not dry_run:
                        try:
                            service.create(ACTIVITIES, task_values(record, now, days))
                        except RecordError as exc:
                            log.warning(
                                "No follow-up task for %s %s: %s",
                                object_name,
                                record.id,
                                exc.message,
                            )
                            result.skipped += 1
                            continue
                    created += 1
        result.by_object[object_name] = created
        result.created += created
    return result


def close_follow_ups(service: RecordService, link: RecordLink) -> int:
    """Mark the record's open follow-up tasks done (it was converted, won, lost...)."""
    closed = 0
    token = closing.set(True)  # closing a task is no contact with the record
    try:
        while True:
            page = service.query(
                ACTIVITIES,
                filters=[
                    Filter("related_to", "eq", str(link)),
                    Filter("done", "eq", False),
                    Filter("kind", "eq", "task"),
                    Filter("subject", "startswith", SUBJECT_PREFIX),
                ],
                sort="id",
                limit=BATCH,
                fields=["done"],
            )
            for task in page.records:
                service.update(ACTIVITIES, task.id, {"done": True}, version=task.version)
                closed += 1
            if page.next_cursor is None:
                return closed
    finally:
        closing.reset(token)


def on_sales_record_changed(change: RecordChange) -> None:
    """CHANGED["leads"/"opportunities"]: follow-up housekeeping on the record itself.

    - merged: the survivor took over the activities of the merged records, so its last
      activity is recomputed;
    - converted or unqualified (a lead), won or lost (an opportunity): its open
      follow-up tasks are closed, so they do not outlive the need.
    Changes the core made itself (``cause``: a record they referred to went) are left
    alone.
    """
    if change.cause is not None or change.record_id is None:
        return
    link = RecordLink(change.object, change.record_id)
    if change.action == "merge":
        refresh(RecordService(None, system=True), link)
        return
    if change.action != "update":
        return
    name, closed = CLOSED_VALUES[change.object]
    if name in change.changed and (change.after or {}).get(name) in closed:
        close_follow_ups(RecordService(None, system=True), link)


def summary(result: FollowUpResult, days: int, dry_run: bool) -> str:
    verb = "would create" if dry_run else "created"
    lines = [
        f"Follow-ups ({days} days without activity): examined "
        f"{result.examined} stale records; {verb} {result.created} tasks "
        f"({result.by_object.get('leads', 0)} for leads, "
        f"{result.by_object.get('opportunities', 0)} for opportunities); "
        f"{result.already_open} already have an open follow-up; {result.skipped} skipped."
    ]
    if result.refreshed:
        lines.append(f"{result.refreshed} records had newer activity (last activity corrected).")
    if result.inactive_owners:
        records = sum(result.inactive_owners.values())
        owners = ", ".join(f"#{uid}" for uid in sorted(result.inactive_owners))
        lines.append(
            f"{records} records belong to {len(result.inactive_owners)} deactivated or "
            f"removed owners (user {owners}): reassign them to get follow-ups."
        )
    if result.capped:
        lines.append("Stopped at the --limit; the next run carries on.")
    return "\n".join(lines)


@click.command("follow-ups")
@click.option("--dry-run", is_flag=True, help="Count the tasks that would be created; create none.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Create at most this many tasks in this run.",
)
def follow_ups_command(dry_run: bool, limit: int | None) -> None:
    """Give stale leads and open opportunities a follow-up task for their owner."""
    days = follow_up_days()
    try:
        with nullcontext() if dry_run else job_lock(LOCK_NAME):
            result = run_follow_ups(dry_run=dry_run, limit=limit)
    except JobRunning:
        click.echo("Another follow-ups run is in progress.")
        return
    click.echo(summary(result, days, dry_run))
