"""Every hook in bastion/plugins/hookspecs.py, exercised through what it changes.

The third-party `example` plugin implements every hook; each ``test_hook_<name>`` below
shows that hook's contribution appearing while the plugin is enabled and, for the hooks
that are called per request, vanishing while it is disabled. Two meta-tests keep the
list complete: every hookspec needs a ``test_hook_<name>`` somewhere under tests/ and a
documented section in docs/plugins.md.
"""

from __future__ import annotations

import re
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
from sqlalchemy import select

import bastion
from bastion.api import ObjectDefinition, PluginManifest, hookimpl
from bastion.app import create_app
from bastion.db import db
from bastion.models import Role
from bastion.plugins import hookspecs
from bastion.plugins.registry import ENTRY_POINT_GROUP, PluginRegistry
from bastion.provision import load_demo
from bastion.runtime import platform
from tests.conftest import ADMIN_PASSWORD, FAST_HASHING, dispose, make_app, sign_in
from tests.core.plugins_platform.support import (
    add_user,
    admin_states,
    nav_links,
    parse,
    probe,
    set_enabled,
    site_nav,
    stylesheets,
    text,
)

ROOT = Path(__file__).resolve().parents[3]
TESTS = ROOT / "tests"
DOCS = ROOT / "docs" / "plugins.md"
EXAMPLE_CSS = "/static/plugins/example/example.css"


def hook_names() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, marker)
    )


def example_module(app):
    return platform(app).registry.plugins["example"].module


# -- one test per hook ---------------------------------------------------------------


def test_hook_register_blueprints(plugin_app, plugin_admin):
    # Registered at start-up even while disabled, so enabling needs no restart...
    assert "example.page" in plugin_app.view_functions
    assert platform(plugin_app).blueprint_owner["example"] == "example"
    # ...but a disabled plugin's routes do not exist.
    assert plugin_admin.get("/example/").status_code == 404
    set_enabled(plugin_app, "example")
    response = plugin_admin.get("/example/")
    assert response.status_code == 200
    assert "Example plugin page" in text(response)
    assert plugin_admin.get("/example/missing").status_code == 404


def test_hook_register_assets(plugin_app, plugin_admin):
    set_enabled(plugin_app, "example")
    # The template folder: the plugin's page and widget render from it.
    assert parse(text(plugin_admin.get("/example/"))).find("p", class_="example-page")
    # The static folder, with its stylesheet linked from every page, signed in or not.
    for page in ("/", "/admin/plugins", "/example/"):
        assert EXAMPLE_CSS in stylesheets(text(plugin_admin.get(page))), page
    visitor = plugin_app.test_client()
    assert EXAMPLE_CSS in stylesheets(text(visitor.get("/login")))
    css = visitor.get(EXAMPLE_CSS)
    assert css.status_code == 200
    assert css.mimetype == "text/css"
    assert b"bastion-example-css" in css.data
    assert visitor.get("/static/plugins/example/missing.css").status_code == 404
    assert visitor.get("/static/plugins/nonexistent/example.css").status_code == 404

    set_enabled(plugin_app, "example", enabled=False)
    assert EXAMPLE_CSS not in stylesheets(text(visitor.get("/login")))
    assert visitor.get(EXAMPLE_CSS).status_code == 404


def test_hook_register_permissions(plugin_app, plugin_admin):
    owner, permission = platform(plugin_app).permissions["example.view"]
    assert owner == "example"
    assert permission.label == "See example things"

    add_user(plugin_app, "viewer@example.com", "example_viewers", ["example.view"])
    add_user(plugin_app, "other@example.com", "others", ["audit.view"])
    viewer, other = plugin_app.test_client(), plugin_app.test_client()
    assert sign_in(viewer, "viewer@example.com").status_code == 302
    assert sign_in(other, "other@example.com").status_code == 302

    set_enabled(plugin_app, "example")
    assert viewer.get("/example/").status_code == 200
    assert other.get("/example/").status_code == 403  # deny by default
    assert probe(viewer)["permissions"] == ["example.view"]
    assert "example.view" in probe(plugin_admin)["permissions"]  # "*" covers it

    set_enabled(plugin_app, "example", enabled=False)
    assert probe(viewer)["permissions"] == []
    assert "example.view" not in probe(plugin_admin)["permissions"]


def test_hook_register_objects(plugin_app):
    # Declared at start-up for every installed plugin: the data model keeps the tables of
    # a disabled plugin, so its records stay put.
    owner, definition = platform(plugin_app).objects["example_things"]
    assert owner == "example"
    assert definition.label_plural == "Example things"
    assert definition.name_field == "name"
    assert [(f.name, f.type) for f in definition.fields] == [
        ("name", "text"),
        ("size", "integer"),
        ("colour", "picklist"),
    ]
    assert definition.fields[0].required
    assert definition.fields[2].options == ("red", "green", "blue")
    with plugin_app.app_context():
        assert "example" not in platform(plugin_app).enabled_plugins()


def _system_records(app):
    from bastion.data.records import RecordService

    return RecordService(None, system=True)


def test_declared_objects_get_their_table_while_disabled(plugin_app):
    from sqlalchemy import inspect

    from bastion.db import db

    with plugin_app.app_context():
        columns = {c["name"] for c in inspect(db.engine).get_columns("obj_example_things")}
    assert {"id", "owner", "version", "name", "size", "colour"} <= columns


def test_hook_record_changing(plugin_app):
    from bastion.data.errors import ValidationFailed

    module = example_module(plugin_app)
    with plugin_app.test_request_context():
        # Disabled: its hook is not called, so nothing is refused or adjusted.
        thing = _system_records(plugin_app).create("example_things", {"name": " big ", "size": 500})
        assert thing["name"] == "big"
    set_enabled(plugin_app, "example")
    with plugin_app.test_request_context():
        records = _system_records(plugin_app)
        with pytest.raises(ValidationFailed) as refused:
            records.create("example_things", {"name": "huge", "size": module.MAX_SIZE + 1})
        assert refused.value.errors == {"size": "Example things are at most 100 big."}
        # A hook may adjust the values about to be written.
        assert records.create("example_things", {"name": "  small one"})["name"] == "Small one"
        assert records.count("example_things") == 2


def test_hook_record_changed(plugin_app):
    module = example_module(plugin_app)
    set_enabled(plugin_app, "example")
    module.CHANGES.clear()
    with plugin_app.test_request_context():
        records = _system_records(plugin_app)
        thing = records.create("example_things", {"name": "one", "size": 3})
        records.update("example_things", thing.id, {"size": 4}, version=thing.version)
        records.delete("example_things", thing.id)
    assert [(o, a, i) for o, a, i, _ in module.CHANGES] == [
        ("example_things", "create", thing.id),
        ("example_things", "update", thing.id),
        ("example_things", "delete", thing.id),
    ]
    assert "name" in module.CHANGES[0][3]
    assert module.CHANGES[1][3] == ("size", "updated_at", "version")


def copycat_registry(monkeypatch) -> PluginRegistry:
    """The installed plugins plus `copycat`, which declares example's object again."""
    copycat = types.ModuleType("bastion_copycat")
    copycat.manifest = PluginManifest(label="Copycat")  # type: ignore[attr-defined]

    @hookimpl
    def register_objects():
        return [ObjectDefinition("example_things", "Copied thing", "Copied things")]

    copycat.register_objects = register_objects  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bastion_copycat", copycat)
    registry = PluginRegistry(bastion.__version__)
    registry.discover(
        [
            *metadata.entry_points(group=ENTRY_POINT_GROUP),
            metadata.EntryPoint("copycat", "bastion_copycat", ENTRY_POINT_GROUP),
        ]
    )
    return registry


def test_an_object_declared_by_two_plugins_breaks_exactly_one_of_them(
    third_party, settings, monkeypatch
):
    registry = copycat_registry(monkeypatch)
    app = make_app(settings, registry=registry)
    try:
        owner = platform(app).objects["example_things"][0]
        assert owner == "copycat"  # neither is enabled: the plugin name decides
        assert registry.plugins["copycat"].usable
        assert registry.plugins["example"].error == (
            "The object 'example_things' is already declared by copycat."
        )
        client = app.test_client()
        assert sign_in(client).status_code == 302
        states = admin_states(text(client.get("/admin/plugins")))
        assert states["example"] == "broken"
        assert states["copycat"] != "broken"
    finally:
        dispose(app)


def test_a_newly_installed_plugin_cannot_take_an_enabled_plugins_object(
    plugin_app, settings, monkeypatch
):
    # "copycat" sorts before "example", so only the enabled-first rule keeps example whole.
    set_enabled(plugin_app, "example")
    registry = copycat_registry(monkeypatch)
    upgraded = create_app(settings, registry=registry)
    try:
        assert platform(upgraded).objects["example_things"][0] == "example"
        assert registry.plugins["example"].usable
        assert registry.plugins["copycat"].error == (
            "The object 'example_things' is already declared by example."
        )
    finally:
        dispose(upgraded)


def test_hook_navigation_items(plugin_app, plugin_admin):
    add_user(plugin_app, "other@example.com", "others", ["audit.view"])
    other = plugin_app.test_client()
    assert sign_in(other, "other@example.com").status_code == 302
    assert "/example/" not in nav_links(text(plugin_admin.get("/")))

    set_enabled(plugin_app, "example")
    page = text(plugin_admin.get("/"))
    assert nav_links(page)["/example/"] == "example"
    link = site_nav(page).find("a", href="/example/")
    assert link.text == "Example"
    assert link.get("aria-current") is None
    current = site_nav(text(plugin_admin.get("/example/"))).find("a", href="/example/")
    assert current.get("aria-current") == "page"
    # Ordered by NavItem.order: Dashboard (0), Example (500), Status (900), Admin (1000).
    order = list(nav_links(page))
    assert order.index("/") < order.index("/example/") < order.index("/status/")
    assert order.index("/status/") < order.index("/admin/")
    # The item asks for example.view: a user without it does not see it.
    assert "/example/" not in nav_links(text(other.get("/")))

    set_enabled(plugin_app, "example", enabled=False)
    assert "/example/" not in nav_links(text(plugin_admin.get("/")))


def test_hook_dashboard_widgets(plugin_app, plugin_admin):
    add_user(plugin_app, "other@example.com", "others", ["audit.view"])
    other = plugin_app.test_client()
    assert sign_in(other, "other@example.com").status_code == 302

    set_enabled(plugin_app, "example")
    page = text(plugin_admin.get("/"))
    cards = parse(page).find_all("section", data_plugin=True)
    # Ordered by DashboardWidget.order: the example (500) before status (900).
    owners = [card["data-plugin"] for card in cards]
    assert owners.index("example") < owners.index("status")
    card = cards[owners.index("example")]
    assert card.find("h2").text == "Example widget"
    assert card.find("p", class_="example-widget").text == "Hello from the example plugin"
    # The widget asks for example.view.
    assert "Example widget" not in text(other.get("/"))

    set_enabled(plugin_app, "example", enabled=False)
    assert 'data-plugin="example"' not in text(plugin_admin.get("/"))


def test_hook_register_commands(plugin_app, plugin_cli, data_dir):
    hidden = plugin_cli("example-hello")
    assert hidden.exit_code == 2
    assert "No such command 'example-hello'" in hidden.stderr
    assert "example-hello" not in plugin_cli("--help").stdout

    set_enabled(plugin_app, "example")
    assert "example-hello" in plugin_cli("--help").stdout
    result = plugin_cli("example-hello", "--name", "Grace")
    assert result.exit_code == 0, result.output
    # It ran inside the installation's application context.
    assert result.stdout == f"Hello, Grace, from the example plugin in {data_dir}.\n"
    assert "Whom to greet." in plugin_cli("example-hello", "--help").stdout
    # A group's subcommands run in the application context too.
    fields = plugin_cli("example-things", "fields")
    assert fields.exit_code == 0, fields.output
    assert fields.stdout == f"example_things: name, size, colour (data directory {data_dir})\n"


def test_plugin_commands_run_against_the_installation_they_were_invoked_for(
    plugin_app, plugin_cli, data_dir, tmp_path
):
    """Two installations used one after the other from one process (tests, embedding):
    each invocation of a plugin's command must run in its own installation's context."""
    other_dir = tmp_path / "other-data"
    from bastion.config import load_settings

    other_app = make_app(load_settings(other_dir, environ={}, overrides=dict(FAST_HASHING)))
    try:
        set_enabled(plugin_app, "example")
        set_enabled(other_app, "example")
        first = plugin_cli("example-hello")
        assert first.stdout == f"Hello, world, from the example plugin in {data_dir}.\n"
        other_env = {f"BASTION_{k.upper()}": v for k, v in FAST_HASHING.items()}
        other_env["BASTION_DATA_DIR"] = str(other_dir)
        second = plugin_cli("example-hello", env=other_env)
        assert second.stdout == f"Hello, world, from the example plugin in {other_dir}.\n"
        third = plugin_cli("example-hello")
        assert third.stdout == first.stdout
    finally:
        dispose(other_app)


def test_hook_load_demo_data(plugin_app):
    set_enabled(plugin_app, "example")
    with plugin_app.app_context():
        load_demo(plugin_app, ADMIN_PASSWORD)
        role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        assert "example.view" in role.permission_names
    rep = plugin_app.test_client()
    assert sign_in(rep, "sam.sales@example.com").status_code == 302
    assert rep.get("/example/").status_code == 200
    assert "Example widget" in text(rep.get("/"))


def test_demo_data_of_a_disabled_plugin_is_not_loaded(third_party, settings):
    app = make_app(settings, demo=True)  # example is installed but disabled
    try:
        with app.app_context():
            role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
            assert role is not None
            assert "example.view" not in role.permission_names
            # The bundled status plugin, enabled by default, did grant its part.
            auditor = db.session.scalar(select(Role).where(Role.name == "auditor"))
            assert "status.view" in auditor.permission_names
    finally:
        dispose(app)


def test_hook_startup(plugin_app, plugin_admin, settings, caplog):
    started = example_module(plugin_app).STARTUPS
    assert plugin_admin.get("/").status_code == 200
    assert started == []  # a disabled plugin is not started

    set_enabled(plugin_app, "example")
    caplog.set_level("INFO", logger="bastion.plugin.example")
    page = text(plugin_admin.get("/example/"))
    assert started == [id(plugin_app)]
    assert 'data-startups="1"' in page  # it ran before the first request it served
    assert [r.getMessage() for r in caplog.records if r.name == "bastion.plugin.example"] == [
        "The example plugin started."
    ]
    plugin_admin.get("/")
    plugin_admin.get("/example/")
    assert started == [id(plugin_app)]  # once per process, not per request

    set_enabled(plugin_app, "example", enabled=False)
    plugin_admin.get("/")
    set_enabled(plugin_app, "example")
    plugin_admin.get("/")
    assert started == [id(plugin_app)]

    # Another server process starts it once for itself on its first request.
    other = create_app(settings)
    try:
        assert other.test_client().get("/login").status_code == 200
        assert started == [id(plugin_app), id(other)]
    finally:
        dispose(other)


# -- completeness ------------------------------------------------------------------


def test_the_example_plugin_implements_every_hook(plugin_app):
    pm = platform(plugin_app).registry.pm
    module = example_module(plugin_app)
    implemented = sorted(
        name
        for name in hook_names()
        if any(impl.plugin is module for impl in getattr(pm.hook, name).get_hookimpls())
    )
    assert implemented == hook_names()


def test_every_hookspec_has_a_one_line_docstring():
    for name in hook_names():
        doc = (getattr(hookspecs, name).__doc__ or "").strip()
        assert doc, f"hookspec {name} has no docstring"
        assert "\n" not in doc, f"hookspec {name}'s docstring is longer than one line"


def test_every_hookspec_has_a_test():
    defined: set[str] = set()
    for path in TESTS.rglob("*.py"):
        defined.update(re.findall(r"^\s*def (test_hook_\w+)\s*\(", path.read_text(), re.M))
    missing = [name for name in hook_names() if f"test_hook_{name}" not in defined]
    assert not missing, f"hooks without a test_hook_<name> test under tests/: {missing}"


def test_every_hook_test_names_a_hookspec():
    """A renamed or removed hook leaves no test behind that only pretends to cover it."""
    stale = []
    for path in TESTS.rglob("*.py"):
        for name in re.findall(r"^\s*def test_hook_(\w+)\s*\(", path.read_text(), re.M):
            if name not in hook_names():
                stale.append(f"{path.relative_to(ROOT)}: test_hook_{name}")
    assert not stale, f"tests named after hooks that do not exist: {stale}"


def documented_hooks(markdown: str) -> dict[str, list[str]]:
    """``### name`` heading -> the lines of its section, up to the next heading.

    Lines inside fenced code blocks are never headings (examples have # comments).
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fence: str | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            if current is not None:
                current.append(line)
            continue
        opening = re.match(r"(```+|~~~+)", stripped)
        if opening:
            fence = opening.group(1)
            if current is not None:
                current.append(line)
            continue
        if re.match(r"#{1,6}\s", line):
            heading = re.fullmatch(r"### (\w+)", line.rstrip())
            current = sections.setdefault(heading.group(1), []) if heading else None
            continue
        if current is not None:
            current.append(line)
    return sections


def test_every_hookspec_is_documented():
    if not DOCS.is_file():
        pytest.fail(f"{DOCS.relative_to(ROOT)} is missing: every hook must be documented there")
    sections = documented_hooks(DOCS.read_text(encoding="utf-8"))
    problems = []
    for name in hook_names():
        if name not in sections:
            problems.append(f"{name}: no '### {name}' heading")
            continue
        for part in ("**Signature**", "**Arguments**", "**Returns**", "**Example**"):
            if not any(line.startswith(part) for line in sections[name]):
                problems.append(f"{name}: no line beginning {part} before the next heading")
    assert not problems, "docs/plugins.md does not document every hook:\n" + "\n".join(problems)


def test_the_docs_check_reads_headings_and_subsections_correctly():
    sample = "\n".join(
        [
            "# Plugins",
            "### startup",
            "**Signature**: `startup(app)`",
            "```python",
            "# a comment in an example, not a heading",
            "```",
            "**Arguments**",
            "**Returns**",
            "**Example**",
            "## Next chapter",
            "**Signature** outside any hook section",
            "### navigation_items (deprecated)",
        ]
    )
    sections = documented_hooks(sample)
    assert list(sections) == ["startup"]
    assert [line for line in sections["startup"] if line.startswith("**")] == [
        "**Signature**: `startup(app)`",
        "**Arguments**",
        "**Returns**",
        "**Example**",
    ]
