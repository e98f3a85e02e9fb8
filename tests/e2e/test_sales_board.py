"""The pipeline board in Chromium: drag an opportunity to another stage with the mouse at
a desktop viewport, and with a finger on a 375 px phone (touch events through the
DevTools protocol, which Chromium turns into pointer events of type "touch"); the board
updates in place and the stage is saved."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_keyboard_and_narrow_screens import signed_in_page

pytestmark = pytest.mark.e2e


def _set_up(page, names: list[str]) -> dict:
    """A default pipeline made on the settings page, and opportunities made by the API."""
    page.goto("/sales/settings/pipelines")
    page.locator("#new-pipeline-name").fill("Main")
    page.get_by_role("button", name="Create pipeline").click()
    page.wait_for_url("**/sales/settings/pipelines*")
    ids = {}
    for name in names:
        page.goto("/o/opportunities/new")
        page.locator("#f-name").fill(name)
        page.locator("#f-amount").fill("1200.00")
        page.locator("#f-close_date").fill("2026-12-31")
        page.get_by_role("button", name="Create opportunity").click()
        page.wait_for_url(re.compile(r".*/o/opportunities/\d+$"))
        ids[name] = int(page.url.rsplit("/", 1)[1])
    return ids


def _stage_id(page, name: str) -> str:
    column = page.locator(".board__column", has=page.get_by_role("heading", name=name, exact=True))
    return column.get_attribute("data-stage-id")


def _saved_stage(page, record_id: int) -> int:
    response = page.request.get(f"/api/v1/opportunities/{record_id}")
    assert response.status == 200
    return response.json()["stage"]


def test_drag_a_card_with_the_mouse(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(browser, live_server, viewport={"width": 1280, "height": 800})
    try:
        ids = _set_up(page, ["Desktop deal"])
        page.goto("/sales/board")
        source, target = _stage_id(page, "Qualification"), _stage_id(page, "Proposal")
        card = page.locator(f'[data-stage-id="{source}"] [data-card]', has_text="Desktop deal")
        expect(card).to_have_count(1)
        start = card.locator(".board-card__line").first.bounding_box()
        drop = page.locator(f'[data-stage-id="{target}"]').bounding_box()
        page.mouse.move(start["x"] + 10, start["y"] + start["height"] / 2)
        page.mouse.down()
        page.mouse.move(start["x"] + 40, start["y"] + 20, steps=4)
        page.mouse.move(drop["x"] + drop["width"] / 2, drop["y"] + 60, steps=8)
        expect(page.locator(f'[data-stage-id="{target}"].board__column--drop')).to_have_count(1)
        page.mouse.up()

        moved = page.locator(f'[data-stage-id="{target}"] [data-card]', has_text="Desktop deal")
        expect(moved).to_have_count(1)
        expect(page.locator("#board-status")).to_have_text("Moved Desktop deal to Proposal.")
        expect(page.locator(f'[data-stage-id="{target}"] [data-count]')).to_have_text("1")
        expect(page.locator(f'[data-stage-id="{source}"] [data-count]')).to_have_text("0")
        assert _saved_stage(page, ids["Desktop deal"]) == int(target)
        page.reload()
        expect(moved).to_have_count(1)
    finally:
        context.close()


def test_drag_a_card_by_touch_on_a_phone(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(
        browser,
        live_server,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
    )
    try:
        ids = _set_up(page, ["Phone deal"])
        page.goto("/sales/board")
        sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes == [375, 375], f"the board page scrolls sideways on a phone: {sizes}"
        source = _stage_id(page, "Qualification")
        card = page.locator(f'[data-stage-id="{source}"] [data-card]', has_text="Phone deal")
        handle = card.locator("[data-drag-handle]").bounding_box()
        assert handle["width"] >= 36 and handle["height"] >= 44, "the handle is touch-sized"
        next_column = page.locator(".board__column").nth(1).bounding_box()
        x0 = handle["x"] + handle["width"] / 2
        y0 = handle["y"] + handle["height"] / 2
        # Into the part of the next column that shows at the right edge of the screen.
        x1 = min(next_column["x"] + 12, 375 - 50)
        y1 = next_column["y"] + 80

        cdp = context.new_cdp_session(page)

        def touch(kind: str, x: float | None = None, y: float | None = None) -> None:
            points = [] if x is None else [{"x": x, "y": y, "id": 1}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", x0, y0)
        steps = 10
        for step in range(1, steps + 1):
            touch("touchMove", x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
        # The column under the finger when it lifts is where the card goes.
        target = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y).closest('[data-stage-id]')"
            ".getAttribute('data-stage-id')",
            [x1, y1],
        )
        assert target != source
        touch("touchEnd")

        moved = page.locator(f'[data-stage-id="{target}"] [data-card]', has_text="Phone deal")
        expect(moved).to_have_count(1)
        expect(page.locator("#board-status")).to_contain_text("Moved Phone deal to")
        expect(page.locator(f'[data-stage-id="{source}"] [data-count]')).to_have_text("0")
        assert _saved_stage(page, ids["Phone deal"]) == int(target)
    finally:
        context.close()


def test_move_with_the_menu_by_keyboard(browser, live_server):
    from playwright.sync_api import expect

    context, page = signed_in_page(browser, live_server, viewport={"width": 1280, "height": 800})
    try:
        ids = _set_up(page, ["Keyboard deal"])
        page.goto("/sales/board")
        target = _stage_id(page, "Negotiation")
        menu = page.get_by_label("Move Keyboard deal to")
        menu.select_option(target)
        menu.focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.locator("#board-status")).to_have_text("Moved Keyboard deal to Negotiation.")
        assert _saved_stage(page, ids["Keyboard deal"]) == int(target)
        expect(page.get_by_label("Move Keyboard deal to")).to_be_focused()
    finally:
        context.close()


def test_an_answer_that_is_not_the_board_never_replaces_it(browser, live_server):
    """After the session ends, a move answers the login page (or a CSRF refusal): the
    board is not replaced by it; the page reloads (to the login) or says to reload."""
    from playwright.sync_api import expect

    context, page = signed_in_page(browser, live_server, viewport={"width": 1280, "height": 800})
    try:
        _set_up(page, ["Expired deal"])
        page.goto("/sales/board")
        target = _stage_id(page, "Proposal")
        context.clear_cookies()
        menu = page.get_by_label("Move Expired deal to")
        menu.select_option(target)
        page.get_by_role("button", name="Move Expired deal").click()
        page.wait_for_function(
            "() => location.pathname.startsWith('/login') || "
            "/reload the page/.test(document.getElementById('board-status').textContent)"
        )
        if not page.url.rsplit("?", 1)[0].endswith("/login"):
            expect(page.locator("#board [data-board-columns]")).to_have_count(1)
            expect(page.locator("#board form[action*='login']")).to_have_count(0)
    finally:
        context.close()
