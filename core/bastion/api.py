"""The stable facade for plugins: import from here, never from Bastion's other modules.

Everything listed in ``__all__`` keeps its name and meaning across minor versions; a
plugin declares the core versions it supports in its manifest (``core_version``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from bastion import __version__ as core_version
from bastion.access import has_permission, login_required, public, requires
from bastion.audit import record as audit_event
from bastion.config import Settings
from bastion.data.base_objects import INDUSTRIES
from bastion.data.errors import (
    BadQuery,
    Conflict,
    DuplicatesFound,
    Forbidden,
    NotFound,
    RecordError,
    ValidationFailed,
)
from bastion.data.events import RecordChange
from bastion.data.query import AnyOf, Filter
from bastion.data.records import AggregateRow, Page, Record, RecordService
from bastion.data.requests import request_service
from bastion.data.values import Money, RecordLink
from bastion.diagnostics import DatabaseHealth, database_health
from bastion.job_locks import JobRunning, job_lock
from bastion.people import (
    TeamInfo,
    UserInfo,
    find_user_info,
    list_teams,
    manager_of,
    team_by_name,
    team_members,
    teams_managed_by,
    user_info,
    users_info,
)
from bastion.plugin_settings import get_plugin_setting, set_plugin_setting
from bastion.plugins.contributions import (
    FIELD_TYPES,
    DashboardWidget,
    DemoContext,
    DemoUser,
    FieldDefinition,
    NavItem,
    ObjectDefinition,
    Permission,
    PluginAssets,
    PluginManifest,
    RecordAction,
    RecordPanel,
    ValidationRule,
)
from bastion.plugins.hookspecs import hookimpl
from bastion.reauth import recent_auth_required
from bastion.runtime import platform
from bastion.web.params import bounded_int


@dataclass(frozen=True)
class PluginInfo:
    name: str
    label: str
    version: str | None
    enabled: bool
    error: str | None
    recent_failures: int


def current_settings() -> Settings:
    """The running installation's settings (read-only)."""
    return platform().settings


def installed_plugins() -> list[PluginInfo]:
    """Every installed plugin with its state, as administrators see it."""
    plat = platform()
    enabled = plat.enabled_plugins()
    failures = {name: len(items) for name, items in plat.registry.failures_by_plugin().items()}
    return [
        PluginInfo(name, p.label, p.version, name in enabled, p.error, failures.get(name, 0))
        for name, p in sorted(plat.registry.plugins.items())
    ]


def get_logger(plugin: str) -> logging.Logger:
    """The logger a plugin writes to; its lines carry the plugin's name."""
    return logging.getLogger(f"bastion.plugin.{plugin}")


def record_json(service: RecordService, object_name: str, record: Record) -> dict[str, Any]:
    """A record as the core's REST API answers it: ``id``, ``version``, then the fields
    ``service``'s user may read, in JSON form (decimals and money as exact strings).

    Raises Forbidden when that user may not read the object at all."""
    from bastion.data.serialize import record_to_json

    return record_to_json(service, service.require(object_name, "read"), record)


__all__ = [
    "FIELD_TYPES",
    "INDUSTRIES",
    "AggregateRow",
    "AnyOf",
    "BadQuery",
    "Blueprint",
    "Conflict",
    "DashboardWidget",
    "DatabaseHealth",
    "DemoContext",
    "DemoUser",
    "DuplicatesFound",
    "FieldDefinition",
    "Filter",
    "Forbidden",
    "JobRunning",
    "Money",
    "NavItem",
    "NotFound",
    "ObjectDefinition",
    "Page",
    "Permission",
    "PluginAssets",
    "PluginInfo",
    "PluginManifest",
    "Record",
    "RecordAction",
    "RecordChange",
    "RecordError",
    "RecordLink",
    "RecordPanel",
    "RecordService",
    "Settings",
    "TeamInfo",
    "UserInfo",
    "ValidationFailed",
    "ValidationRule",
    "abort",
    "audit_event",
    "bounded_int",
    "core_version",
    "current_settings",
    "current_user",
    "database_health",
    "find_user_info",
    "flash",
    "get_logger",
    "get_plugin_setting",
    "has_permission",
    "hookimpl",
    "installed_plugins",
    "job_lock",
    "list_teams",
    "login_required",
    "manager_of",
    "public",
    "recent_auth_required",
    "record_json",
    "redirect",
    "render_template",
    "request",
    "request_service",
    "requires",
    "set_plugin_setting",
    "team_by_name",
    "team_members",
    "teams_managed_by",
    "url_for",
    "user_info",
    "users_info",
]
