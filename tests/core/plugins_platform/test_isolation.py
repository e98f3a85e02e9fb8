"""One broken plugin never takes the platform down, and administrators see what broke."""

from __future__ import annotations

import pytest

from bastion.runtime import platform
from tests.core.plugins_platform.support import (
    admin_card,
    admin_change,
    admin_states,
    flashes,
    nav_links,
    text,
    visible,
)
from tests.core.plugins_platform.thirdparty import list_line, list_states

IMPORT_REASON = (
    "It failed to import: RuntimeError: the broken_import plugin fails to import on purpose"
)
CORE_REASON = "It needs Bastion >=99, and this is Bastion 0.1.0."


def test_the_app_starts_and_serves_with_broken_plugins_installed(plugin_app, plugin_client):
    registry = platform(plugin_app).registry
    assert registry.plugins["broken_import"].error == IMPORT_REASON
    assert registry.plugins["needs_future_core"].error == CORE_REASON
    assert registry.plugins["example"].usable
    assert plugin_client.get("/healthz").status_code == 200
    assert plugin_client.get("/readyz").status_code == 200
    assert plugin_client.get("/login").status_code == 200


@pytest.mark.parametrize(
    ("name", "reason"), [("broken_import", IMPORT_REASON), ("needs_future_core", CORE_REASON)]
)
def test_broken_plugin_is_shown_with_its_reason_and_cannot_be_enabled(
    plugin_admin, plugin_cli, name, reason
):
    page = text(plugin_admin.get("/admin/plugins"))
    assert admin_states(page)[name] == "broken"
    card = admin_card(page, name)
    assert card.find("p", role="note").text == reason
    assert card.find_all("form") == []  # no button to press

    response = admin_change(plugin_admin, name, "enable")
    assert response.status_code == 409
    assert flashes(text(response)) == [f"Cannot enable {name}: {reason}"]

    listed = plugin_cli("plugins", "list").stdout
    assert list_states(listed)[name] == "broken"
    assert list_line(listed, name).endswith(f"-- {reason}")
    refused = plugin_cli("plugins", "enable", name)
    assert refused.exit_code == 1
    assert f"Cannot enable {name}: {reason}" in refused.stderr

    assert admin_states(text(plugin_admin.get("/admin/plugins")))[name] == "broken"
    # needs_future_core asks to be enabled by default; its menu entry must never appear.
    dashboard = plugin_admin.get("/")
    assert dashboard.status_code == 200
    assert "From the future" not in visible(text(dashboard))


def test_bastion_check_warns_about_broken_plugins(plugin_app, plugin_cli):
    result = plugin_cli("check")
    assert f"warning: plugin broken_import cannot run: {IMPORT_REASON}" in result.stdout
    assert f"warning: plugin needs_future_core cannot run: {CORE_REASON}" in result.stdout


def test_a_plugin_raising_in_its_hooks_does_not_break_pages(plugin_admin, caplog):
    assert admin_change(plugin_admin, "raises_in_hook", "enable").status_code == 302
    assert admin_change(plugin_admin, "example", "enable").status_code == 302
    caplog.clear()

    dashboard = plugin_admin.get("/")
    assert dashboard.status_code == 200
    page = text(dashboard)
    # The core's and the healthy plugins' contributions are all there.
    links = nav_links(page)
    assert links["/"] == "core"
    assert links["/admin/"] == "core"
    assert links["/example/"] == "example"
    assert links["/status/"] == "status"
    assert "Example widget" in page
    assert "System health" in page
    assert plugin_admin.get("/example/").status_code == 200

    failures = {
        (r.plugin, r.stage)
        for r in caplog.records
        if r.name == "bastion.plugins" and r.levelname == "ERROR"
    }
    assert failures == {
        ("raises_in_hook", "navigation_items"),
        ("raises_in_hook", "dashboard_widgets"),
    }
    logged = [
        r.getMessage() for r in caplog.records if getattr(r, "plugin", "") == "raises_in_hook"
    ]
    assert any(
        "raises_in_hook" in m and "navigation_items of raises_in_hook is broken on purpose" in m
        for m in logged
    )
    tracebacks = [
        r.traceback for r in caplog.records if getattr(r, "plugin", "") == "raises_in_hook"
    ]
    assert all("RuntimeError" in tb for tb in tracebacks)

    plugins_page = plugin_admin.get("/admin/plugins")
    assert plugins_page.status_code == 200
    page = text(plugins_page)
    card = admin_card(page, "raises_in_hook")
    assert admin_states(page)["raises_in_hook"] == "enabled"  # failing, not broken
    errors = card.find("details")
    assert "recent errors" in errors.find("summary").text
    listed = [item.text for item in errors.find_all("li")]
    assert any(
        item.endswith(
            "in navigation_items: RuntimeError: navigation_items of raises_in_hook "
            "is broken on purpose"
        )
        for item in listed
    ), listed
    assert any(
        item.endswith(
            "in dashboard_widgets: RuntimeError: dashboard_widgets of raises_in_hook "
            "is broken on purpose"
        )
        for item in listed
    ), listed
    assert admin_card(page, "example").find_all("details") == []

    # The status report counts the failures too, through the public facade.
    status = plugin_admin.get("/status/report.json").get_json()
    assert status["plugin_errors"] >= 2
    assert status["plugins_broken"] == 2

    # Disabling it stops the failures: its hooks are no longer called.
    assert admin_change(plugin_admin, "raises_in_hook", "disable").status_code == 302
    caplog.clear()
    assert plugin_admin.get("/").status_code == 200
    assert not [r for r in caplog.records if getattr(r, "plugin", "") == "raises_in_hook"]
