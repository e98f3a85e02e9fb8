"""A user sets up two-step sign-in in the real UI on a phone-sized screen, then uses it."""

from __future__ import annotations

import pyotp
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e


def test_enrol_in_mfa_then_sign_in_with_a_recovery_code(browser, live_server):
    from playwright.sync_api import expect

    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 375, "height": 812}, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")

        page.goto("/account/mfa")
        expect(page.locator(".qr svg")).to_be_visible()  # drawn by Bastion, no network
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on").click()
        codes = page.locator("#recovery-codes code").all_inner_texts()
        assert len(codes) == 10
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width == [375, 375], f"the page scrolls sideways: {width}"

        page.get_by_role("button", name="Menu").click()
        page.locator("#site-nav").get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{live_server.url}/login")
        page.goto("/login")
        page.get_by_label("Email").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_label("Code")).to_be_visible()
        page.get_by_role("link", name="Use a recovery code").click()
        page.get_by_label("Recovery code").fill(codes[0])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}/")
        expect(page.locator("#site-nav")).to_contain_text("Administrator")
    finally:
        context.close()
