"""What one area of the plugin (leads, pipelines, forecast, quotes, activities) contributes.

``plugin.py`` holds the only hook implementations and asks each area for its part, so
areas stay independent modules. Every attribute is optional.

- ``PERMISSIONS``: list[Permission]
- ``CHANGING``: {object name: handler(change) -> {field: message} | None}
- ``CHANGED``: {object name: handler(change) -> None}
- ``COMMANDS``: list[click.Command], added under ``bastion sales``
- ``nav_items(user) -> list[NavItem]``
- ``widgets(user) -> list[DashboardWidget]``
- ``panels(object_name, record, user) -> list[RecordPanel]``
- ``actions(object_name, record, user) -> list[RecordAction]``
- ``demo(app, demo) -> None`` (called in AREAS order)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any


def handlers(areas: tuple[ModuleType, ...], table: str, object_name: str) -> Iterator[Callable]:
    for area in areas:
        handler = getattr(area, table, {}).get(object_name)
        if handler is not None:
            yield handler


def collect(areas: tuple[ModuleType, ...], name: str, *args: Any) -> list[Any]:
    found: list[Any] = []
    for area in areas:
        function = getattr(area, name, None)
        if function is not None:
            found.extend(function(*args) or ())
    return found
