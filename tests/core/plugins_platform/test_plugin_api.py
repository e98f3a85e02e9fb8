"""A plugin's REST API: a `<plugin>_api` blueprint under /api/v1/<its own objects>/.

Its routes get the core API's behaviour: bearer tokens (with their scopes) and signed-in
reads, record errors as problem details, 404 while the plugin is disabled. A route
under an object the plugin does not own breaks the plugin and is never added.
"""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest
from flask import Blueprint, jsonify

import bastion
from bastion.api import (
    FieldDefinition,
    ObjectDefinition,
    Permission,
    PluginManifest,
    hookimpl,
    login_required,
    record_json,
    request,
    request_service,
    requires,
)
from bastion.data.records import RecordService
from bastion.plugins.registry import ENTRY_POINT_GROUP, PluginRegistry
from bastion.runtime import platform
from tests.conftest import ADMIN_EMAIL, dispose, make_app, sign_in
from tests.core.data.conftest import bearer
from tests.core.plugins_platform.support import set_enabled


def gadgets_module() -> types.ModuleType:
    """The `gadgets` plugin: object gadgets and its API under /api/v1/gadgets/."""
    module = types.ModuleType("bastion_gadgets")
    module.manifest = PluginManifest(label="Gadgets")
    api = Blueprint("gadgets_api", __name__, url_prefix="/api/v1")

    @api.get("/gadgets/<int:record_id>/summary")
    @login_required
    def summary(record_id: int):
        service = request_service()
        record = service.get("gadgets", record_id)
        return {"gadget": record_json(service, "gadgets", record), "doubled": 2 * record["size"]}

    @api.post("/gadgets/<int:record_id>/double")
    @login_required
    def double(record_id: int):
        service = request_service()
        record = service.get("gadgets", record_id)
        version = (request.get_json(silent=True) or {}).get("version", record.version)
        updated = service.update(
            "gadgets", record.id, {"size": 2 * record["size"]}, version=version
        )
        return jsonify(record_json(service, "gadgets", updated))

    @api.get("/gadgets/special")
    @requires("gadgets.special")
    def special():
        return {"special": True}

    @hookimpl
    def register_objects():
        return [
            ObjectDefinition(
                "gadgets",
                "Gadget",
                "Gadgets",
                name_field="name",
                fields=(
                    FieldDefinition("name", "text", "Name", required=True),
                    FieldDefinition("size", "integer", "Size", max_value=100),
                ),
            )
        ]

    @hookimpl
    def register_permissions():
        return [Permission("gadgets.special", "Special gadgets")]

    @hookimpl
    def register_blueprints():
        return [api]

    module.register_objects = register_objects
    module.register_permissions = register_permissions
    module.register_blueprints = register_blueprints
    return module


def poacher_module() -> types.ModuleType:
    """The `poacher` plugin: its API reaches into the core's accounts."""
    module = types.ModuleType("bastion_poacher")
    module.manifest = PluginManifest(label="Poacher")
    api = Blueprint("poacher_api", __name__, url_prefix="/api/v1")

    @api.get("/poached/<int:record_id>/fine")
    @login_required
    def fine(record_id: int):
        return {}

    @api.post("/accounts/<int:record_id>/steal")
    @login_required
    def steal(record_id: int):
        return {"stolen": record_id}

    @hookimpl
    def register_objects():
        return [ObjectDefinition("poached", "Poached", "Poached")]

    @hookimpl
    def register_blueprints():
        return [api]

    module.register_objects = register_objects
    module.register_blueprints = register_blueprints
    return module


@pytest.fixture
def api_app(settings, monkeypatch):
    entries = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    for name, module in (("gadgets", gadgets_module()), ("poacher", poacher_module())):
        monkeypatch.setitem(sys.modules, module.__name__, module)
        entries.append(metadata.EntryPoint(name, module.__name__, ENTRY_POINT_GROUP))
    registry = PluginRegistry(bastion.__version__)
    registry.discover(entries)
    app = make_app(settings, registry=registry)
    set_enabled(app, "gadgets")
    yield app
    dispose(app)


@pytest.fixture
def gadget(api_app):
    with api_app.test_request_context():
        return RecordService(None, system=True).create("gadgets", {"name": "Sprocket", "size": 7})


def test_plugin_api_routes_answer_with_a_token(api_app, gadget):
    client = api_app.test_client()
    headers = bearer(api_app, ADMIN_EMAIL)
    response = client.get(f"/api/v1/gadgets/{gadget.id}/summary", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["doubled"] == 14
    assert body["gadget"]["id"] == gadget.id and body["gadget"]["name"] == "Sprocket"
    assert body["gadget"]["version"] == gadget.version
    changed = client.post(f"/api/v1/gadgets/{gadget.id}/double", headers=headers, json={})
    assert changed.status_code == 200 and changed.get_json()["size"] == 14
    # The core's generic routes still serve the plugin's object.
    record = client.get(f"/api/v1/gadgets/{gadget.id}", headers=headers).get_json()
    assert record["size"] == 14
    history = client.get(f"/api/v1/gadgets/{gadget.id}/history", headers=headers)
    assert history.status_code == 200


def test_signed_in_sessions_read_but_do_not_write(api_app, gadget):
    client = api_app.test_client()
    assert sign_in(client).status_code == 302
    assert client.get(f"/api/v1/gadgets/{gadget.id}/summary").status_code == 200
    # As on the core's API, a cookie never authorizes a change.
    refused = client.post(f"/api/v1/gadgets/{gadget.id}/double", json={})
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    anonymous = api_app.test_client().get(f"/api/v1/gadgets/{gadget.id}/summary")
    assert anonymous.status_code == 401


def test_record_errors_become_problem_details(api_app, gadget):
    client = api_app.test_client()
    headers = bearer(api_app, ADMIN_EMAIL)
    missing = client.get("/api/v1/gadgets/999999/summary", headers=headers)
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert missing.get_json()["status"] == 404
    stale = client.post(
        f"/api/v1/gadgets/{gadget.id}/double", headers=headers, json={"version": 99}
    )
    assert stale.status_code == 409 and stale.mimetype == "application/problem+json"
    for _ in range(3):  # 7 -> 14 -> 28 -> 56
        assert (
            client.post(f"/api/v1/gadgets/{gadget.id}/double", headers=headers).status_code == 200
        )
    too_big = client.post(f"/api/v1/gadgets/{gadget.id}/double", headers=headers)
    assert too_big.status_code == 422
    problem = too_big.get_json()
    assert problem["status"] == 422 and set(problem["errors"]) == {"size"}


def test_token_scopes_apply_to_plugin_routes(api_app, gadget):
    client = api_app.test_client()
    reader = bearer(api_app, ADMIN_EMAIL, scopes=["gadgets:read"])
    assert client.get(f"/api/v1/gadgets/{gadget.id}/summary", headers=reader).status_code == 200
    refused = client.post(f"/api/v1/gadgets/{gadget.id}/double", headers=reader)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    # A permission the token was not given is not granted either.
    assert client.get("/api/v1/gadgets/special", headers=reader).status_code == 403
    full = bearer(api_app, ADMIN_EMAIL)
    assert client.get("/api/v1/gadgets/special", headers=full).get_json() == {"special": True}


def test_a_disabled_plugins_api_answers_404(api_app, gadget):
    set_enabled(api_app, "gadgets", enabled=False)
    client = api_app.test_client()
    headers = bearer(api_app, ADMIN_EMAIL)
    assert client.get(f"/api/v1/gadgets/{gadget.id}/summary", headers=headers).status_code == 404
    assert client.post(f"/api/v1/gadgets/{gadget.id}/double", headers=headers).status_code == 404
    assert client.get("/api/v1/gadgets/special", headers=headers).status_code == 404


def test_a_route_outside_the_plugins_objects_breaks_it_and_is_not_added(api_app):
    registry = platform(api_app).registry
    assert registry.plugins["gadgets"].usable
    error = registry.plugins["poacher"].error
    assert error is not None
    assert "/api/v1/accounts/<int:record_id>/steal" in error
    assert "/api/v1/poached/" in error
    rules = {rule.rule for rule in api_app.url_map.iter_rules()}
    assert "/api/v1/accounts/<int:record_id>/steal" not in rules
    assert "/api/v1/poached/<int:record_id>/fine" not in rules
    assert "poacher_api" not in api_app.blueprints
    headers = bearer(api_app, ADMIN_EMAIL)
    response = api_app.test_client().post("/api/v1/accounts/1/steal", headers=headers)
    assert response.status_code in (404, 405)


def _rogue(name: str, objects: tuple[str, ...], *blueprints: Blueprint) -> types.ModuleType:
    """A plugin declaring bare ``objects`` and returning ``blueprints``."""
    module = types.ModuleType(f"bastion_{name}")
    module.manifest = PluginManifest(label=name.title())

    @hookimpl
    def register_objects():
        return [ObjectDefinition(o, o.title(), o.title()) for o in objects]

    @hookimpl
    def register_blueprints():
        return list(blueprints)

    module.register_objects = register_objects
    module.register_blueprints = register_blueprints
    return module


def _view(**_kwargs):
    return {"taken": True}


def rogue_modules() -> list[types.ModuleType]:
    # An object named after a core API path (/api/v1/meta/...).
    hijack = Blueprint("hijack_api", __name__, url_prefix="/api/v1")
    hijack.add_url_rule("/meta/contacts", "contacts", _view)
    # Deferred functions add rules to the application directly, past the blueprint.
    sneaky = Blueprint("sneaky_api", __name__, url_prefix="/api/v1")
    sneaky.add_url_rule("/sneakies/<int:record_id>/fine", "fine", _view)
    sneaky.record(lambda s: s.app.add_url_rule("/api/v1/sneakies/<int:id>/grab", "grab", _view))
    page = Blueprint("sneakypage", __name__, url_prefix="/sneakypage")
    page.add_url_rule("/fine", "fine", _view)
    page.record(lambda s: s.app.add_url_rule("/login-help", "sneakypage.grab", _view))
    # Rules that would answer the core's own record routes for the plugin's object.
    shadow = Blueprint("shadow_api", __name__, url_prefix="/api/v1")
    shadow.add_url_rule("/shadows/<int:record_id>", "one", _view, methods=["GET"])
    shadow_path = Blueprint("shadowpath_api", __name__, url_prefix="/api/v1")
    shadow_path.add_url_rule("/shadowpaths/<path:rest>", "rest", _view, methods=["POST"])
    # An API blueprint may not bring its own template folder either.
    templated = Blueprint(
        "templated_api", __name__, url_prefix="/api/v1", template_folder="templates"
    )
    templated.add_url_rule("/templateds/<int:record_id>/fine", "fine", _view)
    return [
        _rogue("hijack", ("meta",), hijack),
        _rogue("sneaky", ("sneakies",), sneaky),
        _rogue("sneakypage", (), page),
        _rogue("shadow", ("shadows",), shadow),
        _rogue("shadowpath", ("shadowpaths",), shadow_path),
        _rogue("templated", ("templateds",), templated),
    ]


@pytest.fixture
def rogue_app(settings, monkeypatch):
    entries = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    for module in (gadgets_module(), *rogue_modules()):
        monkeypatch.setitem(sys.modules, module.__name__, module)
        name = module.__name__.removeprefix("bastion_")
        entries.append(metadata.EntryPoint(name, module.__name__, ENTRY_POINT_GROUP))
    registry = PluginRegistry(bastion.__version__)
    registry.discover(entries)
    app = make_app(settings, registry=registry)
    set_enabled(app, "gadgets")
    yield app
    dispose(app)


def test_rogue_routes_break_their_plugin_and_are_never_added(rogue_app):
    plugins = platform(rogue_app).registry.plugins
    errors = {name: plugins[name].error or "" for name in plugins}
    assert "'meta' is reserved" in errors["hijack"]
    assert "endpoint 'grab'" in errors["sneaky"]
    assert "'/login-help' must lie under /sneakypage/" in errors["sneakypage"]
    assert "/api/v1/shadows/1" in errors["shadow"]
    assert "/api/v1/shadowpaths" in errors["shadowpath"]
    assert "template folder" in errors["templated"]
    rules = {rule.rule for rule in rogue_app.url_map.iter_rules()}
    for rule in (
        "/api/v1/meta/contacts",
        "/api/v1/sneakies/<int:id>/grab",
        "/login-help",
        "/api/v1/shadows/<int:record_id>",
        "/api/v1/shadowpaths/<path:rest>",
        "/api/v1/templateds/<int:record_id>/fine",
    ):
        assert rule not in rules
    # The well-behaved plugins are untouched, the bundled sales plugin's routes (under
    # /api/v1/leads/<int:id>/convert, /api/v1/opportunities/forecast, ...) among them.
    assert plugins["gadgets"].usable
    registration = ("register_objects", "register_blueprints")
    failures = platform(rogue_app).registry.failures_by_plugin()
    assert [f.message for f in failures.get("sales", []) if f.stage in registration] == []
    headers = bearer(rogue_app, ADMIN_EMAIL)
    client = rogue_app.test_client()
    assert client.get("/api/v1/meta", headers=headers).status_code == 200
    assert client.get("/api/v1/meta/contacts", headers=headers).get_json().get("taken") is None
    assert client.get("/api/v1/sneakies/1/grab", headers=headers).status_code == 404
    assert "taken" not in client.get("/login-help").get_data(as_text=True)
