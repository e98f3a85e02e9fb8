"""Hook implementations of the sales plugin: each hook gathers what the areas contribute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bastion.api import (
    Blueprint,
    DashboardWidget,
    DemoContext,
    NavItem,
    ObjectDefinition,
    Permission,
    PluginAssets,
    PluginManifest,
    RecordAction,
    RecordChange,
    RecordPanel,
    hookimpl,
)
from bastion_sales import activities, forecast, leads, pipelines, quotes
from bastion_sales.area import collect, handlers
from bastion_sales.objects import SALES_OBJECTS
from bastion_sales.web import api_bp, bp

manifest = PluginManifest(
    label="Sales",
    description="Leads, opportunities and pipelines, forecasts, quotes, activities and follow-ups.",
    core_version=">=0.1,<1",
    enabled_by_default=True,
)

HERE = Path(__file__).parent
# Activities come first: an activity's write refreshes its lead's last_activity_at, and
# that one update of the lead rescores it too, so the leads area finds nothing to redo.
AREAS = (activities, leads, pipelines, forecast, quotes)


@hookimpl
def register_objects() -> list[ObjectDefinition]:
    return list(SALES_OBJECTS)


@hookimpl
def register_blueprints() -> list[Blueprint]:
    return [bp, api_bp]


@hookimpl
def register_assets() -> PluginAssets:
    return PluginAssets(
        templates=HERE / "templates",
        static=HERE / "static",
        stylesheets=("sales.css",),
        scripts=("sales.js",),
    )


@hookimpl
def register_permissions() -> list[Permission]:
    return [p for area in AREAS for p in getattr(area, "PERMISSIONS", ())]


@hookimpl
def navigation_items(user: Any) -> list[NavItem]:
    return collect(AREAS, "nav_items", user)


@hookimpl
def dashboard_widgets(user: Any) -> list[DashboardWidget]:
    return collect(AREAS, "widgets", user)


@hookimpl
def record_panels(object_name: str, record: Any, user: Any) -> list[RecordPanel]:
    return collect(AREAS, "panels", object_name, record, user)


@hookimpl
def record_actions(object_name: str, record: Any, user: Any) -> list[RecordAction]:
    return collect(AREAS, "actions", object_name, record, user)


OWN_OBJECTS = frozenset(definition.name for definition in SALES_OBJECTS)


@hookimpl
def record_changing(change: RecordChange) -> dict[str, str] | None:
    problems: dict[str, str] = {}
    for result in _each_area("CHANGING", change):
        problems.update(result or {})
    return problems or None


@hookimpl
def record_changed(change: RecordChange) -> None:
    for _ in _each_area("CHANGED", change):
        pass


def _each_area(table: str, change: RecordChange) -> Iterator[Any]:
    """Every area's handler of the change, in AREAS order.

    On the plugin's own objects the first failure stops the write (the core refuses
    it). On others' objects (activities, accounts) every area still runs, and the first
    failure is raised afterwards so the core records it against the plugin.
    """
    failure: Exception | None = None
    for handler in handlers(AREAS, table, change.object):
        try:
            yield handler(change)
        except Exception as exc:
            if change.object in OWN_OBJECTS:
                raise
            failure = failure or exc
    if failure is not None:
        raise failure


@click.group("sales")
def sales_group() -> None:
    """Sales jobs to run from a scheduler: follow-ups, lead scores."""


@hookimpl
def register_commands() -> list[click.Command]:
    for area in AREAS:
        for command in getattr(area, "COMMANDS", ()):
            if command.name not in sales_group.commands:
                sales_group.add_command(command)
    return [sales_group]


@hookimpl
def load_demo_data(app: Any, demo: DemoContext) -> None:
    from bastion_sales.demo import load_demo

    load_demo(app, demo)
