"""The signed-in user's open activities, grouped for the "My day" page and the widget.

Listed are the user's open tasks, and their other open activities that have a due
date. Grouping is by the local date of ``due_at`` in the user's time zone: *Overdue*
(due before today), *Today*, *Upcoming* (tomorrow up to seven days ahead) and *No due
date* (tasks only); open activities due later are only counted. Everything is read through the
user's record service, so permissions, record scope and field security apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bastion.api import Filter, Record, RecordLink, RecordService, url_for

ACTIVITIES = "activities"
UPCOMING_DAYS = 7
#: Most activities listed per dated group, and undated; the page says when there are more.
GROUP_LIMIT = 100
UNDATED_LIMIT = 50
WIDGET_LIMIT = 5


@dataclass
class DayItem:
    record: Record
    due_local: datetime | None
    overdue: bool
    related_name: str = ""
    related_url: str | None = None


@dataclass
class MyDay:
    overdue: list[DayItem] = field(default_factory=list)
    today: list[DayItem] = field(default_factory=list)
    upcoming: list[DayItem] = field(default_factory=list)
    undated: list[DayItem] = field(default_factory=list)
    #: Open activities due after the upcoming window (counted, not listed).
    later: int = 0
    #: Whether some dated or undated activities were left out of the lists.
    truncated: bool = False
    today_date: date | None = None

    @property
    def groups(self) -> list[tuple[str, str, list[DayItem]]]:
        return [
            ("overdue", "Overdue", self.overdue),
            ("today", "Today", self.today),
            ("upcoming", f"Upcoming (next {UPCOMING_DAYS} days)", self.upcoming),
            ("undated", "No due date", self.undated),
        ]

    @property
    def total(self) -> int:
        return sum(len(items) for _, _, items in self.groups)


def zone_of(user: Any) -> ZoneInfo:
    try:
        return ZoneInfo(getattr(user, "time_zone", None) or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` starts in ``zone``."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def window_end(now: datetime, zone: ZoneInfo) -> datetime:
    """The end of the upcoming window: midnight after the seventh day from today."""
    today = now.astimezone(zone).date()
    return local_midnight(today + timedelta(days=UPCOMING_DAYS + 1), zone)


def mine(user_id: int) -> list[Filter]:
    return [Filter("owner", "eq", user_id), Filter("done", "eq", False)]


def due_between(start: datetime | None, end: datetime | None) -> list[Filter]:
    found = []
    if start is not None:
        found.append(Filter("due_at", "gte", start.isoformat()))
    if end is not None:
        found.append(Filter("due_at", "lt", end.isoformat()))
    return found


def load_my_day(service: RecordService, user: Any, now: datetime | None = None) -> MyDay:
    """The user's open activities, grouped: one query per group, each with its limit.

    Listed: open tasks, and other open activities (a call planned for Friday) that have
    a due date. A call, email or note logged without a due date is a record of what
    happened, not something to do, so it is left out. Grouping by the local day is done
    in the queries (the day's bounds in UTC), so a long overdue list cannot push
    today's tasks off the page.
    """
    now = now or datetime.now(UTC)
    zone = zone_of(user)
    today = now.astimezone(zone).date()
    starts_today = local_midnight(today, zone)
    starts_tomorrow = local_midnight(today + timedelta(days=1), zone)
    end = window_end(now, zone)
    day = MyDay(today_date=today)
    dated = (
        (day.overdue, None, starts_today, True),
        (day.today, starts_today, starts_tomorrow, False),
        (day.upcoming, starts_tomorrow, end, False),
    )
    for items, start, stop, overdue in dated:
        page = service.query(
            ACTIVITIES,
            filters=[*mine(user.id), *due_between(start, stop)],
            sort="due_at",
            limit=GROUP_LIMIT,
        )
        items.extend(DayItem(r, r.get("due_at").astimezone(zone), overdue) for r in page.records)
        day.truncated = day.truncated or page.next_cursor is not None
    undated = service.query(
        ACTIVITIES,
        filters=[*mine(user.id), Filter("kind", "eq", "task"), Filter("due_at", "empty", True)],
        sort="-created_at",
        limit=UNDATED_LIMIT,
    )
    day.undated.extend(DayItem(r, None, False) for r in undated.records)
    day.truncated = day.truncated or undated.next_cursor is not None
    day.later = service.count(ACTIVITIES, filters=[*mine(user.id), *due_between(end, None)])
    name_related(service, [item for _, _, items in day.groups for item in items])
    return day


def open_tasks(user_id: int) -> list[Filter]:
    return [*mine(user_id), Filter("kind", "eq", "task")]


def next_open(service: RecordService, user: Any, now: datetime | None = None) -> tuple[int, list]:
    """The widget's figures: how many open tasks, and the next few by due time."""
    now = now or datetime.now(UTC)
    total = service.count(ACTIVITIES, filters=open_tasks(user.id))
    page = service.query(
        ACTIVITIES,
        filters=[*open_tasks(user.id), Filter("due_at", "empty", False)],
        sort="due_at",
        limit=WIDGET_LIMIT,
    )
    zone = zone_of(user)
    today = now.astimezone(zone).date()
    items = []
    for record in page.records:  # overdue as on "My day": due before today, locally
        local = record.get("due_at").astimezone(zone)
        items.append(DayItem(record, local, local.date() < today))
    name_related(service, items)
    return total, items


def name_related(service: RecordService, items: list[DayItem]) -> None:
    """Each item's related record as a name and a link (one names query per object)."""
    wanted: dict[str, set[int]] = {}
    for item in items:
        link = item.record.get("related_to")
        if isinstance(link, RecordLink):
            wanted.setdefault(link.object, set()).add(link.id)
    names = {name: service.names(name, ids) for name, ids in wanted.items()}
    for item in items:
        link = item.record.get("related_to")
        if not isinstance(link, RecordLink):
            continue
        found = names.get(link.object, {}).get(link.id)
        if found is None:  # not visible to this user: say what it is, without a link
            meta = service.catalog.objects.get(link.object)
            label = meta.label if meta is not None else link.object.replace("_", " ").capitalize()
            item.related_name = f"{label} #{link.id}"
            continue
        item.related_name = found
        item.related_url = url_for("records.detail", object=link.object, record_id=link.id)
