"""Start-up registration: every installed plugin's routes, assets, permissions and objects.

These hooks run once per process for every installed plugin, enabled or not, so a
disabled plugin's routes exist (answering 404) and its data keeps its tables. A plugin
that fails here, or returns the wrong kind of thing, is marked broken and cannot be
enabled; the others carry on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from flask import Blueprint, Flask
from sqlalchemy.exc import SQLAlchemyError

from bastion.db import db
from bastion.plugins import state
from bastion.plugins.contributions import ObjectDefinition, Permission, PluginAssets
from bastion.plugins.registry import CORE, PluginRegistry
from bastion.runtime import Platform
from bastion.web.theming import install_template_loader

T = TypeVar("T")


def _contributions(
    registry: PluginRegistry, hook: str, kind: type[T], *, many: bool = True, **kwargs: Any
) -> Iterator[tuple[str, T]]:
    call = registry.call_list if many else registry.call
    for owner, item in call(hook, None, registering=True, **kwargs):
        if isinstance(item, kind):
            yield owner, item
        else:
            registry.fail(
                owner,
                hook,
                f"It returned a {type(item).__name__} where a {kind.__name__} belongs.",
                None,
                broken=True,
            )


def _stored_enabled() -> set[str]:
    try:
        return state.stored_enabled()
    except SQLAlchemyError:  # before `bastion init` there is no state to read
        db.session.rollback()
        return set()


def register_plugins(app: Flask, plat: Platform) -> None:
    registry = plat.registry

    for owner, blueprint in _contributions(registry, "register_blueprints", Blueprint, app=app):
        try:
            app.register_blueprint(blueprint)
        except Exception as exc:  # a name or URL clash with another blueprint
            registry.fail(owner, "register_blueprints", f"{type(exc).__name__}: {exc}", exc, True)
            continue
        plat.blueprint_owner[blueprint.name] = owner

    template_dirs: list[str] = []
    for owner, assets in _contributions(registry, "register_assets", PluginAssets, many=False):
        if (assets.stylesheets or assets.scripts) and not assets.static:
            message = "It lists stylesheets or scripts but no static folder to serve them from."
            registry.fail(owner, "register_assets", message, None, True)
            continue
        if assets.templates:
            template_dirs.append(str(assets.templates))
        if assets.static:
            plat.plugin_static[owner] = str(assets.static)
            plat.plugin_stylesheets += [(owner, name) for name in assets.stylesheets]
            plat.plugin_scripts += [(owner, name) for name in assets.scripts]
    install_template_loader(app, template_dirs)

    for owner, permission in _contributions(registry, "register_permissions", Permission):
        # A plugin may only define permissions in its own namespace, never the core's.
        if owner != CORE and not permission.name.startswith(f"{owner}."):
            message = f"Permission {permission.name!r} must start with {owner + '.'!r}."
            registry.fail(owner, "register_permissions", message, None, True)
            continue
        plat.permissions[permission.name] = (owner, permission)

    # On a name clash the core, then a plugin already enabled, keeps the object: installing
    # a new plugin never breaks a working one. Otherwise the plugin name decides.
    enabled = _stored_enabled()
    declared = sorted(
        _contributions(registry, "register_objects", ObjectDefinition),
        key=lambda pair: (pair[0] != CORE, pair[0] not in enabled, pair[0]),
    )
    for owner, definition in declared:
        clash = plat.objects.get(definition.name)
        if clash is not None and clash[0] != owner:
            message = f"The object {definition.name!r} is already declared by {clash[0]}."
            registry.fail(owner, "register_objects", message, None, True)
            continue
        plat.objects[definition.name] = (owner, definition)
