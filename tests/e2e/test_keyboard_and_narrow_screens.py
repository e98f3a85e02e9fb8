"""Keyboard use of the htmx plugin switches, and every page at the narrowest phone width."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e


def signed_in_page(browser, live_server, **context_options):
    context = browser.new_context(base_url=live_server.url, **context_options)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    with page.expect_navigation():
        page.get_by_label("Password").press("Enter")
    assert urlsplit(page.url).path == "/"
    return context, page


def test_keyboard_focus_stays_on_the_plugin_after_each_switch(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(browser, live_server, viewport={"width": 1280, "height": 800})
    try:
        page.goto("/admin/plugins")
        card = page.locator("#plugin-status")
        card.get_by_role("button", name="Disable System status").focus()
        for state, label in (("disabled", "Enable"), ("enabled", "Disable")):
            page.keyboard.press("Enter")
            expect(card).to_have_attribute("data-state", state)
            expect(page.locator(".htmx-settling")).to_have_count(0)  # the swap has finished
            # The table was replaced; focus is on the same plugin's new button, not lost.
            expect(card.get_by_role("button")).to_be_focused()
            expect(card.get_by_role("button")).to_have_text(label)
    finally:
        context.close()


PAGES = ("/", "/admin/", "/admin/plugins", "/admin/appearance", "/status/", "/no-such-page")


def test_every_page_fits_a_360_pixel_phone(browser, live_server):
    context, page = signed_in_page(
        browser,
        live_server,
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    try:
        for path in PAGES:
            page.goto(path)
            sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert sizes == [360, 360], f"{path} scrolls sideways at 360 px: {sizes}"
    finally:
        context.close()
