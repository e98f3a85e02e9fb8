"""A third-party plugin from its own distribution: found, listed, enabled and disabled at
runtime by the CLI and the admin page, gone while disabled, back on the next request."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bastion.app import create_app
from bastion.db import db
from bastion.models import PluginState, Role
from bastion.runtime import platform
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, dispose, make_app, sign_in
from tests.core.plugins_platform import thirdparty
from tests.core.plugins_platform.support import (
    add_user,
    admin_card,
    admin_change,
    admin_states,
    flashes,
    install_probe,
    nav_links,
    parse,
    probe,
    site_nav,
    stylesheets,
    text,
    visible,
)
from tests.core.plugins_platform.thirdparty import list_line, list_states

EXAMPLE_CSS = "/static/plugins/example/example.css"


def test_third_party_plugin_is_discovered_from_its_own_distribution(plugin_app, plugin_admin):
    example = platform(plugin_app).registry.plugins["example"]
    assert example.usable
    assert example.distribution == "bastion-example-plugin"
    assert example.version == "1.2.0"
    assert example.entry_point == "bastion_example.plugin"
    assert platform(plugin_app).registry.plugins["example_addon"].requires == ("example",)

    page = text(plugin_admin.get("/admin/plugins"))
    states = admin_states(page)
    # Its manifest does not ask to be enabled, so an installation starts with it off,
    # while the bundled status plugin (enabled_by_default) is on.
    assert states["example"] == "disabled"
    assert states["example_addon"] == "disabled"
    assert states["status"] == "enabled"
    card = admin_card(page, "example")
    assert card.find("h2").text == "Example (example 1.2.0)"
    assert "Shows what a third-party plugin can add to Bastion." in card.text
    assert "Needs: example" in admin_card(page, "example_addon").text


def test_cli_lists_enables_and_disables_a_third_party_plugin(bastion_cmd, data_dir):
    """The real `bastion` command, in its own process, with the plugins pip-installed."""
    init = bastion_cmd(
        "init", "--admin-email", ADMIN_EMAIL, "--admin-password-file", "-", input=ADMIN_PASSWORD
    )
    assert init.returncode == 0, init.stderr
    # needs_future_core asks to be enabled by default but cannot run: only the bundled
    # plugins that ask for it (sales, status) are on.
    assert "Enabled plugins: sales, status." in init.stdout

    listed = bastion_cmd("plugins", "list")
    assert listed.returncode == 0, listed.stderr
    states = list_states(listed.stdout)
    assert {name: states.get(name) for name in (*thirdparty.NAMES, "sales", "status")} == {
        "broken_import": "broken",
        "example": "disabled",
        "example_addon": "disabled",
        "needs_future_core": "broken",
        "raises_in_hook": "disabled",
        "sales": "enabled",
        "status": "enabled",
    }
    example = list_line(listed.stdout, "example")
    assert "1.2.0" in example and example.endswith("Example")
    assert list_line(listed.stdout, "example_addon").endswith("(needs example)")
    # Broken plugins are listed with the reason, and the reason is logged with their name.
    assert list_line(listed.stdout, "broken_import").endswith(
        "-- It failed to import: RuntimeError: the broken_import plugin fails to import on purpose"
    )
    assert list_line(listed.stdout, "needs_future_core").endswith(
        "-- It needs Bastion >=99, and this is Bastion 0.1.0."
    )
    logged = [json.loads(line) for line in listed.stderr.splitlines() if line.startswith("{")]
    assert {(e.get("plugin"), e.get("stage")) for e in logged if e["level"] == "ERROR"} >= {
        ("broken_import", "import"),
        ("needs_future_core", "import"),
    }

    # A disabled plugin's command does not exist.
    hidden = bastion_cmd("example-hello")
    assert hidden.returncode == 2
    assert "No such command 'example-hello'" in hidden.stderr

    enabled = bastion_cmd("plugins", "enable", "example")
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout.strip() == "Enabled: example."

    hello = bastion_cmd("example-hello", "--name", "Ada")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == f"Hello, Ada, from the example plugin in {data_dir}."

    disabled = bastion_cmd("plugins", "disable", "example")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "Disabled: example."
    assert bastion_cmd("example-hello").returncode == 2


def test_cli_reports_unchanged_and_unknown_plugins(plugin_app, plugin_cli):
    assert plugin_cli("plugins", "enable", "example").stdout == "Enabled: example.\n"
    assert list_states(plugin_cli("plugins", "list").stdout)["example"] == "enabled"
    again = plugin_cli("plugins", "enable", "example", "status")
    assert again.exit_code == 0
    assert again.stdout == "Already enabled: example, status.\n"

    unknown = plugin_cli("plugins", "enable", "nonexistent")
    assert unknown.exit_code == 1
    assert "No plugin named nonexistent is installed." in unknown.stderr
    assert "example_addon" in unknown.stderr  # the message lists what is installed
    assert plugin_cli("plugins", "disable", "example").stdout == "Disabled: example.\n"
    assert list_states(plugin_cli("plugins", "list").stdout)["example"] == "disabled"


@pytest.mark.parametrize(
    ("name", "label", "page", "starts_enabled"),
    [("status", "System status", "/status/", True), ("example", "Example", "/example/", False)],
)
def test_admin_page_enables_and_disables_like_a_bundled_plugin(
    plugin_admin, name, label, page, starts_enabled
):
    assert plugin_admin.get(page).status_code == (200 if starts_enabled else 404)

    if starts_enabled:
        response = admin_change(plugin_admin, name, "disable")
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin/plugins"
        followed = text(plugin_admin.get("/admin/plugins"))
        assert flashes(followed) == [f"{label} is disabled."]
        assert admin_states(followed)[name] == "disabled"
        assert plugin_admin.get(page).status_code == 404

    response = admin_change(plugin_admin, name, "enable")
    assert response.status_code == 302
    followed = text(plugin_admin.get("/admin/plugins"))
    assert flashes(followed) == [f"{label} is enabled."]
    assert admin_states(followed)[name] == "enabled"
    assert plugin_admin.get(page).status_code == 200

    admin_change(plugin_admin, name, "enable")
    assert flashes(text(plugin_admin.get("/admin/plugins"))) == [f"{label} was already enabled."]

    assert admin_change(plugin_admin, name, "disable").status_code == 302
    assert admin_states(text(plugin_admin.get("/admin/plugins")))[name] == "disabled"
    assert plugin_admin.get(page).status_code == 404


def test_admin_change_is_audited(plugin_admin, caplog):
    caplog.set_level("INFO", logger="bastion.audit")
    admin_change(plugin_admin, "example", "enable")
    admin_change(plugin_admin, "example", "disable")
    entries = [
        (r.action, r.actor)
        for r in caplog.records
        if r.name == "bastion.audit" and getattr(r, "object_id", None) == "example"
    ]
    assert [action for action, _ in entries] == ["plugin.enable", "plugin.disable"]
    assert all(actor.startswith("user:") for _, actor in entries)


def test_admin_htmx_change_returns_the_table_and_swaps_the_nav_out_of_band(plugin_admin):
    response = admin_change(plugin_admin, "example", "enable", htmx=True)
    assert response.status_code == 200
    partial = text(response)
    tree = parse(partial)
    assert not tree.find_all("html") and not tree.find_all("main")  # a fragment
    assert [e.get("id") for e in tree.children if not isinstance(e, str)] == [
        "plugin-table",
        "site-nav",
        "flashes",
    ]
    assert admin_states(partial)["example"] == "enabled"
    # The navigation and the flashes replace the page's own, out of band.
    assert site_nav(partial).get("hx-swap-oob") == "true"
    assert tree.find("div", id="flashes").get("hx-swap-oob") == "true"
    assert nav_links(partial)["/example/"] == "example"
    assert flashes(partial) == ["Example is enabled."]

    # As htmx sends it: the token in the X-CSRFToken header from <body hx-headers>.
    token = parse(text(plugin_admin.get("/admin/plugins"))).find("input", name="csrf_token")
    response = plugin_admin.post(
        "/admin/plugins/example/disable",
        headers={"HX-Request": "true", "X-CSRFToken": token["value"]},
    )
    assert response.status_code == 200
    partial = text(response)
    assert admin_states(partial)["example"] == "disabled"
    assert "/example/" not in nav_links(partial)
    assert "/" in nav_links(partial)  # the core's entries stay
    assert flashes(partial) == ["Example is disabled."]


def test_admin_change_without_csrf_token_is_refused(plugin_admin):
    response = plugin_admin.post("/admin/plugins/example/enable")
    assert response.status_code == 400
    assert "This form has expired" in visible(text(response))
    assert admin_states(text(plugin_admin.get("/admin/plugins")))["example"] == "disabled"
    assert plugin_admin.get("/example/").status_code == 404


def test_unknown_action_or_plugin_changes_nothing(plugin_admin):
    from tests.conftest import csrf_token

    token = csrf_token(plugin_admin, "/admin/plugins")
    assert (
        plugin_admin.post("/admin/plugins/example/explode", data={"csrf_token": token}).status_code
        == 404
    )
    response = admin_change(plugin_admin, "nonexistent", "enable")
    assert response.status_code == 409
    assert "No plugin named nonexistent is installed." in flashes(text(response))[0]


def test_disabled_plugin_is_gone_but_its_data_stays(plugin_app, plugin_admin):
    add_user(plugin_app, "viewer@example.com", "example_viewers", ["example.view"])
    viewer = plugin_app.test_client()
    assert sign_in(viewer, "viewer@example.com").status_code == 302

    assert admin_change(plugin_admin, "example", "enable").status_code == 302
    assert viewer.get("/example/").status_code == 200
    dashboard = text(viewer.get("/"))
    assert "Example widget" in dashboard
    assert nav_links(dashboard)["/example/"] == "example"
    assert EXAMPLE_CSS in stylesheets(dashboard)
    assert viewer.get(EXAMPLE_CSS).status_code == 200
    assert "example.view" in probe(viewer)["permissions"]

    assert admin_change(plugin_admin, "example", "disable").status_code == 302

    # Routes, including its static files, answer 404.
    assert viewer.get("/example/").status_code == 404
    assert viewer.get(EXAMPLE_CSS).status_code == 404
    assert plugin_admin.get("/example/").status_code == 404
    # Its hooks are not called: no menu entry, no widget, no stylesheet.
    dashboard = text(viewer.get("/"))
    assert "/example/" not in nav_links(dashboard)
    assert "Example widget" not in dashboard
    assert EXAMPLE_CSS not in stylesheets(dashboard)
    # Its permissions grant nothing, neither to the role that holds them nor to "*".
    assert probe(viewer)["permissions"] == []
    admin_permissions = probe(plugin_admin)["permissions"]
    assert "example.view" not in admin_permissions
    assert "admin.plugins" in admin_permissions

    # Its data is untouched: the state row, the role's grant, its declarations.
    with plugin_app.app_context():
        row = db.session.get(PluginState, "example")
        assert row is not None and row.enabled is False
        assert row.changed_by.startswith("user:")
        role = db.session.scalar(select(Role).where(Role.name == "example_viewers"))
        assert "example.view" in role.permission_names
    assert platform(plugin_app).permissions["example.view"][0] == "example"
    assert platform(plugin_app).objects["example_things"][0] == "example"

    # Enabling brings everything back on the next request, grants included.
    assert admin_change(plugin_admin, "example", "enable").status_code == 302
    assert viewer.get("/example/").status_code == 200
    assert viewer.get(EXAMPLE_CSS).status_code == 200
    assert "Example widget" in text(viewer.get("/"))
    assert "example.view" in probe(viewer)["permissions"]


def test_every_process_sees_a_change_on_its_next_request(third_party, settings):
    """Two applications on one database stand for two server processes."""
    first = make_app(settings)
    second = create_app(settings)
    second.config["TESTING"] = True
    install_probe(second)
    try:
        one, two = first.test_client(), second.test_client()
        assert sign_in(one).status_code == 302
        assert sign_in(two).status_code == 302
        assert two.get("/example/").status_code == 404

        assert admin_change(one, "example", "enable").status_code == 302
        assert two.get("/example/").status_code == 200
        page = text(two.get("/"))
        assert nav_links(page)["/example/"] == "example"
        assert "Example widget" in page
        assert "example.view" in probe(two)["permissions"]
        assert admin_states(text(two.get("/admin/plugins")))["example"] == "enabled"

        # And back the other way, changed from the second process this time.
        assert admin_change(two, "example", "disable").status_code == 302
        assert one.get("/example/").status_code == 404
        assert "/example/" not in nav_links(text(one.get("/")))
        assert one.get(EXAMPLE_CSS).status_code == 404
    finally:
        dispose(first)
        dispose(second)
