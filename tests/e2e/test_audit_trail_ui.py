"""The audit trail in the browser: a record's History tab shows an edit with its field's
label, and the administrator's audit page finds it by filter, on a phone."""

from __future__ import annotations

import pytest

from tests.e2e.test_keyboard_and_narrow_screens import signed_in_page

pytestmark = pytest.mark.e2e


def test_history_tab_and_audit_page_on_a_phone(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(
        browser,
        live_server,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
    )
    try:
        page.goto("/o/contacts/new")
        page.get_by_label("First name").fill("Grace")
        page.get_by_label("Last name").fill("Hopper")
        page.get_by_role("button", name="Create contact").click()
        expect(page.locator("#record-title")).to_have_text("Grace Hopper")

        page.get_by_role("link", name="Edit Title").click()
        page.locator("#fact-title input[name=title]").fill("Rear Admiral")
        page.locator("#fact-title").get_by_role("button", name="Save").click()
        expect(page.locator("#fact-title .fact__value")).to_have_text("Rear Admiral")

        page.locator("#tab-history").click()
        update = page.locator("li.history__item[data-action='record.update']")
        expect(update).to_have_count(1)
        expect(update.locator(".audit-after")).to_have_text("Rear Admiral")
        expect(update).to_contain_text("Title")
        expect(page.locator("li.history__item[data-action='record.create']")).to_have_count(1)

        page.goto("/admin/audit?action=record.update&object=contacts")
        entries = page.locator("li[data-seq]")
        expect(entries).to_have_count(1)
        expect(entries.first).to_contain_text("Rear Admiral")
        sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes == [375, 375], f"the audit page scrolls sideways on a phone: {sizes}"
    finally:
        context.close()
