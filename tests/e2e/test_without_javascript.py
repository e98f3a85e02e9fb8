"""Without JavaScript the phone layout still works: sign in, and the menu stays open."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e


def test_phone_navigation_is_usable_without_javascript(browser, live_server):
    from playwright.sync_api import expect

    context = browser.new_context(
        base_url=live_server.url,
        java_script_enabled=False,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")
        nav = page.locator("#site-nav")
        expect(nav.locator("a", has_text="Administration")).to_be_visible()
        expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.locator("[data-nav-toggle]")).to_be_hidden()  # nothing to toggle
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width == [375, 375], f"the page scrolls sideways: {width}"
    finally:
        context.close()
