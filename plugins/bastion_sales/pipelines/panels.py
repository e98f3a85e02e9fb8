"""The "Stage history" panel of an opportunity's page: each stay and the time per stage.

Read through the viewer's own record service: history rows carry the opportunity's
owner, so whoever may not read them (no permission on stage history) gets no panel.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bastion.api import Forbidden, RecordPanel, RecordService, request_service
from bastion_sales.pipelines.history import human_duration, stays_of, totals_by_stage


def _zone(user: Any) -> ZoneInfo:
    try:
        return ZoneInfo(getattr(user, "time_zone", None) or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""


def history_panel(record: Any, user: Any) -> list[RecordPanel]:
    service: RecordService = request_service()
    if not service.can("stage_history", "read"):
        return []
    record_id = getattr(record, "id", None)
    if not isinstance(record_id, int):
        return []
    try:
        stays = stays_of(service, record_id, datetime.now(UTC))
    except Forbidden:
        return []
    zone = _zone(user)
    rows = [
        {
            "stage": stay.stage_name,
            "entered": _when(stay.entered_at, zone),
            "left": _when(stay.left_at, zone),
            "current": stay.current,
            "duration": human_duration(stay.seconds),
        }
        for stay in stays
    ]
    totals = [
        {"stage": t.stage_name, "duration": human_duration(t.seconds), "stays": t.stays}
        for t in totals_by_stage(stays)
    ]
    return [
        RecordPanel(
            title="Stage history",
            template="sales/pipelines/_history_panel.html",
            context={"stays": rows, "totals": totals, "zone": str(zone)},
            order=50,
        )
    ]
