"""The generated record pages on a phone: create an account and a contact through the
forms, link them with the lookup type-ahead, and edit one field in place."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_keyboard_and_narrow_screens import signed_in_page

pytestmark = pytest.mark.e2e


def test_create_link_and_inline_edit_on_a_phone(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(
        browser,
        live_server,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
    )
    try:
        page.goto("/o/accounts/new")
        page.get_by_label("Account name").fill("Acme Bank")
        page.get_by_label("Industry").select_option("Banking")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#record-title")).to_have_text("Acme Bank")

        page.goto("/o/contacts/new")
        page.get_by_label("First name").fill("Ada")
        page.get_by_label("Last name").fill("Lovelace")
        account = page.get_by_role("combobox", name="Account")
        account.fill("acm")
        option = page.get_by_role("option", name="Acme Bank")
        expect(option).to_be_visible()
        option.click()
        expect(account).to_have_value("Acme Bank")
        page.get_by_role("button", name="Create contact").click()
        expect(page.locator("#record-title")).to_have_text("Ada Lovelace")
        expect(page.locator("#fact-account .fact__value a")).to_have_text("Acme Bank")

        page.get_by_role("link", name="Edit Title").click()
        page.locator("#fact-title input[name=title]").fill("Countess")
        page.locator("#fact-title").get_by_role("button", name="Save").click()
        expect(page.locator("#fact-title .fact__value")).to_have_text("Countess")
        assert re.search(r"/o/contacts/\d+$", page.url)  # swapped in place, no navigation

        page.goto("/o/contacts")
        expect(page.locator("tr[data-record]")).to_have_count(1)
        sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes == [375, 375], f"the list scrolls sideways on a phone: {sizes}"
    finally:
        context.close()
