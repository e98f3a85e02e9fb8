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
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from bastion.data.definitions import RESERVED_OBJECTS
from bastion.plugins import state
from bastion.plugins.contributions import ObjectDefinition, Permission, PluginAssets
from bastion.plugins.registry import CORE, PluginRegistry
from bastion.runtime import Platform
from bastion.web.theming import install_template_loader

T = TypeVar("T")
#: Where the core's REST API lives; a plugin's <plugin>_api blueprint joins it there.
API_PREFIX = "/api/v1"
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


def _is_api_blueprint(owner: str, blueprint: Blueprint) -> bool:
    """A plugin's REST API: named <plugin>_api, under the core API's /api/v1."""
    return (
        owner != CORE
        and blueprint.name == f"{owner}_api"
        and (blueprint.url_prefix or "").rstrip("/") == API_PREFIX
    )


#: Paths (under /api/v1/<object>) the core's generic record routes answer for every
#: object: list and create, one record, its history, merge, export. A plugin's API rule
#: matching one of them could take it over (Werkzeug prefers the rule with more fixed
#: parts), so such a rule is refused and the core's routes keep serving the object.
CORE_API_SAMPLES = ("", "/1", "/1/history", "/1/merge", "/export")
_SAMPLE_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def _dry_run_rules(app: Flask, blueprint: Blueprint) -> tuple[Flask | None, str | None]:
    """Register the blueprint on a throwaway application and return it.

    Every URL rule the registration adds (including those a deferred ``bp.record``
    function adds to ``state.app`` directly) lands there, exactly as Flask builds it, and
    nothing reaches the real application when the blueprint is refused. The throwaway
    application has no static folder, so each of its rules comes from the blueprint.
    """
    dry_run = Flask(__name__, static_folder=None)
    dry_run.url_map.converters.update(app.url_map.converters)
    try:
        dry_run.register_blueprint(blueprint)
    except Exception as exc:
        return None, f"Its blueprint cannot be registered: {type(exc).__name__}: {exc}."
    return dry_run, None


def _foreign_endpoint(dry_run: Flask, blueprint: Blueprint) -> str | None:
    """A rule whose endpoint is not the blueprint's: it would escape the 404 gate."""
    for rule in dry_run.url_map.iter_rules():
        if not rule.endpoint.startswith(f"{blueprint.name}."):
            return (
                f"Its blueprint {blueprint.name!r} adds the route {rule.rule!r} with endpoint "
                f"{rule.endpoint!r}; every endpoint must start with {blueprint.name + '.'!r}."
            )
    return None


def _shadows_core_route(dry_run: Flask, name: str) -> str | None:
    adapter = dry_run.url_map.bind("localhost")
    for sample in CORE_API_SAMPLES:
        path = f"{API_PREFIX}/{name}{sample}"
        for method in _SAMPLE_METHODS:
            try:
                adapter.match(path, method=method)
            except NotFound:
                continue
            except (MethodNotAllowed, RequestRedirect):
                pass  # the path matches one of its rules all the same
            return path
    return None


def _api_rule_problem(app: Flask, plat: Platform, owner: str, blueprint: Blueprint) -> str | None:
    """Each URL of a plugin's API blueprint must lie under /api/v1/<its object>/, and
    none may answer a path the core's generic record routes serve."""
    # A reserved name (meta, users, tokens, ...) never counts: its URLs are the core's.
    objects = sorted(
        name
        for name, (who, _) in plat.objects.items()
        if who == owner and name not in RESERVED_OBJECTS
    )
    dry_run, problem = _dry_run_rules(app, blueprint)
    if dry_run is None:
        return problem
    problem = _foreign_endpoint(dry_run, blueprint)
    if problem:
        return problem
    for rule in dry_run.url_map.iter_rules():
        if not any(rule.rule.startswith(f"{API_PREFIX}/{name}/") for name in objects):
            where = ", ".join(f"{API_PREFIX}/{name}/" for name in objects) or "(none declared)"
            return (
                f"Its API route {rule.rule!r} must lie under {API_PREFIX}/<an object it "
                f"declares>/: {where}."
            )
    for name in objects:
        shadowed = _shadows_core_route(dry_run, name)
        if shadowed:
            return (
                f"Its API routes would answer {shadowed}, which the core's record API serves; "
                "use a path of its own, such as /api/v1/<object>/<int:id>/<action>."
            )
    return None


def _page_rule_problem(app: Flask, owner: str, blueprint: Blueprint) -> str | None:
    """Each URL of a plugin's page blueprint must lie under /<plugin>/ (or /<plu-gin>/)."""
    dry_run, problem = _dry_run_rules(app, blueprint)
    if dry_run is None:
        return problem
    problem = _foreign_endpoint(dry_run, blueprint)
    if problem:
        return problem
    prefixes = {f"/{owner}", f"/{owner.replace('_', '-')}"}
    for rule in dry_run.url_map.iter_rules():
        if not any(rule.rule == p or rule.rule.startswith(f"{p}/") for p in prefixes):
            return f"Its route {rule.rule!r} must lie under {sorted(prefixes)[0]}/."
    return None


def _blueprint_problem(owner: str, blueprint: Blueprint) -> str | None:
    prefixes = {f"/{owner}", f"/{owner.replace('_', '-')}"}
    if blueprint.name != owner and not blueprint.name.startswith(f"{owner}_"):
        return f"Its blueprint {blueprint.name!r} must be named {owner!r} or {owner + '_...'!r}."
    if blueprint.template_folder:
        return "Its blueprint has a template folder; declare templates with register_assets."
    if _is_api_blueprint(owner, blueprint):
        return None  # its routes are checked by _api_rule_problem
    if (blueprint.url_prefix or "").rstrip("/") not in prefixes:
        return f"Its blueprint {blueprint.name!r} must have url_prefix {sorted(prefixes)[0]!r}."
    return None


def _answer_errors_as_problems(blueprint: Blueprint) -> None:
    from bastion.web.api_records import BodyError, RecordError, answer_errors_as_problems

    handlers = blueprint.error_handler_spec.get(None, {}).get(None, {})
    if RecordError in handlers or BodyError in handlers:
        return  # done when an earlier application registered it (a blueprint is shared)
    answer_errors_as_problems(blueprint)


def _register_blueprints(app: Flask, plat: Platform) -> None:
    registry = plat.registry
    for owner, blueprint in _contributions(registry, "register_blueprints", Blueprint):
        problem = _blueprint_problem(owner, blueprint) if owner != CORE else None
        if problem is None and _is_api_blueprint(owner, blueprint):
            # Record errors become problem details, as on the core's API.
            _answer_errors_as_problems(blueprint)
            problem = _api_rule_problem(app, plat, owner, blueprint)
        elif problem is None and owner != CORE:
            problem = _page_rule_problem(app, owner, blueprint)
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
        if owner != CORE and definition.name in RESERVED_OBJECTS:
            # /api/v1/meta, /api/v1/users, ... are the core's: an object there would
            # hand its API routes to the plugin.
            message = f"The object name {definition.name!r} is reserved by the core."
            registry.record_failure(owner, "register_objects", message, None, broken=True)
            continue
        if clash is not None and clash[0] != owner:
            message = f"The object {definition.name!r} is already declared by {clash[0]}."
            registry.record_failure(owner, "register_objects", message, None, broken=True)
            continue
        plat.objects[definition.name] = (owner, definition)


def register_plugins(app: Flask, plat: Platform) -> None:
    """Run the registration hooks (inside an application context)."""
    enabled = state.stored_enabled_or_none()
    # Objects first: a plugin's API routes must lie under the objects it owns.
    _register_objects(plat, enabled)
    _register_blueprints(app, plat)
    _register_assets(app, plat)
    _register_permissions(plat, enabled)
