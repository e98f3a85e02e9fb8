"""Activities area of the sales plugin: last activity, "My day", follow-ups, settings.

- ``last_activity_at`` of leads and opportunities follows their activities
  (``last_activity``), and a done activity gets its completion time (``completion``);
- the "My day" page of open activities with "Done" and "New task" (``views``, ``my_day``);
- the follow-up rule and its command ``bastion sales follow-ups`` (``follow_ups``);
- the "My open tasks" dashboard card (``widget``);
- the sales settings page (``settings_page``).

See ``bastion_sales.area`` for what an area contributes.
"""

from __future__ import annotations

from typing import Any

from bastion.api import NavItem, has_permission, request_service
from bastion_sales.activities import settings_page, views  # noqa: F401 - registers routes
from bastion_sales.activities.completion import fill_completed_at
from bastion_sales.activities.follow_ups import follow_ups_command, on_sales_record_changed
from bastion_sales.activities.last_activity import on_activity_changed
from bastion_sales.activities.settings_page import CONFIGURE
from bastion_sales.activities.widget import widgets

__all__ = ["CHANGED", "CHANGING", "COMMANDS", "nav_items", "widgets"]

CHANGING = {"activities": fill_completed_at}
CHANGED = {
    "activities": on_activity_changed,
    "leads": on_sales_record_changed,
    "opportunities": on_sales_record_changed,
}
COMMANDS = [follow_ups_command]


def nav_items(user: Any) -> list[NavItem]:
    items = []
    if request_service().can("activities", "read"):
        items.append(NavItem("My day", "sales.my_day", icon="sun", order=15))
    if has_permission(user, CONFIGURE):
        items.append(
            NavItem(
                "Sales settings",
                "sales.settings_page",
                icon="settings",
                permission=CONFIGURE,
                order=880,
            )
        )
    return items
