"""The stable facade for plugins: import from here, never from Bastion's other modules.

Everything listed in ``__all__`` keeps its name and meaning across minor versions; a
plugin declares the core versions it supports in its manifest (``core_version``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from bastion import __version__ as core_version
from bastion.access import has_permission, login_required, public, requires
from bastion.audit import record as audit_event
from bastion.config import Settings
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
from bastion.data.records import Page, Record, RecordService
from bastion.data.requests import request_service
from bastion.data.values import Money, RecordLink
from bastion.diagnostics import DatabaseHealth, database_health
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
    ValidationRule,
)
from bastion.plugins.hookspecs import hookimpl
from bastion.reauth import recent_auth_required
from bastion.runtime import platform


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


__all__ = [
    "FIELD_TYPES",
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
    "RecordChange",
    "RecordError",
    "RecordLink",
    "RecordService",
    "Settings",
    "ValidationFailed",
    "ValidationRule",
    "abort",
    "audit_event",
    "core_version",
    "current_settings",
    "current_user",
    "database_health",
    "flash",
    "get_logger",
    "has_permission",
    "hookimpl",
    "installed_plugins",
    "login_required",
    "public",
    "recent_auth_required",
    "redirect",
    "render_template",
    "request",
    "request_service",
    "requires",
    "url_for",
]
