"""A plugin stays inside its own namespace: routes, templates, permissions, app-wide code.

Each test installs a small in-memory plugin (registered through a real entry point) that
tries to reach beyond its namespace, and shows the attempt is refused or contained while
the core and the administrator keep working.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest

import bastion
from bastion.api import (
    Blueprint,
    NavItem,
    Permission,
    PluginAssets,
    PluginManifest,
    hookimpl,
    login_required,
)
from bastion.plugins.registry import ENTRY_POINT_GROUP, PluginRegistry
from bastion.runtime import platform
from tests.conftest import dispose, make_app, sign_in
from tests.core.plugins_platform.support import set_enabled


@pytest.fixture
def install(settings, monkeypatch) -> Iterator[Callable[..., object]]:
    """install(name, enabled=False, **hooks) -> an initialized app with that plugin."""
    apps = []

    def build(name: str, *, enabled_by_default: bool = False, **hooks: Callable):
        module = types.ModuleType(f"bastion_{name}")
        module.manifest = PluginManifest(  # type: ignore[attr-defined]
            label=name.title(), enabled_by_default=enabled_by_default
        )
        for hook_name, function in hooks.items():
            setattr(module, hook_name, hookimpl(function))
        monkeypatch.setitem(sys.modules, module.__name__, module)
        registry = PluginRegistry(bastion.__version__)
        registry.discover(
            [
                *metadata.entry_points(group=ENTRY_POINT_GROUP),
                metadata.EntryPoint(name, module.__name__, ENTRY_POINT_GROUP),
            ]
        )
        app = make_app(settings, registry=registry)
        apps.append(app)
        return app

    yield build
    for app in apps:
        dispose(app)


def signed_in(app):
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def test_a_disabled_plugins_blueprint_handlers_never_see_its_requests(install):
    ran: list[str] = []
    bp = Blueprint("quiet", __name__, url_prefix="/quiet")

    @bp.get("/")
    @login_required
    def page():
        ran.append("view")
        return "quiet page"

    @bp.url_value_preprocessor
    def preprocess(endpoint, values):
        ran.append("url_value_preprocessor")

    @bp.before_request
    def before():
        ran.append("before_request")

    @bp.after_request
    def after(response):
        ran.append("after_request")
        response.headers["X-Quiet"] = "1"
        return response

    @bp.errorhandler(404)
    def not_found(error):
        ran.append("errorhandler")
        return "the plugin's own 404 page", 200

    app = install("quiet", register_blueprints=lambda: [bp])
    client = signed_in(app)
    response = client.get("/quiet/")
    assert response.status_code == 404
    assert "X-Quiet" not in response.headers
    assert "the plugin" not in response.get_data(as_text=True)
    assert ran == []

    set_enabled(app, "quiet")
    assert client.get("/quiet/").status_code == 200
    assert ran == ["url_value_preprocessor", "before_request", "view", "after_request"]


def test_application_wide_handlers_make_a_plugin_broken_and_never_run(install):
    ran: list[str] = []
    bp = Blueprint("loud", __name__, url_prefix="/loud")

    @bp.before_app_request
    def everywhere():
        ran.append("before_app_request")

    app = install("loud", enabled_by_default=True, register_blueprints=lambda: [bp])
    registry = platform(app).registry
    assert "application-wide handlers" in registry.plugins["loud"].error
    assert signed_in(app).get("/").status_code == 200
    assert ran == []


def test_a_plugin_cannot_take_a_core_name(install):
    def hijack():
        return [Permission("admin.plugins", "Hijacked"), Permission("admin.access", "Hijacked")]

    app = install("admin", enabled_by_default=True, register_permissions=hijack)
    registry = platform(app).registry
    assert registry.plugins["admin"].error == "The name 'admin' is reserved for Bastion's core."
    assert {platform(app).permissions[p][0] for p in ("admin.plugins", "admin.access")} == {"core"}
    assert signed_in(app).get("/admin/plugins").status_code == 200


@pytest.mark.parametrize(
    ("prefix", "name"), [("/admin", "shadow"), ("/", "shadow"), ("/shadow", "admin_tools")]
)
def test_a_plugin_route_outside_its_prefix_is_refused(install, prefix, name):
    bp = Blueprint(name, __name__, url_prefix=prefix)

    @bp.post("/plugins/<plugin>/<action>")
    @login_required
    def intercept(plugin, action):
        return "intercepted"

    app = install("shadow", enabled_by_default=True, register_blueprints=lambda: [bp])
    assert platform(app).registry.plugins["shadow"].error.startswith("Its blueprint")
    assert not any(rule.endpoint.startswith(f"{name}.") for rule in app.url_map.iter_rules())
    client = signed_in(app)
    page = client.get("/admin/plugins").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/admin/plugins/status/disable", data={"csrf_token": token})
    assert response.status_code == 302  # the core's own action still answers


def test_plugin_templates_cannot_replace_core_templates(install, tmp_path: Path):
    folder = tmp_path / "templates"
    (folder / "core").mkdir(parents=True)
    (folder / "core" / "login.html").write_text("PHISHING PAGE")
    (folder / "mimic").mkdir()
    (folder / "mimic" / "card.html").write_text("the plugin's own template")
    app = install(
        "mimic",
        enabled_by_default=True,
        register_assets=lambda: PluginAssets(templates=folder),
    )
    assert "PHISHING PAGE" not in app.test_client().get("/login").get_data(as_text=True)
    with app.test_request_context():
        assert app.jinja_env.get_template("mimic/card.html").render() == (
            "the plugin's own template"
        )


def test_a_malformed_navigation_item_is_dropped_not_fatal(install):
    def navigation_items(user):
        return [{"label": "not a NavItem"}, NavItem("Fine", "home.dashboard", order=5)]

    app = install("sloppy", enabled_by_default=True, navigation_items=navigation_items)
    client = signed_in(app)
    for path in ("/", "/admin/plugins", "/status/"):
        assert client.get(path).status_code == 200
    assert ">Fine<" in client.get("/").get_data(as_text=True)
    messages = [f.message for f in platform(app).registry.recent_failures() if f.plugin == "sloppy"]
    assert "It returned a dict where a NavItem belongs." in messages


def test_a_navigation_item_with_a_bad_field_is_refused_where_it_is_made(install):
    def navigation_items(user):
        return [NavItem("Odd", "home.dashboard", order="first")]  # type: ignore[arg-type]

    app = install("odd", enabled_by_default=True, navigation_items=navigation_items)
    assert signed_in(app).get("/").status_code == 200
    messages = [f.message for f in platform(app).registry.recent_failures() if f.plugin == "odd"]
    assert messages == ["ContributionError: NavItem 'Odd': order must be an integer."]


def test_a_hook_that_does_not_exist_makes_the_plugin_broken(install):
    app = install("typo", enabled_by_default=True, navigaton_items=lambda user: [])
    assert platform(app).registry.plugins["typo"].error == (
        "It implements navigaton_items, which Bastion does not define."
    )


def test_an_app_wide_error_handler_is_undone_and_error_pages_still_work(install):
    bp = Blueprint("grabby", __name__, url_prefix="/grabby")

    @bp.app_errorhandler(404)
    def everyones_404(error):
        return "the plugin's 404 for everyone", 404

    @bp.app_template_filter("shout")
    def shout(text):
        return text.upper()

    app = install("grabby", enabled_by_default=True, register_blueprints=lambda: [bp])
    assert "application-wide handlers" in platform(app).registry.plugins["grabby"].error
    response = app.test_client().get("/no/such/page")
    assert response.status_code == 404
    assert "the plugin" not in response.get_data(as_text=True)
    assert "There is nothing at this address" in response.get_data(as_text=True)
    assert "shout" not in app.jinja_env.filters
    assert app.test_client().get("/api/nothing").mimetype == "application/problem+json"


def test_start_up_runs_once_and_before_any_request_reaches_the_plugin(install):
    started: list[str] = []
    bp = Blueprint("slow", __name__, url_prefix="/slow")

    @bp.get("/")
    @login_required
    def page():
        return "ready" if started == ["done"] else "not started"

    def startup(app):
        time.sleep(0.2)  # a slow start-up: concurrent first requests must wait for it
        started.append("done")

    app = install(
        "slow", enabled_by_default=True, register_blueprints=lambda: [bp], startup=startup
    )
    clients = [signed_in(app) for _ in range(6)]
    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(lambda c: c.get("/slow/").get_data(as_text=True), clients))
    assert answers == ["ready"] * len(clients)
    assert started == ["done"]


def test_a_failed_start_up_leaves_the_plugin_broken_in_that_process(install):
    bp = Blueprint("fragile", __name__, url_prefix="/fragile")

    @bp.get("/")
    @login_required
    def fragile_page():
        return "should not be served"

    def startup(app):
        raise RuntimeError("the licence server is unreachable")

    app = install(
        "fragile", enabled_by_default=True, register_blueprints=lambda: [bp], startup=startup
    )
    # The very first request of the process is the plugin's own page.
    assert app.test_client().get("/fragile/").status_code == 404
    client = signed_in(app)
    assert client.get("/fragile/").status_code == 404
    plugin = platform(app).registry.plugins["fragile"]
    assert plugin.error == "RuntimeError: the licence server is unreachable"
    page = client.get("/admin/plugins").get_data(as_text=True)
    assert "the licence server is unreachable" in page
    # Broken but still enabled in the database: it can be switched off, never on.
    assert "/admin/plugins/fragile/disable" in page
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/admin/plugins/fragile/disable", data={"csrf_token": token})
    assert response.status_code == 302
    page = client.get("/admin/plugins").get_data(as_text=True)
    assert "/admin/plugins/fragile/enable" not in page
    assert "/admin/plugins/fragile/disable" not in page


def test_a_hook_wrapper_makes_the_plugin_broken(monkeypatch):
    def navigation_items(user):
        return (yield)

    module = types.ModuleType("bastion_wrapping")
    module.manifest = PluginManifest(label="Wrapping")  # type: ignore[attr-defined]
    module.navigation_items = hookimpl(wrapper=True)(navigation_items)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry = PluginRegistry(bastion.__version__)
    registry.discover([metadata.EntryPoint("wrapping", module.__name__, ENTRY_POINT_GROUP)])
    assert registry.plugins["wrapping"].error == (
        "It implements navigation_items as a wrapper; Bastion hooks take none."
    )
    assert registry.pm.get_plugin("wrapping") is None
