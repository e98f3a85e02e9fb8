"""Quote pages: the line items panel (htmx and plain forms), record actions, marking
sent, the approvals list and the approve/reject form."""

from __future__ import annotations

import pytest

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import ADMIN, MARIA, SAM, bearer, client_as
from tests.plugins.sales.test_quotes_api import add_line, new_quote, shop  # noqa: F401

HX = {"HX-Request": "true"}


def token(page) -> str:
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match
    return match.group(1)


@pytest.fixture
def quote(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    return new_quote(client, sam, shop)["id"]


def test_panel_adds_and_removes_lines_with_htmx(sales_app, shop, quote):  # noqa: F811
    browser = client_as(sales_app, SAM)
    page = browser.get(f"/o/quotes/{quote}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Line items" in html and 'id="quote-lines"' in html
    assert "Widget (19.99 EUR)" in html  # the price book's active entries to choose from
    assert "Unpriced" not in html
    assert f"/sales/quotes/{quote}/print" in html and ">PDF<" in html
    csrf = token(page)
    answer = browser.post(
        f"/sales/quotes/{quote}/lines",
        data={"csrf_token": csrf, "product": shop["widget"], "quantity": "3",
              "discount_percent": "12.5", "tax_rate": "8.25"},
        headers=HX,
    )  # fmt: skip
    body = answer.get_data(as_text=True)
    assert answer.status_code == 200, body
    assert body.lstrip().startswith('<div id="quote-lines"')
    assert "56.80 EUR" in body and "59.97 EUR" in body
    assert "Waiting for your manager" in body  # over the threshold
    assert answer.headers.get("HX-Refresh") == "true"  # totals and actions change too
    # Bad input: a clear message, the form keeps what was typed.
    answer = browser.post(
        f"/sales/quotes/{quote}/lines",
        data={"csrf_token": csrf, "product": shop["gadget"], "quantity": "lots"},
        headers=HX,
    )
    body = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "Quantity must be a number" in body and 'value="lots"' in body
    # Without JavaScript: the same form posts and comes back to the quote.
    answer = browser.post(
        f"/sales/quotes/{quote}/lines",
        data={"csrf_token": csrf, "product": shop["gadget"], "quantity": "1"},
    )
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/o/quotes/{quote}")
    # Removing needs the delete permission (administrators here).
    admin = client_as(sales_app, ADMIN)
    page = admin.get(f"/o/quotes/{quote}")
    html = page.get_data(as_text=True)
    assert "Remove line Gadget" in html
    lines = bearer(sales_app, ADMIN)
    ids = [
        row["id"]
        for row in sales_app.test_client()
        .get(f"/api/v1/quote_lines?quote={quote}&sort=id", headers=lines)
        .get_json()["data"]
    ]
    answer = admin.post(
        f"/sales/quotes/{quote}/lines/{ids[-1]}/delete", data={"csrf_token": token(page)},
        headers=HX,
    )  # fmt: skip
    assert answer.status_code == 200
    assert "Gadget" not in answer.get_data(as_text=True).split("Add a line")[0]


def test_csrf_is_required(sales_app, shop, quote):  # noqa: F811
    browser = client_as(sales_app, SAM)
    answer = browser.post(f"/sales/quotes/{quote}/lines", data={"product": shop["widget"]})
    assert answer.status_code in (400, 403)


def test_mark_sent_and_approval_pages(sales_app, shop, quote):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    add_line(client, sam, quote, shop["widget"], "1", discount_percent="30")
    rep = client_as(sales_app, SAM)
    page = rep.get(f"/o/quotes/{quote}")
    assert "Mark sent" not in page.get_data(as_text=True)  # waiting for approval
    answer = rep.post(f"/sales/quotes/{quote}/send", data={"csrf_token": token(page)})
    assert answer.status_code == 302
    follow = rep.get(answer.headers["Location"]).get_data(as_text=True)
    assert "approve its discount" in follow
    assert rep.get("/sales/approvals").status_code == 403
    manager = client_as(sales_app, MARIA)
    listing = manager.get("/sales/approvals")
    html = listing.get_data(as_text=True)
    assert listing.status_code == 200 and f'data-quote="{quote}"' in html
    assert ">Approvals<" in manager.get("/").get_data(as_text=True)  # navigation entry
    detail = manager.get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert ">Approve<" in detail and ">Reject<" in detail
    form = manager.get(f"/sales/approvals/{quote}")
    assert form.status_code == 200
    answer = manager.post(
        f"/sales/quotes/{quote}/reject", data={"csrf_token": token(form), "comment": ""}
    )
    assert answer.status_code == 302
    assert "Say why" in manager.get(answer.headers["Location"]).get_data(as_text=True)
    answer = manager.post(
        f"/sales/quotes/{quote}/approve", data={"csrf_token": token(form), "comment": "OK"}
    )
    assert answer.status_code == 302
    assert f'data-quote="{quote}"' not in manager.get("/sales/approvals").get_data(as_text=True)
    page = rep.get(f"/o/quotes/{quote}")
    assert "Mark sent" in page.get_data(as_text=True)
    answer = rep.post(f"/sales/quotes/{quote}/send", data={"csrf_token": token(page)})
    assert answer.status_code == 302
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    assert data["status"] == "sent"


def test_price_book_panel_lists_prices(sales_app, shop):  # noqa: F811
    admin = client_as(sales_app, ADMIN)
    html = admin.get(f"/o/price_books/{shop['book']}").get_data(as_text=True)
    assert "Prices" in html and "Widget" in html and "19.99 EUR" in html
