"""Forecast area of the sales plugin: forecast by period, owner and team; quotas and
attainment; the pipeline and quota dashboard cards (see ``bastion_sales.area``)."""

from __future__ import annotations

from typing import Any

from bastion.api import DashboardWidget, NavItem, Permission

from . import quota_views, views  # noqa: F401  (registers the routes)
from .quotas import check_quota
from .views import FORECAST
from .widgets import widgets as _widgets

PERMISSIONS = [
    Permission(
        FORECAST,
        "See the sales forecast",
        "The forecast page and its API, over the opportunities the user's record "
        "scope reaches (quotas follow the rules on sales_quotas).",
    )
]

CHANGING = {"sales_quotas": check_quota}


def nav_items(user: Any) -> list[NavItem]:
    return [
        NavItem("Forecast", "sales.forecast_page", icon="bar-chart", permission=FORECAST, order=230)
    ]


def widgets(user: Any) -> list[DashboardWidget]:
    return _widgets(user)
