"""pipelines area of the sales plugin (see bastion_sales.area for what it contributes):
the opportunity and pipeline rules, stage history, the board and the pipelines settings.
"""

from __future__ import annotations

from typing import Any

from bastion.api import NavItem, RecordPanel, request_service
from bastion_sales.pipelines import settings_views, views  # noqa: F401  (routes register)
from bastion_sales.pipelines.history import opportunity_changed
from bastion_sales.pipelines.panels import history_panel
from bastion_sales.pipelines.rules import (
    history_changing,
    opportunity_changing,
    pipeline_changed,
    pipeline_changing,
    stage_changed,
    stage_changing,
)

CHANGING = {
    "opportunities": opportunity_changing,
    "pipeline_stages": stage_changing,
    "pipelines": pipeline_changing,
    "stage_history": history_changing,
}
CHANGED = {
    "opportunities": opportunity_changed,
    "pipeline_stages": stage_changed,
    "pipelines": pipeline_changed,
}


def nav_items(user: Any) -> list[NavItem]:
    """The board, for whoever may read opportunities (an object permission, so it is
    checked here: a NavItem's ``permission`` only knows named permissions)."""
    if not request_service().can("opportunities", "read"):
        return []
    return [NavItem("Pipeline", "sales.board", icon="columns", order=15)]


def panels(object_name: str, record: Any, user: Any) -> list[RecordPanel]:
    if object_name != "opportunities":
        return []
    return history_panel(record, user)
