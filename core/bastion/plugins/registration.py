"""Start-up registration: every installed plugin's routes, assets, permissions and objects.

These hooks run once per process for every installed plugin, enabled or not, so a
disabled plugin's routes exist (answering 404) and its data keeps its tables. A plugin
that fails here, returns the wrong kind of thing, or reaches beyond its own namespace
(URLs, blueprint names, templates, permissions, application-wide handlers) is marked
broken and cannot be enabled; the others carry on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypeVar

from flask import Blueprint, Flask

from bastion.plugins import state
from bastion.plugins.contributions import ObjectDefinition, Permission, PluginAssets
from bastion.plugins.registry import CORE, PluginRegistry
from bastion.runtime import Platform
from bastion.web.theming import install_template_loader

T = TypeVar("T")
# Application-wide handler tables a blueprint can add to: they would run for every
# request whether or not the plugin is enabled, so a plugin may not touch them.
APP_WIDE_TABLES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "template_context_processors",
    "url_value_preprocessors",
    "url_default_functions",
    "error_handler_spec",
)


def _contributions(
    registry: PluginRegistry, hook: str, kind: type[T], *, many: bool = True
) -> list[tuple[str, T]]:
    if many:
        return registry.call_list(hook, None, strict=True, kind=kind)
    return registry.checked(registry.call(hook, None, strict=True), kind, hook, True)


def _copy(value: Any) -> Any:
    """Copy the containers, keep the handlers themselves (they are compared by identity)."""
    if isinstance(value, defaultdict):  # Flask's error handler tables are defaultdicts
        return defaultdict(value.default_factory, {k: _copy(v) for k, v in value.items()})
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


def _app_wide_state(app: Flask) -> dict[str, Any]:
    """A copy of everything a blueprint could add to the whole application."""
    env = app.jinja_env
    state: dict[str, Any] = {t: _copy(getattr(app, t).get(None)) for t in APP_WIDE_TABLES}
    state["jinja"] = (dict(env.filters), dict(env.tests), dict(env.globals))
    return state


def _app_wide_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    if any(before[table] != after[table] for table in APP_WIDE_TABLES):
        return True
    # Jinja globals hold proxies (request, session) that cannot be compared by value.
    return any(
        {k: id(v) for k, v in old.items()} != {k: id(v) for k, v in new.items()}
        for old, new in zip(before["jinja"], after["jinja"], strict=True)
    )


def _restore_app_wide_state(app: Flask, state: dict[str, Any]) -> None:
    for table in APP_WIDE_TABLES:
        handlers = getattr(app, table)
        if state[table] is None:
            handlers.pop(None, None)
        else:
            handlers[None] = state[table]
    env = app.jinja_env
    for current, saved in zip((env.filters, env.tests, env.globals), state["jinja"], strict=True):
        current.clear()
        current.update(saved)


def _blueprint_problem(owner: str, blueprint: Blueprint) -> str | None:
    prefixes = {f"/{owner}", f"/{owner.replace('_', '-')}"}
    if blueprint.name != owner and not blueprint.name.startswith(f"{owner}_"):
        return f"Its blueprint {blueprint.name!r} must be named {owner!r} or {owner + '_...'!r}."
    if (blueprint.url_prefix or "").rstrip("/") not in prefixes:
        return f"Its blueprint {blueprint.name!r} must have url_prefix {sorted(prefixes)[0]!r}."
    if blueprint.template_folder:
        return "Its blueprint has a template folder; declare templates with register_assets."
    return None


def _register_blueprints(app: Flask, plat: Platform) -> None:
    registry = plat.registry
    for owner, blueprint in _contributions(registry, "register_blueprints", Blueprint):
        problem = _blueprint_problem(owner, blueprint) if owner != CORE else None
        if problem:
            registry.record_failure(owner, "register_blueprints", problem, None, broken=True)
            continue
        before = _app_wide_state(app)
        try:
            app.register_blueprint(blueprint)
        except Exception as exc:  # a name clash with another blueprint
            registry.record_failure(
                owner, "register_blueprints", f"{type(exc).__name__}: {exc}", exc, broken=True
            )
            continue
        plat.blueprint_owner[blueprint.name] = owner
        if _app_wide_changed(before, _app_wide_state(app)):
            _restore_app_wide_state(app, before)
            message = (
                "Its blueprint registers application-wide handlers (before_app_request, "
                "app_errorhandler, app_template_filter, ...), which would run while it is "
                "disabled."
            )
            registry.record_failure(owner, "register_blueprints", message, None, broken=True)


def _register_assets(app: Flask, plat: Platform) -> None:
    registry = plat.registry
    template_folders: dict[str, str] = {}
    for owner, assets in _contributions(registry, "register_assets", PluginAssets, many=False):
        if (assets.stylesheets or assets.scripts) and not assets.static:
            message = "It lists stylesheets or scripts but no static folder to serve them from."
            registry.record_failure(owner, "register_assets", message, None, broken=True)
            continue
        if assets.templates:
            template_folders[owner] = str(assets.templates)
        if assets.static:
            plat.plugin_static[owner] = str(assets.static)
            plat.plugin_stylesheets += [(owner, name) for name in assets.stylesheets]
            plat.plugin_scripts += [(owner, name) for name in assets.scripts]
    install_template_loader(app, template_folders)


def _core_first(pairs: list[tuple[str, T]], enabled: set[str]) -> list[tuple[str, T]]:
    """The core, then plugins already enabled, then by name: who keeps a clashing name."""
    return sorted(pairs, key=lambda pair: (pair[0] != CORE, pair[0] not in enabled, pair[0]))


def _register_permissions(plat: Platform, enabled: set[str]) -> None:
    registry = plat.registry
    declared = _core_first(_contributions(registry, "register_permissions", Permission), enabled)
    for owner, permission in declared:
        taken = plat.permissions.get(permission.name)
        if owner != CORE and not permission.name.startswith(f"{owner}."):
            message = f"Permission {permission.name!r} must start with {owner + '.'!r}."
        elif taken is not None and taken[0] != owner:
            message = f"Permission {permission.name!r} is already defined by {taken[0]}."
        else:
            plat.permissions[permission.name] = (owner, permission)
            continue
        registry.record_failure(owner, "register_permissions", message, None, broken=True)


def _register_objects(plat: Platform, enabled: set[str]) -> None:
    # On a clash installing a new plugin never breaks a working one.
    registry = plat.registry
    declared = _core_first(_contributions(registry, "register_objects", ObjectDefinition), enabled)
    for owner, definition in declared:
        clash = plat.objects.get(definition.name)
        if clash is not None and clash[0] != owner:
            message = f"The object {definition.name!r} is already declared by {clash[0]}."
            registry.record_failure(owner, "register_objects", message, None, broken=True)
            continue
        plat.objects[definition.name] = (owner, definition)


def register_plugins(app: Flask, plat: Platform) -> None:
    """Run the registration hooks (inside an application context)."""
    enabled = state.stored_enabled_or_none()
    _register_blueprints(app, plat)
    _register_assets(app, plat)
    _register_permissions(plat, enabled)
    _register_objects(plat, enabled)
