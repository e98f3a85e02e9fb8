"""The "My open tasks" dashboard card: how many, and the next few by due time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.api import DashboardWidget, RecordError, get_logger, request_service
from bastion_sales.activities.my_day import ACTIVITIES, next_open

log = get_logger("sales")


def widgets(user: Any) -> list[DashboardWidget]:
    service = request_service()
    if not service.can(ACTIVITIES, "read"):
        return []
    now = datetime.now(UTC)
    try:
        total, items = next_open(service, user, now)
    except RecordError as exc:  # e.g. a field hidden from this user's role
        log.info("No open-tasks card for user %s: %s", user.id, exc.message)
        return []
    return [
        DashboardWidget(
            title="My open tasks",
            template="sales/activities/_widget.html",
            context={"total": total, "items": items},
            order=120,
        )
    ]
