"""Quote pages after the UX walkthrough: a line change reloads the whole page (htmx
``HX-Refresh``), who asked for approval is shown by name and in the viewer's words,
the add-line form keeps the last tax rate, the lines table has a narrow-screen
layout, and the print page has an icon and a scroll box for its lines."""

from __future__ import annotations

import pytest

from tests.plugins.sales.conftest import ADMIN, MARIA, NINA, SAM, bearer, client_as, service_as
from tests.plugins.sales.conftest import user_id as uid
from tests.plugins.sales.test_quotes_api import add_line, new_quote, shop  # noqa: F401
from tests.plugins.sales.test_quotes_ui import HX, token


@pytest.fixture
def quote(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    return new_quote(client, sam, shop)["id"]


def api_quote(sales_app, quote_id: int) -> dict:
    client = sales_app.test_client()
    return client.get(f"/api/v1/quotes/{quote_id}", headers=bearer(sales_app, ADMIN)).get_json()


def test_line_add_and_remove_ask_htmx_to_reload_the_page(sales_app, shop, quote):  # noqa: F811
    browser = client_as(sales_app, SAM)
    csrf = token(browser.get(f"/o/quotes/{quote}"))
    answer = browser.post(
        f"/sales/quotes/{quote}/lines",
        data={"csrf_token": csrf, "product": shop["widget"], "quantity": "2", "tax_rate": "19"},
        headers=HX,
    )
    assert answer.status_code == 200
    assert answer.headers.get("HX-Refresh") == "true"
    # The reloaded page shows the new totals everywhere, and says what happened.
    page = browser.get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "Line added." in page and "47.58 EUR" in page
    # A refused line keeps the panel swap (no reload: the typed input must not be lost).
    answer = browser.post(
        f"/sales/quotes/{quote}/lines",
        data={"csrf_token": csrf, "product": shop["gadget"], "quantity": "lots"},
        headers=HX,
    )
    assert answer.status_code == 422 and "HX-Refresh" not in answer.headers
    lines = sales_app.test_client().get(
        f"/api/v1/quote_lines?quote={quote}", headers=bearer(sales_app, ADMIN)
    )
    line_id = lines.get_json()["data"][0]["id"]
    admin = client_as(sales_app, ADMIN)
    csrf = token(admin.get(f"/o/quotes/{quote}"))
    answer = admin.post(
        f"/sales/quotes/{quote}/lines/{line_id}/delete", data={"csrf_token": csrf}, headers=HX
    )
    assert answer.status_code == 200 and answer.headers.get("HX-Refresh") == "true"
    assert "Line removed." in admin.get(f"/o/quotes/{quote}").get_data(as_text=True)


def test_requester_is_named_and_the_note_speaks_to_the_viewer(sales_app, shop, quote):  # noqa: F811
    client = sales_app.test_client()
    # Sam (the owner) pushes the discount over the threshold.
    add_line(client, bearer(sales_app, SAM), quote, shop["widget"], "1", discount_percent="30")
    data = api_quote(sales_app, quote)
    assert data["approval_status"] == "pending"
    assert data["approval_requested_by"] == uid(sales_app, SAM)
    assert data["approval_requested_by_name"] == "Sam Sales"
    owner_page = client_as(sales_app, SAM).get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "Waiting for your manager&#39;s approval" in owner_page
    assert "who cannot decide" not in owner_page
    assert "Sam Sales" in owner_page.split("Approval requested by")[1][:400]
    # The manager sees who asked, by name.
    manager_page = client_as(sales_app, MARIA).get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "Requested by Sam Sales." in manager_page
    decision = client_as(sales_app, MARIA).get(f"/sales/approvals/{quote}").get_data(as_text=True)
    assert "<dt>Requested by</dt><dd>Sam Sales</dd>" in decision
    # A colleague's further edit does not take the request over from the owner... but a
    # manager's edit does (she then cannot approve it herself), and she reads so.
    add_line(client, bearer(sales_app, MARIA), quote, shop["gadget"], "1", discount_percent="25")
    data = api_quote(sales_app, quote)
    assert data["approval_requested_by"] == uid(sales_app, MARIA)
    assert data["approval_requested_by_name"]
    page = client_as(sales_app, MARIA).get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "you changed a discount over the threshold" in page
    # Approval (by an administrator) clears the request and its name.
    admin = client_as(sales_app, ADMIN)
    form = admin.get(f"/sales/approvals/{quote}")
    admin.post(f"/sales/quotes/{quote}/approve", data={"csrf_token": token(form), "comment": "ok"})
    data = api_quote(sales_app, quote)
    assert data["approval_status"] == "approved"


def test_a_request_the_system_makes_is_the_owners(sales_app, shop, quote):  # noqa: F811
    """Demo data and commands write lines with nobody acting: the owner is named."""
    with service_as(sales_app, None) as system:
        system.create(
            "quote_lines",
            {"quote": quote, "product": shop["widget"], "quantity": "1", "discount_percent": "40"},
        )
    data = api_quote(sales_app, quote)
    assert data["approval_status"] == "pending"
    assert data["approval_requested_by"] == uid(sales_app, SAM)
    assert data["approval_requested_by_name"] == "Sam Sales"
    # The owner's manager still decides (the owner never does).
    listing = client_as(sales_app, MARIA).get("/sales/approvals").get_data(as_text=True)
    assert f'data-quote="{quote}"' in listing


def test_requester_name_is_read_only(sales_app, quote):
    client = sales_app.test_client()
    answer = client.patch(
        f"/api/v1/quotes/{quote}",
        json={"approval_requested_by_name": "Someone else"},
        headers={**bearer(sales_app, NINA), "If-Match": '"1"'},
    )
    assert answer.status_code in (403, 409, 422)
    assert api_quote(sales_app, quote)["approval_requested_by_name"] is None


def test_add_line_form_prefills_the_last_tax_rate(sales_app, shop, quote):  # noqa: F811
    browser = client_as(sales_app, SAM)
    html = browser.get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert 'name="tax_rate" inputmode="decimal" value=""' in html  # nothing to go by yet
    add_line(sales_app.test_client(), bearer(sales_app, SAM), quote, shop["widget"], "0.5",
             tax_rate="8.25")  # fmt: skip
    html = browser.get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert 'name="tax_rate" inputmode="decimal" value="8.25"' in html
    assert 'name="quantity" inputmode="decimal" value="1"' in html
    # Quantities and percentages without trailing zeros; the narrow-screen detail line.
    assert '<td class="num">0.5</td>' in html
    assert "19.99 each · tax 8.25 %" in html
    assert "quote-lines__wide" in html


def test_print_page_has_icon_and_scroll_box(sales_app, shop, quote):  # noqa: F811
    add_line(sales_app.test_client(), bearer(sales_app, SAM), quote, shop["widget"], "150.0",
             tax_rate="19.000")  # fmt: skip
    browser = client_as(sales_app, SAM)
    html = browser.get(f"/sales/quotes/{quote}/print").get_data(as_text=True)
    assert 'rel="icon"' in html and "favicon.svg" in html
    assert 'class="quote-sheet__scroll"' in html
    assert '<td class="num">150</td>' in html and '<td class="num">19</td>' in html
    icon = html.split('rel="icon" href="')[1].split('"')[0]
    assert browser.get(icon).status_code == 200
