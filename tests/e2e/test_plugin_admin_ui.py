"""Disable and re-enable a plugin through the real admin UI, in a real browser.

Against a `bastion serve` subprocess, at a desktop and at a phone viewport: sign in
through the form, reach Administration -> Plugins through the navigation (through the
menu toggle on the phone), disable the bundled `status` plugin with its htmx button and
watch its navigation entry vanish without a page load, see /status/ answer 404, enable
it again and see the entry and the page come back. Throughout, the browser may talk to
the test server only, must log no console error (a CSP violation is one) and, on the
phone, no page may scroll sideways.

Set E2E_SCREENSHOTS to save the plugins page (just after the disable) to /tmp/e2e-phone.png
and /tmp/e2e-desktop.png; normal runs write nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, BACKEND

pytestmark = pytest.mark.e2e

VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 375, "height": 812},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
TOUCH_TARGET = 44  # px, the theme's --touch
TIMEOUT_MS = 5_000

# Runs in every document before its own scripts (CDP injection, not subject to the CSP).
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__bastionCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}` +
    ` at ${e.sourceFile || e.documentURI}:${e.lineNumber}`);
});
"""


@dataclass
class BrowserLog:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)


@pytest.fixture(params=sorted(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    return request.param


def test_disable_and_enable_plugin_through_admin_ui(browser, live_server, viewport):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    phone = viewport == "phone"
    base = live_server.url
    log = BrowserLog()
    context = browser.new_context(base_url=base, **VIEWPORTS[viewport])
    context.set_default_timeout(TIMEOUT_MS)
    context.expose_function("__bastionCspViolation", lambda text: log.csp_violations.append(text))
    context.add_init_script(WATCH_CSP)
    context.on("request", lambda req: log.requests.append(req.url))
    page = context.new_page()
    page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))

    def on_console(msg) -> None:
        if msg.type == "error":
            log.console_errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.on("load", lambda p: log.pages.append(p.url))

    nav = page.locator("#site-nav")
    toggle = page.locator("[data-nav-toggle]")
    # CSS locators, not roles: the collapsed menu on the phone is hidden from the
    # accessibility tree, and an entry that is only hidden must not count as gone.
    status_entry = nav.locator("a", has_text=re.compile(r"^\s*System status\s*$"))
    admin_entry = nav.locator("a", has_text=re.compile(r"^\s*Administration\s*$"))

    def check_layout() -> None:
        """Phone: no sideways scrolling, and the menu stays shut until it is asked for."""
        if not phone:
            return
        scroll, inner, client = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth,"
            " document.documentElement.clientWidth]"
        )
        # A mobile browser zooms out to fit content that is too wide, which widens
        # innerWidth too: hold both to the device's own width.
        device = VIEWPORTS["phone"]["viewport"]["width"]
        assert scroll <= inner == device, (
            f"{page.url} scrolls sideways: scrollWidth {scroll}, innerWidth {inner}, "
            f"clientWidth {client}, device width {device}"
        )
        if toggle.count():
            expect(toggle).to_be_visible()
            expect(toggle).to_have_attribute("aria-expanded", "false")
            expect(nav).to_be_hidden()

    def open_menu() -> None:
        """Desktop: the navigation is always there. Phone: tap the menu toggle first."""
        if phone:
            check_layout()
            toggle.tap()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            box = toggle.bounding_box()
            assert box and box["height"] >= TOUCH_TARGET and box["width"] >= TOUCH_TARGET
        else:
            expect(toggle).to_be_hidden()
        expect(nav).to_be_visible()

    def goto(path: str, status: int = 200) -> None:
        response = page.goto(path)
        assert response is not None and response.status == status, (path, response)
        check_layout()

    def mark_document() -> None:
        page.evaluate("window.__bastionSameDocument = true")

    def same_document() -> bool:
        return page.evaluate("window.__bastionSameDocument === true")

    def change_plugin(action: str) -> None:
        button = page.get_by_role("button", name=f"{action} System status", exact=True)
        expect(button).to_be_visible()
        if phone:
            box = button.bounding_box()
            assert box and box["height"] >= TOUCH_TARGET, f"{action} button too small: {box}"
        mark_document()
        loads = len(log.pages)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/status/{action.lower()}")
        ) as answer:
            if phone:
                button.tap()
            else:
                button.click()
        response = answer.value
        assert response.status == 200
        assert response.request.header_value("hx-request") == "true", "not sent by htmx"
        state = "enabled" if action == "Enable" else "disabled"
        expect(page.locator("#plugin-status")).to_have_attribute("data-state", state)
        flash = page.locator("#flashes .flash")
        expect(flash).to_have_text(f"System status is {state}.")
        # The message lines up with the page's content column, on every screen.
        flash_box = flash.bounding_box()
        heading_box = page.locator("#main h1").bounding_box()
        assert flash_box and heading_box and abs(flash_box["x"] - heading_box["x"]) <= 1, (
            f"flash message misaligned: {flash_box} vs heading {heading_box}"
        )
        assert same_document() and len(log.pages) == loads, "the page was reloaded"

    try:
        # Sign in through the form.
        response = page.goto("/login")
        assert response is not None and response.status == 200
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe" not in csp, csp
        check_layout()
        page.get_by_label("Email").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        assert urlsplit(page.url).path == "/"
        check_layout()

        # Administration -> Plugins through the navigation.
        open_menu()
        expect(status_entry).to_be_visible()
        with page.expect_navigation():
            admin_entry.click()
        assert urlsplit(page.url).path.rstrip("/") == "/admin"
        check_layout()
        with page.expect_navigation():
            page.locator("#main").get_by_role("link", name="Plugins").click()
        assert urlsplit(page.url).path == "/admin/plugins"
        expect(page.get_by_role("heading", name="Plugins", level=1)).to_be_visible()
        check_layout()

        # Disable: the entry vanishes at once, the page is gone.
        change_plugin("Disable")
        if os.environ.get("E2E_SCREENSHOTS"):  # the page after the swap, with its message
            page.screenshot(path=f"/tmp/e2e-{viewport}.png", full_page=True)
        expect(status_entry).to_have_count(0)
        expect(admin_entry).to_have_count(1)
        expect(page.get_by_role("button", name="Enable System status")).to_be_visible()
        check_layout()
        goto("/status/", status=404)
        expect(page.locator(".error-page__code")).to_have_text("404")
        expect(status_entry).to_have_count(0)

        # Enable: the entry and the page come back.
        goto("/admin/plugins")
        expect(status_entry).to_have_count(0)
        change_plugin("Enable")
        expect(status_entry).to_have_count(1)
        check_layout()
        open_menu()  # on the phone, the toggle still works after the swap
        with page.expect_navigation() as navigation:
            status_entry.click()
        assert navigation.value is not None and navigation.value.status == 200
        assert urlsplit(page.url).path == "/status/"
        expect(page.get_by_role("heading", name="System status", level=1)).to_be_visible()
        # The server really runs on the database under test.
        expect(page.locator(".facts")).to_contain_text(f"{BACKEND}: reachable")
        check_layout()

        # The visit as a whole: only the test server, no errors, no CSP violations.
        server = f"{live_server.host}:{live_server.port}"
        foreign = sorted({u for u in log.requests if urlsplit(u).netloc != server})
        assert not foreign, f"requests to other hosts: {foreign}"
        assert not log.csp_violations, log.csp_violations
        assert not log.page_errors, log.page_errors
        # The one error a browser logs by itself: the 404 we asked for.
        expected_404 = f"{base}/status/"
        unexpected = [
            e
            for e in log.console_errors
            if not (e.startswith("Failed to load resource") and e.endswith(f"({expected_404})"))
        ]
        assert not unexpected, f"console errors: {unexpected}"
    finally:
        context.close()
