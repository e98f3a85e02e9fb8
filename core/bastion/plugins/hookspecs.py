"""Every hook a Bastion plugin can implement. One flat module; docs/plugins.md documents each.

Hooks take keyword arguments and return small dataclasses from ``bastion.api``, lists of
them, or None. Registration hooks (``register_blueprints``, ``register_assets``,
``register_permissions``, ``register_objects``) are called once at start-up for every
installed plugin, enabled or not, so that a plugin's routes, templates and tables exist
and its data stays put while it is disabled. All other hooks are called only for enabled
plugins, on every call, so an enable or disable takes effect on the next request.
A plugin's exception in any hook is caught, logged with the plugin's name and shown to
administrators; it never takes the platform down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Blueprint, Flask

    from bastion.data.events import RecordChange
    from bastion.data.records import Record
    from bastion.keys.master import MasterKey
    from bastion.plugins.contributions import (
        DashboardWidget,
        DemoContext,
        NavItem,
        ObjectDefinition,
        Permission,
        PluginAssets,
        RecordAction,
        RecordPanel,
    )

PROJECT = "bastion"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_blueprints() -> list[Blueprint]:
    """Return the plugin's Flask blueprints: under /<plugin>/, its API under /api/v1/."""


@hookspec
def register_assets() -> PluginAssets:
    """Return the plugin's template and static folders and per-page CSS and JS."""


@hookspec
def register_permissions() -> list[Permission]:
    """Return the permissions the plugin defines, each named '<plugin>.<action>'."""


@hookspec
def register_objects() -> list[ObjectDefinition]:
    """Return the business objects and their fields that the plugin declares."""


@hookspec
def navigation_items(user: Any) -> list[NavItem]:
    """Return entries of the main navigation for the signed-in user."""


@hookspec
def dashboard_widgets(user: Any) -> list[DashboardWidget]:
    """Return cards to show on the signed-in user's home dashboard."""


@hookspec
def register_commands() -> list[click.Command]:
    """Return click commands to add under the `bastion` command."""


@hookspec
def load_demo_data(app: Flask, demo: DemoContext) -> None:
    """Create the plugin's part of the demo organization during `bastion init --demo`."""


@hookspec
def startup(app: Flask) -> None:
    """Prepare the plugin in a server process, once, when it is first seen enabled."""


@hookspec
def record_changing(change: RecordChange) -> dict[str, str] | None:
    """Check or adjust a record about to be written: return {field: message} to refuse it."""


@hookspec
def record_changed(change: RecordChange) -> None:
    """React to a record written (created, updated, deleted, merged), in its transaction."""


@hookspec
def record_panels(object_name: str, record: Record, user: Any) -> list[RecordPanel]:
    """Return sections to show on a record's detail page, below its fields."""


@hookspec
def record_actions(object_name: str, record: Record, user: Any) -> list[RecordAction]:
    """Return buttons to show in the header of a record's detail page."""


@hookspec
def master_key_provider() -> MasterKey | None:
    """Return the master key (key_id, wrap, unwrap) from an HSM or KMS, or None."""
