"""The platform object an application carries: settings, plugins, themes, enabled state."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, has_request_context

from bastion.config import Settings
from bastion.plugins import state
from bastion.plugins.contributions import ObjectDefinition, Permission
from bastion.plugins.registry import CORE, PluginRegistry
from bastion.themes import ThemeRegistry

EXTENSION_KEY = "bastion"


class Platform:
    def __init__(self, settings: Settings, registry: PluginRegistry, themes: ThemeRegistry):
        self.settings = settings
        self.registry = registry
        self.themes = themes
        #: Top-level blueprint name -> plugin that registered it.
        self.blueprint_owner: dict[str, str] = {}
        #: Permission name -> (owning plugin or "core", definition); filled at start-up.
        self.permissions: dict[str, tuple[str, Permission]] = {}
        #: Plugin name -> its static folder; stylesheets and scripts included on every page.
        self.plugin_static: dict[str, str] = {}
        self.plugin_stylesheets: list[tuple[str, str]] = []
        self.plugin_scripts: list[tuple[str, str]] = []
        #: Object API name -> (declaring plugin, definition); the data model consumes it.
        self.objects: dict[str, tuple[str, ObjectDefinition]] = {}

    def enabled_plugins(self) -> frozenset[str]:
        """Plugins enabled right now; read once per request so every process sees changes."""
        if has_request_context():
            cached = g.get("_bastion_enabled")
            if cached is None:
                cached = g._bastion_enabled = self._read_enabled()
            return cached
        return self._read_enabled()

    def _read_enabled(self) -> frozenset[str]:
        # No schema yet (before `bastion init`) or the database is down: nothing runs.
        return self.registry.effective_enabled(state.stored_enabled_or_none())

    def is_active(self, owner: str) -> bool:
        return owner == CORE or owner in self.enabled_plugins()

    def hook(self, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        return self.registry.call(name, self.enabled_plugins(), **kwargs)

    def record_hook(self, name: str, owner: str | None, **kwargs: Any) -> list[tuple[str, Any]]:
        """A record hook: the exception of ``owner``, the object's plugin, is raised again."""
        return self.registry.call(name, self.enabled_plugins(), raise_from=owner, **kwargs)

    def hook_items(self, name: str, kind: type, **kwargs: Any) -> list[tuple[str, Any]]:
        """(plugin, item) pairs of a list hook, keeping only items of ``kind``."""
        return self.registry.call_list(name, self.enabled_plugins(), kind=kind, **kwargs)

    def active_permissions(self) -> frozenset[str]:
        """Permissions defined by the core or an enabled plugin: the only ones that grant."""
        return frozenset(
            name for name, (owner, _) in self.permissions.items() if self.is_active(owner)
        )

    def run_pending_startups(self, app: Flask) -> None:
        if self.registry.run_startups(self.enabled_plugins(), app) and has_request_context():
            g.pop("_bastion_enabled", None)  # a failed start-up may have closed a plugin


def platform(app: Flask | None = None) -> Platform:
    return (app or current_app).extensions[EXTENSION_KEY]
