"""The core's own contributions, made through the same hooks plugins use."""

from __future__ import annotations

from typing import Any

from bastion.data.base_objects import BASE_OBJECTS
from bastion.plugins.contributions import NavItem, ObjectDefinition, Permission
from bastion.plugins.hookspecs import hookimpl

CORE_PERMISSIONS = (
    Permission("admin.access", "Open the administration area"),
    Permission("admin.plugins", "Enable and disable plugins"),
    Permission("admin.settings", "Change site settings such as the theme"),
    Permission("admin.users", "Manage users and teams"),
    Permission("admin.roles", "Manage roles and permissions"),
    Permission("admin.schema", "Manage objects and fields"),
    Permission("audit.view", "Read the audit trail"),
)


@hookimpl
def register_permissions() -> list[Permission]:
    return list(CORE_PERMISSIONS)


@hookimpl
def register_objects() -> list[ObjectDefinition]:
    return list(BASE_OBJECTS)


@hookimpl
def navigation_items(user: Any) -> list[NavItem]:
    from bastion.web.records_common import object_navigation

    return [
        NavItem("Dashboard", "home.dashboard", icon="home", order=0),
        *object_navigation(user),
        NavItem(
            "Administration", "admin.index", icon="settings", permission="admin.access", order=1000
        ),
        # Auditors read the trail without holding admin.access, so it has its own entry.
        NavItem("Audit trail", "audit.index", icon="shield", permission="audit.view", order=990),
    ]
