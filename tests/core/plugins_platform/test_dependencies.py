"""Plugins that need other plugins: enabled and disabled in an order that keeps them whole."""

from __future__ import annotations

from bastion.db import db
from bastion.models import PluginState
from tests.conftest import sign_in
from tests.core.plugins_platform.support import (
    admin_card,
    admin_change,
    admin_states,
    flashes,
    nav_links,
    text,
)
from tests.core.plugins_platform.thirdparty import list_line, list_states

ENABLE_REFUSED = (
    "Cannot enable example_addon: it needs example, which is disabled. Enable example "
    "first, or both together (bastion plugins enable example example_addon)."
)
DISABLE_REFUSED = (
    "Cannot disable example: the enabled plugin example_addon needs it. Disable "
    "example_addon first, or both together (bastion plugins disable example_addon example)."
)


def states(plugin_cli) -> dict[str, str]:
    result = plugin_cli("plugins", "list")
    assert result.exit_code == 0, result.output
    return list_states(result.stdout)


def test_enabling_a_plugin_whose_dependency_is_disabled_is_refused(plugin_app, plugin_cli):
    refused = plugin_cli("plugins", "enable", "example_addon")
    assert refused.exit_code == 1
    assert ENABLE_REFUSED in refused.stderr
    assert states(plugin_cli)["example_addon"] == "disabled"


def test_enabling_both_together_works(plugin_app, plugin_cli, plugin_admin):
    # Named in either order: the dependency counts as enabled when it arrives with it.
    result = plugin_cli("plugins", "enable", "example_addon", "example")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Enabled: example_addon, example.\n"
    assert states(plugin_cli)["example"] == states(plugin_cli)["example_addon"] == "enabled"
    assert plugin_admin.get("/example-addon/").status_code == 200
    assert nav_links(text(plugin_admin.get("/")))["/example-addon/"] == "example_addon"


def test_disabling_a_plugin_that_an_enabled_plugin_needs_is_refused(plugin_app, plugin_cli):
    assert plugin_cli("plugins", "enable", "example").exit_code == 0
    assert plugin_cli("plugins", "enable", "example_addon").exit_code == 0  # one at a time

    refused = plugin_cli("plugins", "disable", "example")
    assert refused.exit_code == 1
    assert DISABLE_REFUSED in refused.stderr
    assert states(plugin_cli)["example"] == "enabled"

    # The dependent alone may go; then its dependency may too.
    assert plugin_cli("plugins", "disable", "example_addon").stdout == "Disabled: example_addon.\n"
    assert plugin_cli("plugins", "disable", "example").stdout == "Disabled: example.\n"


def test_disabling_both_together_works(plugin_app, plugin_cli, plugin_admin):
    assert plugin_cli("plugins", "enable", "example", "example_addon").exit_code == 0
    result = plugin_cli("plugins", "disable", "example", "example_addon")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Disabled: example, example_addon.\n"
    listed = states(plugin_cli)
    assert listed["example"] == listed["example_addon"] == "disabled"
    assert plugin_admin.get("/example-addon/").status_code == 404
    assert plugin_admin.get("/example/").status_code == 404


def test_admin_page_refuses_changes_that_break_a_dependency(plugin_admin):
    response = admin_change(plugin_admin, "example_addon", "enable")
    assert response.status_code == 409
    page = text(response)
    assert flashes(page) == [ENABLE_REFUSED]
    assert admin_states(page)["example_addon"] == "disabled"

    assert admin_change(plugin_admin, "example", "enable").status_code == 302
    assert admin_change(plugin_admin, "example_addon", "enable").status_code == 302
    page = text(plugin_admin.get("/admin/plugins"))
    assert "Needed by: example_addon" in admin_card(page, "example").text

    response = admin_change(plugin_admin, "example", "disable", htmx=True)
    assert response.status_code == 409
    partial = text(response)
    assert flashes(partial) == [DISABLE_REFUSED]  # swapped in out of band
    assert admin_states(partial)["example"] == "enabled"
    assert plugin_admin.get("/example/").status_code == 200


def test_a_plugin_whose_dependency_went_away_waits_without_running(plugin_app, plugin_cli):
    """Rows edited behind the platform's back (a restore, an old version): still safe."""
    with plugin_app.app_context():
        # Every installed plugin got its row at `bastion init`; edit them in place.
        db.session.get(PluginState, "example").enabled = False
        db.session.get(PluginState, "example_addon").enabled = True
        db.session.commit()
    listed = plugin_cli("plugins", "list").stdout
    assert list_states(listed)["example_addon"] == "enabled, waiting for a dependency"
    assert "(needs example)" in list_line(listed, "example_addon")

    client = plugin_app.test_client()
    assert sign_in(client).status_code == 302
    assert client.get("/example-addon/").status_code == 404
    assert "/example-addon/" not in nav_links(text(client.get("/")))
    assert admin_states(text(client.get("/admin/plugins")))["example_addon"] == "waiting"

    # Enabling the dependency makes the waiting plugin run, with no change of its own.
    assert plugin_cli("plugins", "enable", "example").exit_code == 0
    assert client.get("/example-addon/").status_code == 200
