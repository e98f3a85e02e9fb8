"""A theme from a third-party distribution: chosen at runtime, overriding by name, with
the default theme as the fallback for every template and static file it does not ship."""

from __future__ import annotations

from pathlib import Path

import bastion_theme_default

from bastion.app import create_app
from bastion.runtime import platform
from tests.conftest import csrf_token, dispose, sign_in
from tests.core.plugins_platform.support import flashes, parse, text

MARKER = "Welcome to the example theme"
DEFAULT_STATIC = Path(bastion_theme_default.__file__).parent / "static"


def theme_choices(page: str) -> dict[str, bool]:
    """Theme name -> whether its radio button is checked on /admin/appearance."""
    return {
        radio["value"]: "checked" in radio.attrs
        for radio in parse(page).find_all("input", type="radio", name="theme")
    }


def choose_theme(client, name: str):
    token = csrf_token(client, "/admin/appearance")
    return client.post("/admin/appearance", data={"theme": name, "csrf_token": token})


def test_the_third_party_theme_is_offered(plugin_app, plugin_admin):
    theme = platform(plugin_app).themes.themes["example"]
    assert theme.label == "Example"
    page = text(plugin_admin.get("/admin/appearance"))
    assert theme_choices(page) == {"default": True, "example": False}
    assert parse(page).find("label", for_="theme-example").text == "Example (example)"


def test_choosing_a_theme_renders_its_templates_and_switching_back_restores_default(
    plugin_app, plugin_admin
):
    visitor = plugin_app.test_client()
    assert MARKER not in text(visitor.get("/login"))

    response = choose_theme(plugin_admin, "example")
    assert response.status_code == 302
    page = text(plugin_admin.get("/admin/appearance"))
    assert flashes(page) == ["The theme is now Example."]
    assert theme_choices(page) == {"default": False, "example": True}

    login = text(visitor.get("/login"))
    assert MARKER in login
    assert 'href="/static/theme/css/example-theme.css"' in login
    # Templates the theme does not override still come from the default theme.
    assert 'class="site-header"' in login
    # Signing in works through the overriding template's form.
    assert sign_in(visitor).status_code == 302

    assert choose_theme(plugin_admin, "default").status_code == 302
    signed_out = plugin_app.test_client()
    login = text(signed_out.get("/login"))
    assert MARKER not in login
    assert "example-theme.css" not in login
    assert parse(login).find("h1", id="login-title").text == "Sign in"


def test_theme_static_files_come_from_the_active_theme_with_fallback(plugin_app, plugin_admin):
    visitor = plugin_app.test_client()
    default_icon = (DEFAULT_STATIC / "img/favicon.svg").read_bytes()
    default_css = (DEFAULT_STATIC / "css/bastion.css").read_bytes()

    assert visitor.get("/static/theme/img/favicon.svg").data == default_icon
    assert visitor.get("/static/theme/css/example-theme.css").status_code == 404

    choose_theme(plugin_admin, "example")
    icon = visitor.get("/static/theme/img/favicon.svg")
    assert icon.status_code == 200
    assert b"bastion-example-theme-icon" in icon.data  # the theme's own file wins
    own = visitor.get("/static/theme/css/example-theme.css")
    assert own.status_code == 200 and b"bastion-example-theme-css" in own.data
    fallback = visitor.get("/static/theme/css/bastion.css")
    assert fallback.status_code == 200
    assert fallback.data == default_css  # not in the theme: the default theme's
    assert visitor.get("/static/theme/css/nothing-here.css").status_code == 404

    choose_theme(plugin_admin, "default")
    assert visitor.get("/static/theme/img/favicon.svg").data == default_icon
    assert visitor.get("/static/theme/css/example-theme.css").status_code == 404


def test_an_unknown_theme_is_refused(plugin_admin):
    assert choose_theme(plugin_admin, "nonexistent").status_code == 302
    page = text(plugin_admin.get("/admin/appearance"))
    assert flashes(page) == ["There is no installed theme named 'nonexistent'."]
    assert theme_choices(page)["default"] is True


def test_every_process_uses_the_theme_chosen_in_another(plugin_app, plugin_admin, settings):
    other = create_app(settings)
    try:
        visitor = other.test_client()
        assert MARKER not in text(visitor.get("/login"))  # compiled and cached here
        choose_theme(plugin_admin, "example")
        assert MARKER in text(visitor.get("/login"))
        choose_theme(plugin_admin, "default")
        assert MARKER not in text(visitor.get("/login"))
    finally:
        dispose(other)
