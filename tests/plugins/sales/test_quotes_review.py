"""Quotes: the holes a review found, each closed and kept closed (SQLite and PostgreSQL).

Price book switches and unpriced products, owner changes and who may decide, the
send-time check against the current threshold and list prices, oversized amounts,
the "not approved" marking on print and PDF, CSRF and malformed bodies.
"""

from __future__ import annotations

import re

import pytest

from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    NINA,
    SAM,
    bearer,
    client_as,
    service_as,
    user_id,
)
from tests.plugins.sales.test_quotes_api import (  # noqa: F401
    _send,
    add_line,
    new_quote,
    shop,
)
from tests.plugins.sales.test_quotes_ui import token


def get(client, headers, quote_id):
    return client.get(f"/api/v1/quotes/{quote_id}", headers=headers).get_json()


def patch(client, headers, quote_id, **values):
    data = get(client, headers, quote_id)
    return client.patch(
        f"/api/v1/quotes/{quote_id}", json={"version": data["version"], **values}, headers=headers
    )


def approve(client, headers, quote_id, comment="OK"):
    return client.post(
        f"/api/v1/quotes/{quote_id}/approve", json={"comment": comment}, headers=headers
    )


def set_threshold(app, value: str) -> None:
    from bastion.api import set_plugin_setting

    with app.app_context():
        set_plugin_setting("sales", "discount_threshold", value, actor=None)


# --------------------------------------------------------------------------- price books


def test_switching_the_price_book_cannot_clear_an_approval(sales_app, shop):  # noqa: F811
    """Finding 1: 100 x Widget at 0.01 (list 19.99), then a book without Widget."""
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    with service_as(sales_app, None) as system:
        other = system.create("price_books", {"name": "Other EUR", "currency": "EUR"})
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "100", unit_price="0.01")
    assert get(client, sam, quote)["approval_status"] == "pending"
    response = patch(client, sam, quote, price_book=other.id)
    assert response.status_code == 422
    assert "remove them first" in response.get_json()["errors"]["price_book"]
    data = get(client, sam, quote)
    assert (data["price_book"], data["approval_status"]) == (shop["book"], "pending")
    assert data["max_discount"] == "99.95"
    assert _send(client, sam, quote).status_code == 422


def test_only_active_prices_of_active_products_and_books_are_quotable(sales_app, shop):  # noqa: F811
    """Finding 2 and the inactive cases."""
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    problem = add_line(client, sam, quote, shop["unpriced"], "1", status=422, unit_price="1")
    assert "Unpriced has no active price" in problem["errors"]["product"]
    with service_as(sales_app, None) as system:
        entry = system.query("price_book_entries").records
        gadget_entry = next(e for e in entry if e.get("product") == shop["gadget"])
        system.update(
            "price_book_entries", gadget_entry.id, {"active": False}, version=gadget_entry.version
        )
        widget = system.get("products", shop["widget"])
        system.update("products", widget.id, {"active": False}, version=widget.version)
    problem = add_line(client, sam, quote, shop["gadget"], "1", status=422, unit_price="30")
    assert "no active price" in problem["errors"]["product"]
    problem = add_line(client, sam, quote, shop["widget"], "1", status=422)
    assert "inactive product" in problem["errors"]["product"]
    html = client_as(sales_app, SAM).get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "Add a line" in html
    assert "Widget (" not in html and "Gadget (" not in html  # nothing offered
    # An inactive price book takes no new quotes.
    with service_as(sales_app, None) as system:
        book = system.get("price_books", shop["book"])
        system.update("price_books", book.id, {"active": False}, version=book.version)
    response = client.post(
        "/api/v1/quotes",
        json={"opportunity": shop["opportunity"], "price_book": shop["book"]},
        headers=sam,
    )
    assert response.status_code == 422
    assert "inactive" in response.get_json()["errors"]["price_book"]


def test_a_price_withdrawn_after_the_line_blocks_sending(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["gadget"], "1")
    with service_as(sales_app, None) as system:
        entry = next(
            e
            for e in system.query("price_book_entries").records
            if e.get("product") == shop["gadget"]
        )
        system.update("price_book_entries", entry.id, {"active": False}, version=entry.version)
    response = _send(client, sam, quote)
    assert response.status_code == 422
    assert "No active price" in response.get_json()["errors"]["status"]


# --------------------------------------------------------------------------- who decides


def test_an_owner_change_asks_for_approval_again(sales_app, shop):  # noqa: F811
    """Finding 3: Maria hands her pending quote to Sam to approve it as his manager."""
    client = sales_app.test_client()
    maria, admin = bearer(sales_app, MARIA), bearer(sales_app, ADMIN)
    quote = new_quote(client, maria, shop)["id"]
    add_line(client, maria, quote, shop["widget"], "1", discount_percent="50")
    response = patch(client, maria, quote, owner=user_id(sales_app, SAM))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["approval_status"] == "pending"
    assert data["approval_requested_by"] == user_id(sales_app, MARIA)
    response = approve(client, maria, quote)
    assert response.status_code == 403
    assert "you asked for this approval" in response.get_json()["detail"]
    html = client_as(sales_app, SAM).get(f"/o/quotes/{quote}").get_data(as_text=True)
    assert "who therefore cannot approve it" in html
    # An approved quote that changes hands is asked again, and not by the one who moved it.
    assert approve(client, admin, quote).status_code == 200
    # Changing hands and sending in one write does not slip through either.
    response = patch(client, admin, quote, owner=user_id(sales_app, MARIA), status="sent")
    assert response.status_code == 422
    assert "waits for the owner's manager" in response.get_json()["errors"]["status"]
    response = patch(client, admin, quote, owner=user_id(sales_app, MARIA))
    assert response.get_json()["approval_status"] == "pending"
    assert _send(client, maria, quote).status_code == 422
    assert approve(client, maria, quote).status_code == 403  # her own quote again
    from sqlalchemy import select

    from bastion.audit.models import AuditEntry
    from bastion.db import db

    with sales_app.app_context():
        requests = db.session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "sales.quote.approval_requested",
                AuditEntry.object_id == str(quote),
            )
        ).all()
    actors = [row.actor for row in requests]
    assert actors.count(f"user:{user_id(sales_app, MARIA)}") == 2  # line, then owner
    assert f"user:{user_id(sales_app, ADMIN)}" in actors
    # A quote that never needed approval keeps not needing it.
    small = new_quote(client, maria, shop)["id"]
    add_line(client, maria, small, shop["widget"], "1", discount_percent="5")
    response = patch(client, maria, small, owner=user_id(sales_app, SAM))
    assert response.get_json()["approval_status"] == "not_required"


def test_a_manager_cannot_approve_a_discount_she_entered(sales_app, shop):  # noqa: F811
    client = sales_app.test_client()
    sam, maria, admin = (bearer(sales_app, e) for e in (SAM, MARIA, ADMIN))
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, maria, quote, shop["widget"], "1", discount_percent="60")
    data = get(client, sam, quote)
    assert (data["approval_status"], data["approval_requested_by"]) == (
        "pending",
        user_id(sales_app, MARIA),
    )
    # The owner, or a colleague without the approving permission, touching the lines
    # afterwards does not launder her request.
    add_line(client, sam, quote, shop["gadget"], "1")
    add_line(client, bearer(sales_app, NINA), quote, shop["gadget"], "2")
    assert get(client, sam, quote)["approval_requested_by"] == user_id(sales_app, MARIA)
    assert approve(client, maria, quote).status_code == 403
    listing = client_as(sales_app, MARIA).get("/sales/approvals").get_data(as_text=True)
    assert f'data-quote="{quote}"' not in listing
    assert approve(client, admin, quote).status_code == 200
    # The field is the server's.
    response = patch(client, admin, quote, approval_requested_by=None)
    assert response.status_code == 422


def test_recompute_refuses_lines_of_a_quote_sent_meanwhile(sales_app, shop):  # noqa: F811
    """The race of a line change with "mark sent": the recompute sees the sent quote and
    refuses (a Conflict the core turns into a rollback of the line change)."""
    from bastion.api import Conflict
    from bastion_sales.quotes import rules

    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["gadget"], "1")
    assert _send(client, sam, quote).status_code == 200
    with sales_app.app_context(), pytest.raises(Conflict):
        rules.recompute(quote)


def test_sending_with_a_stale_version_conflicts(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["gadget"], "1")
    seen = get(client, sam, quote)["version"]
    add_line(client, sam, quote, shop["widget"], "1")  # someone adds a line meanwhile
    response = client.patch(
        f"/api/v1/quotes/{quote}", json={"version": seen, "status": "sent"}, headers=sam
    )
    assert response.status_code == 409
    # The page's "Mark sent" carries the version it showed.
    rep = client_as(sales_app, SAM)
    page = rep.get(f"/o/quotes/{quote}")
    current = get(client, sam, quote)["version"]
    assert f"/sales/quotes/{quote}/send?version={current}" in page.get_data(as_text=True)
    answer = rep.post(
        f"/sales/quotes/{quote}/send?version={seen}", data={"csrf_token": token(page)}
    )
    assert answer.status_code == 302
    assert get(client, sam, quote)["status"] == "draft"
    answer = rep.post(
        f"/sales/quotes/{quote}/send?version={current}", data={"csrf_token": token(page)}
    )
    assert get(client, sam, quote)["status"] == "sent"


# --------------------------------------------------------------------------- sending


def test_changed_lines_of_an_approved_quote_need_approval_again(sales_app, shop):  # noqa: F811
    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "1", discount_percent="30")
    assert approve(client, maria, quote).status_code == 200
    add_line(client, sam, quote, shop["gadget"], "1")
    assert get(client, sam, quote)["approval_status"] == "pending"
    assert _send(client, sam, quote).status_code == 422
    # Sent, back to draft, a line changed: the gate applies again.
    assert approve(client, maria, quote).status_code == 200
    assert _send(client, sam, quote).status_code == 200
    assert patch(client, sam, quote, status="draft").status_code == 200
    add_line(client, sam, quote, shop["gadget"], "1", discount_percent="20")
    assert _send(client, sam, quote).status_code == 422


def test_a_lowered_threshold_applies_when_sending(sales_app, shop):  # noqa: F811
    """Finding 5 (and 4): a 9 % line under the default 10 %, then a threshold of 5 %."""
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "1", discount_percent="9")
    other = new_quote(client, sam, shop)["id"]
    add_line(client, sam, other, shop["widget"], "1", discount_percent="9")
    assert get(client, sam, quote)["approval_status"] == "not_required"
    set_threshold(sales_app, "5")
    response = _send(client, sam, quote)
    assert response.status_code == 422
    assert "threshold of 5 %" in response.get_json()["errors"]["status"]
    # The API asks for approval explicitly...
    response = client.post(f"/api/v1/quotes/{quote}/request-approval", headers=sam)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["approval_status"] == "pending"
    assert response.get_json()["approval_requested_by"] == user_id(sales_app, SAM)
    # ... the page's "Mark sent" does it by itself.
    rep = client_as(sales_app, SAM)
    page = rep.get(f"/o/quotes/{other}")
    answer = rep.post(f"/sales/quotes/{other}/send", data={"csrf_token": token(page)})
    assert answer.status_code == 302
    assert "now waits for the owner" in rep.get(answer.headers["Location"]).get_data(as_text=True)
    data = get(client, sam, other)
    assert (data["status"], data["approval_status"]) == ("draft", "pending")
    assert approve(client, bearer(sales_app, MARIA), other).status_code == 200
    assert _send(client, sam, other).status_code == 200


def test_a_list_price_raised_after_approval_blocks_sending(sales_app, shop):  # noqa: F811
    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "1", unit_price="15.00")  # 24.97 % off
    assert approve(client, maria, quote).status_code == 200
    with service_as(sales_app, None) as system:
        entry = next(
            e
            for e in system.query("price_book_entries").records
            if e.get("product") == shop["widget"]
        )
        system.update(
            "price_book_entries", entry.id, {"unit_price": "30.00"}, version=entry.version
        )
    response = _send(client, sam, quote)
    assert response.status_code == 422
    assert "more than the 24.97 % that was approved" in response.get_json()["errors"]["status"]


# --------------------------------------------------------------------------- sizes


def test_oversized_amounts_are_refused_clearly(sales_app, shop):  # noqa: F811
    """Finding 6: 1000000 x 99999999999999 was an HTTP 500."""
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    problem = add_line(
        client, sam, quote, shop["widget"], "1000000", status=422, unit_price="99999999999999"
    )
    assert "too large" in problem["errors"]["quantity"]
    # Lines that fit one by one, but not together.
    add_line(client, sam, quote, shop["widget"], "1", unit_price="4000000000000")
    problem = add_line(
        client, sam, quote, shop["widget"], "1", status=422, unit_price="4000000000000",
        tax_rate="100",
    )  # fmt: skip
    assert "the quote would come to more than" in problem["errors"]["quantity"]
    data = get(client, sam, quote)
    assert data["total"] == "4000000000000.00"


# --------------------------------------------------------------------------- paper


def test_print_and_pdf_mark_an_unapproved_quote(sales_app, shop):  # noqa: F811
    from bastion.api import RecordService
    from bastion_sales.quotes import document, pdf

    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "3", discount_percent="12.5", tax_rate="8.25")
    browser = client_as(sales_app, SAM)
    html = browser.get(f"/sales/quotes/{quote}/print").get_data(as_text=True)
    assert "NOT APPROVED - DRAFT" in html and "quote-sheet--unapproved" in html

    def pdf_text() -> str:
        with sales_app.app_context():
            doc = document.load(RecordService(None, system=True), quote)
            return pdf.render(doc, compress=False).decode("latin-1")

    text = pdf_text()
    assert "NOT APPROVED - DRAFT" in text
    assert re.search(r"56\.80 EUR", text)  # the total, as the server computed it
    download = browser.get(f"/sales/quotes/{quote}.pdf")
    assert download.status_code == 200 and download.data.startswith(b"%PDF")
    client.post(f"/api/v1/quotes/{quote}/reject", json={"comment": "No"}, headers=maria)
    assert "NOT APPROVED - DRAFT" in pdf_text()
    add_line(client, sam, quote, shop["gadget"], "1")  # pending again
    assert approve(client, maria, quote).status_code == 200
    html = browser.get(f"/sales/quotes/{quote}/print").get_data(as_text=True)
    assert "NOT APPROVED" not in html
    assert "NOT APPROVED" not in pdf_text()


def test_long_product_names_are_shortened_with_an_ellipsis(sales_app):
    from fpdf import FPDF

    from bastion_sales.quotes.pdf import fit

    with sales_app.app_context():
        sheet = FPDF()
        sheet.add_page()
        sheet.set_font("Helvetica", "", 9)
        short = fit(sheet, "A" * 200, 68)
        assert short.endswith("...") and sheet.get_string_width(short) <= 68
        assert fit(sheet, "Widget", 68) == "Widget"


# --------------------------------------------------------------------------- requests


def test_csrf_guards_every_quote_form(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    line = add_line(client, sam, quote, shop["widget"], "1", discount_percent="30")
    rep, manager = client_as(sales_app, SAM), client_as(sales_app, MARIA)
    assert rep.post(f"/sales/quotes/{quote}/send").status_code in (400, 403)
    assert rep.post(f"/sales/quotes/{quote}/lines/{line['id']}/delete").status_code in (400, 403)
    assert manager.post(f"/sales/quotes/{quote}/approve").status_code in (400, 403)
    assert manager.post(f"/sales/quotes/{quote}/reject", data={"comment": "x"}).status_code in (
        400,
        403,
    )
    data = get(client, sam, quote)
    assert (data["status"], data["approval_status"]) == ("draft", "pending")
    assert client.get(f"/api/v1/quote_lines/{line['id']}", headers=sam).status_code == 200


def test_a_malformed_json_body_is_a_400(sales_app, shop):  # noqa: F811
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    maria = bearer(sales_app, MARIA)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "1", discount_percent="30")
    response = client.post(
        f"/api/v1/quotes/{quote}/approve",
        data='{"comment": "half',
        headers={**maria, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["detail"]
    assert get(client, sam, quote)["approval_status"] == "pending"
