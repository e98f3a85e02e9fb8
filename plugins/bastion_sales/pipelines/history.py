"""Stage history: one ``stage_history`` row per stay of an opportunity in a stage.

Written by the system's record service inside the opportunity's transaction (a move
that rolls back leaves no history behind). Each row is owned by the opportunity's
owner, so record scope applies to history exactly as to the opportunity.

Cost of a write (what an import pays per row): a create adds one history row (one
INSERT through the system service, with its audit entry); the stage's name comes from
the request's configuration cache (``config``). A move also closes the open row (one
query, one UPDATE). A change of owner re-owns the deal's rows (one query, one UPDATE
per row). Users never write history: ``rules.history_changing`` refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.api import Filter, RecordChange, RecordService
from bastion_sales.pipelines.config import get_stage

MAX_ROWS = 500


def _system() -> RecordService:
    return RecordService(None, system=True)


def opportunity_changed(change: RecordChange) -> None:
    if change.record_id is None:
        return
    if change.action == "merge":
        _after_merge(_system(), change.record_id, change.after or {})
        return
    if change.action not in ("create", "update"):
        return
    after = change.after or {}
    system = _system()
    if change.action == "update" and "owner" in change.changed:
        _reown(system, change.record_id, after.get("owner"))
    stage_changed = change.action == "create" or "stage" in change.changed
    if not stage_changed:
        return
    now = after.get("stage_entered_at") or datetime.now(UTC)
    if change.action == "update":
        _close_open_rows(system, change.record_id, now)
    stage_id = after.get("stage")
    if stage_id is None:
        return
    _open_row(system, change.record_id, stage_id, now, after.get("owner"))


def _open_row(
    system: RecordService, opportunity_id: int, stage_id: int, now: datetime, owner: Any
) -> None:
    stage = get_stage(system, stage_id)
    system.create(
        "stage_history",
        {
            "opportunity": opportunity_id,
            "stage": stage_id,
            "stage_name": (stage.name if stage else f"Stage {stage_id}")[:100],
            "entered_at": now,
            "owner": owner,
        },
    )


def _after_merge(system: RecordService, opportunity_id: int, after: dict[str, Any]) -> None:
    """The merged deals' rows now point at the survivor (the core re-pointed them): keep
    one open row (the survivor's current stay), close the others, and give every row the
    survivor's owner, so nobody keeps seeing history of a deal they can no longer see."""
    now = datetime.now(UTC)
    owner = after.get("owner")
    stage_id = after.get("stage")
    rows = system.query(
        "stage_history",
        filters=[Filter("opportunity", "eq", opportunity_id)],
        sort="entered_at,id",
        limit=MAX_ROWS,
    ).records
    open_rows = [r for r in rows if r.get("left_at") is None]
    current = [r for r in open_rows if r.get("stage") == stage_id]
    keep = current[-1] if current else None
    for row in rows:
        changes: dict[str, Any] = {}
        if row.get("left_at") is None and row is not keep:
            entered = row.get("entered_at") or now
            changes["left_at"] = now
            changes["seconds_in_stage"] = max(0, int((now - entered).total_seconds()))
        if owner is not None and row.get("owner") != owner:
            changes["owner"] = owner
        if changes:
            system.update("stage_history", row.id, changes, version=row.version)
    if keep is None and stage_id is not None:
        _open_row(system, opportunity_id, stage_id, now, owner)


def _open_rows(system: RecordService, opportunity_id: int) -> list[Any]:
    return system.query(
        "stage_history",
        filters=[Filter("opportunity", "eq", opportunity_id), Filter("left_at", "empty", True)],
        sort="entered_at",
        limit=MAX_ROWS,
    ).records


def _close_open_rows(system: RecordService, opportunity_id: int, now: datetime) -> None:
    for row in _open_rows(system, opportunity_id):
        entered = row.get("entered_at") or now
        seconds = max(0, int((now - entered).total_seconds()))
        system.update(
            "stage_history",
            row.id,
            {"left_at": now, "seconds_in_stage": seconds},
            version=row.version,
        )


def _reown(system: RecordService, opportunity_id: int, owner: Any) -> None:
    """History follows its opportunity to a new owner (and into their scope)."""
    if owner is None:
        return
    for row in system.iterate(
        "stage_history", filters=[Filter("opportunity", "eq", opportunity_id)]
    ):
        if row.get("owner") != owner:
            system.update("stage_history", row.id, {"owner": owner}, version=row.version)


# --------------------------------------------------------------------------- reading


@dataclass
class Stay:
    stage_id: int | None
    stage_name: str
    entered_at: datetime | None
    left_at: datetime | None
    seconds: int
    current: bool


@dataclass
class StageTotal:
    stage_name: str
    seconds: int
    stays: int


def stays_of(
    service: RecordService, opportunity_id: int, now: datetime | None = None
) -> list[Stay]:
    """The opportunity's stays in order; the current one counts up to ``now``.

    At most the newest ``MAX_ROWS`` stays (read newest first, so a long history loses
    its oldest stays, never the current one)."""
    now = now or datetime.now(UTC)
    page = service.query(
        "stage_history",
        filters=[Filter("opportunity", "eq", opportunity_id)],
        sort="-entered_at,-id",
        limit=MAX_ROWS,
    )
    stays = []
    for row in reversed(page.records):
        entered, left = row.get("entered_at"), row.get("left_at")
        seconds = row.get("seconds_in_stage")
        if seconds is None:
            seconds = max(0, int(((left or now) - entered).total_seconds())) if entered else 0
        stays.append(
            Stay(
                stage_id=row.get("stage"),
                stage_name=row.get("stage_name") or "(deleted stage)",
                entered_at=entered,
                left_at=left,
                seconds=seconds,
                current=left is None,
            )
        )
    return stays


def totals_by_stage(stays: list[Stay]) -> list[StageTotal]:
    """Total time per stage, in the order the stages were first reached."""
    totals: dict[Any, StageTotal] = {}
    for stay in stays:
        key = stay.stage_id if stay.stage_id is not None else stay.stage_name
        total = totals.setdefault(key, StageTotal(stay.stage_name, 0, 0))
        total.seconds += stay.seconds
        total.stays += 1
    return list(totals.values())


def human_duration(seconds: int) -> str:
    """3 d 4 h, 5 h 12 min, 7 min, or "under a minute"."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return "under a minute"
