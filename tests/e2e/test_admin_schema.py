"""Create a custom object and its fields through the admin pages, in a real browser.

On a 360 px phone screen against a `bastion serve` subprocess: the API names are
suggested from the labels as they are typed (admin_schema.js), choosing "Lookup" swaps
in its settings with htmx, and the new fields show in the object's field list and its
count in the objects list. No console error (a CSP violation is one), no sideways scroll.
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.e2e.test_plugin_admin_ui import TIMEOUT_MS, WATCH_CSP

pytestmark = pytest.mark.e2e
PHONE = {
    "viewport": {"width": 360, "height": 780},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def test_create_custom_object_with_fields(browser, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=live_server.url, **PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    context.expose_function("__bastionCspViolation", lambda text: problems.append(text))
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def on_console(msg) -> None:
        if msg.type == "error":
            problems.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)

    def no_sideways_scroll() -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["viewport"]["width"], f"{page.url} is {width}px wide"

    try:
        page.goto("/login")
        page.get_by_label("Email").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()

        page.goto("/admin/")
        with page.expect_navigation():
            page.locator("#main").get_by_role("link", name="Objects and fields").click()
        no_sideways_scroll()

        # New object: API names follow the labels.
        page.locator("#o-label").fill("Project")
        page.locator("#o-label_plural").fill("Projects")
        expect(page.locator("#o-name")).to_have_value("projects")
        page.locator("#o-name_field_label").fill("Project name")
        expect(page.locator("#o-name_field_name")).to_have_value("project_name")
        with page.expect_navigation():
            page.get_by_role("button", name="Create object").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Projects")
        fields = page.locator("#fields-table")
        expect(fields.locator('tr[data-field="project_name"]')).to_contain_text("Text")
        no_sideways_scroll()

        # A lookup to accounts: its settings arrive with htmx once the type is chosen.
        with page.expect_navigation():
            page.locator("#add-field").click()
        page.locator("#f-type").select_option("lookup")
        page.locator("#f-target").select_option("accounts")
        page.locator("#f-on_delete").select_option("clear")
        page.locator("#f-label").fill("Client account")
        expect(page.locator("#f-name")).to_have_value("client_account")
        with page.expect_navigation():
            page.get_by_role("button", name="Add field").click()
        expect(fields.locator('tr[data-field="client_account"]')).to_contain_text("Account")

        # One more field, a plain one.
        with page.expect_navigation():
            page.locator("#add-field").click()
        page.locator("#f-type").select_option("integer")
        expect(page.locator("#f-min_value")).to_be_visible()
        page.locator("#f-label").fill("Budget")
        with page.expect_navigation():
            page.get_by_role("button", name="Add field").click()
        expect(fields.locator('tr[data-field="budget"]')).to_contain_text("Whole number")
        no_sideways_scroll()

        page.goto("/admin/objects")
        expect(page.locator('tr[data-object="projects"]')).to_contain_text("Custom")
        expect(page.locator('tr[data-object="projects"] td[data-label="Fields"]')).to_have_text("3")
        assert problems == []
    finally:
        context.close()
