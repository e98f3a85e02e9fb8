"""Quotes through HTTP: totals, prices from the price book, numbers, line rules,
the approval gate, print page and PDF (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    NINA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)


@pytest.fixture
def shop(sales_app):
    """A product catalogue, a price book and an opportunity of Sam's (Sales North)."""
    with service_as(sales_app, None) as system:
        book = system.create("price_books", {"name": "Standard EUR", "currency": "EUR"})
        widget = system.create("products", {"name": "Widget", "code": "W-1"})
        gadget = system.create("products", {"name": "Gadget", "code": "G-1"})
        unpriced = system.create("products", {"name": "Unpriced", "code": "U-1"})
        system.create(
            "price_book_entries",
            {"price_book": book.id, "product": widget.id, "unit_price": "19.99"},
        )
        system.create(
            "price_book_entries",
            {"price_book": book.id, "product": gadget.id, "unit_price": "30.00"},
        )
        account = system.create("accounts", {"name": "Acme", "owner": user_id(sales_app, SAM)})
        opportunity = system.create(
            "opportunities",
            {
                "name": "Acme deal",
                "account": account.id,
                "close_date": "2026-12-31",
                "owner": user_id(sales_app, SAM),
            },
        )
    return {
        "book": book.id,
        "widget": widget.id,
        "gadget": gadget.id,
        "unpriced": unpriced.id,
        "account": account.id,
        "opportunity": opportunity.id,
    }


def new_quote(client, headers, shop, **extra):
    response = client.post(
        "/api/v1/quotes",
        json={"opportunity": shop["opportunity"], "price_book": shop["book"], **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def add_line(client, headers, quote_id, product, quantity, status=201, **extra):
    response = client.post(
        "/api/v1/quote_lines",
        json={"quote": quote_id, "product": product, "quantity": quantity, **extra},
        headers=headers,
    )
    assert response.status_code == status, response.get_json()
    return response.get_json()


def totals(client, headers, quote_id):
    data = client.get(f"/api/v1/quotes/{quote_id}", headers=headers).get_json()
    return [data[k] for k in ("subtotal", "discount_total", "tax_total", "total")], data


def test_the_issue_example_through_the_api(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)
    assert quote["number"] == "Q-00001"
    assert quote["currency"] == "EUR"  # from the price book
    assert quote["account"] == shop["account"]  # from the opportunity
    assert quote["status"] == "draft"
    line = add_line(
        client, sam, quote["id"], shop["widget"], "3", discount_percent="12.5", tax_rate="8.25"
    )
    assert line["unit_price"] == "19.99"  # from the price book
    assert (line["line_subtotal"], line["line_discount"], line["line_tax"]) == (
        "59.97",
        "7.50",
        "4.33",
    )
    assert line["line_total"] == "56.80"
    values, data = totals(client, sam, quote["id"])
    assert values == ["59.97", "7.50", "4.33", "56.80"]
    assert data["approval_status"] == "pending"  # 12.5 % > the default threshold of 10 %
    assert new_quote(client, sam, shop)["number"] == "Q-00002"


def test_quantities_discounts_and_taxes(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "0.5", discount_percent="10", tax_rate="20")
    add_line(client, sam, quote, shop["gadget"], "1.3333")
    add_line(client, sam, quote, shop["gadget"], "2", discount_percent="100", tax_rate="19")
    add_line(client, sam, quote, shop["widget"], "1", unit_price="0.99", discount_percent="0")
    values, data = totals(client, sam, quote)
    # amounts 9.995 + 39.999 + 60 + 0.99 = 110.984 -> 110.98; discounts 1.00 + 60.00;
    # taxes 1.80 (8.995 x 20 %) + 0 + 0 + 0.
    assert values == ["110.98", "61.00", "1.80", "51.78"]
    assert data["max_discount"] == "100.00"
    for value in values:
        assert isinstance(value, str) and Decimal(value) == Decimal(value).quantize(Decimal("0.01"))


def test_many_lines_and_removal_recompute(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    ids = [
        add_line(
            client, sam, quote, shop["widget"], "1", unit_price="0.99",
            discount_percent="5", tax_rate="8.25",
        )["id"]
        for _ in range(12)
    ]  # fmt: skip
    # Each line: discount 0.0495 -> 0.05, tax 0.94 x 8.25 % = 0.07755 -> 0.08.
    assert totals(client, sam, quote)[0] == ["11.88", "0.60", "0.96", "12.24"]
    admin = bearer(sales_app, ADMIN)  # reps may not delete lines in the demo's rules
    assert client.delete(f"/api/v1/quote_lines/{ids[0]}", headers=admin).status_code == 204
    assert totals(client, sam, quote)[0] == ["10.89", "0.55", "0.88", "11.22"]
    line = client.get(f"/api/v1/quote_lines/{ids[1]}", headers=sam).get_json()
    response = client.patch(
        f"/api/v1/quote_lines/{ids[1]}",
        json={"version": line["version"], "quantity": "3"},
        headers=sam,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["line_total"] == "3.05"  # 2.97 - 0.15 = 2.82, + 0.23265 -> 0.23
    assert totals(client, sam, quote)[0][0] == "12.87"


def test_line_rules(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    problem = add_line(client, sam, quote, shop["unpriced"], "1", status=422)
    assert "Unpriced has no active price in the price book Standard EUR" in str(problem)
    # A product outside the quote's price book cannot be sold at a price of one's own.
    problem = add_line(client, sam, quote, shop["unpriced"], "1", status=422, unit_price="5.00")
    assert "only products priced there can be quoted" in str(problem)
    add_line(client, sam, quote, shop["gadget"], "1")
    # Computed fields are the server's.
    problem = add_line(client, sam, quote, shop["widget"], "1", status=422, line_total="1.00")
    assert "line_total" in str(problem)
    # Sent quotes are frozen.
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    response = client.patch(
        f"/api/v1/quotes/{quote}", json={"version": data["version"], "status": "sent"},
        headers=sam,
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    problem = add_line(client, sam, quote, shop["widget"], "1", status=422)
    assert "only be changed while it is a draft" in str(problem)
    admin = bearer(sales_app, ADMIN)
    response = client.delete(f"/api/v1/quotes/{quote}", headers=admin)
    assert response.status_code == 422
    assert "Only draft quotes" in str(response.get_json())
    # A line does not move between quotes.
    other = new_quote(client, sam, shop)["id"]
    moved = add_line(client, sam, other, shop["widget"], "1")
    response = client.patch(
        f"/api/v1/quote_lines/{moved['id']}",
        json={"version": moved["version"], "quote": quote},
        headers=sam,
    )
    assert response.status_code == 422
    # accepted is reachable from sent only; a new quote without lines cannot be sent.
    empty = new_quote(client, sam, shop)
    response = client.patch(
        f"/api/v1/quotes/{empty['id']}", json={"version": empty["version"], "status": "sent"},
        headers=sam,
    )  # fmt: skip
    assert response.status_code == 422
    assert "at least one line" in str(response.get_json())
    response = client.patch(
        f"/api/v1/quotes/{empty['id']}", json={"version": empty["version"],
        "status": "accepted"}, headers=sam,
    )  # fmt: skip
    assert response.status_code == 422


def test_one_active_price_per_product(sales_app, shop):
    client, admin = sales_app.test_client(), bearer(sales_app, ADMIN)
    response = client.post(
        "/api/v1/price_book_entries",
        json={"price_book": shop["book"], "product": shop["widget"], "unit_price": "18.00"},
        headers=admin,
    )
    assert response.status_code == 422
    assert "Widget already has an active price" in str(response.get_json())
    response = client.post(
        "/api/v1/price_book_entries",
        json={"price_book": shop["book"], "product": shop["unpriced"], "unit_price": "2.50"},
        headers=admin,
    )
    assert response.status_code == 201
    assert response.get_json()["product_name"] == "Unpriced"


def _over_threshold_quote(client, headers, shop):
    quote = new_quote(client, headers, shop)["id"]
    add_line(client, headers, quote, shop["widget"], "3", discount_percent="12.5")
    return quote


def _send(client, headers, quote_id):
    data = client.get(f"/api/v1/quotes/{quote_id}", headers=headers).get_json()
    return client.patch(
        f"/api/v1/quotes/{quote_id}",
        json={"version": data["version"], "status": "sent"},
        headers=headers,
    )


def test_approval_gate(sales_app, shop):
    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = _over_threshold_quote(client, sam, shop)
    response = _send(client, sam, quote)
    assert response.status_code == 422
    assert "approve" in response.get_json()["errors"]["status"]
    # The rep cannot approve (no permission), nor write the field.
    assert client.post(f"/api/v1/quotes/{quote}/approve", json={}, headers=sam).status_code == 403
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    response = client.patch(
        f"/api/v1/quotes/{quote}",
        json={"version": data["version"], "approval_status": "approved"},
        headers=sam,
    )
    assert response.status_code == 422
    # The manager approves; then it can be sent.
    response = client.post(
        f"/api/v1/quotes/{quote}/approve", json={"comment": "Strategic account"}, headers=maria
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["approval_status"] == "approved"
    assert response.get_json()["approval_comment"] == "Strategic account"
    assert response.get_json()["approved_at"]
    assert _send(client, sam, quote).status_code == 200
    # Deciding twice is refused.
    again = client.post(f"/api/v1/quotes/{quote}/approve", json={}, headers=maria)
    assert again.status_code == 422


def test_reject_needs_a_comment_and_line_changes_ask_again(sales_app, shop):
    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = _over_threshold_quote(client, sam, shop)
    response = client.post(f"/api/v1/quotes/{quote}/reject", json={}, headers=maria)
    assert response.status_code == 422
    assert "comment" in response.get_json()["errors"]
    response = client.post(
        f"/api/v1/quotes/{quote}/reject", json={"comment": "Too generous"}, headers=maria
    )
    assert response.status_code == 200
    assert response.get_json()["approval_status"] == "rejected"
    assert _send(client, sam, quote).status_code == 422
    # A changed line makes it a new request; at or under the threshold none is needed.
    add_line(client, sam, quote, shop["gadget"], "1", discount_percent="15")
    assert client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()[
        "approval_status"
    ] == "pending"  # fmt: skip
    small = new_quote(client, sam, shop)["id"]
    add_line(client, sam, small, shop["gadget"], "1", discount_percent="10")
    assert client.get(f"/api/v1/quotes/{small}", headers=sam).get_json()[
        "approval_status"
    ] == "not_required"  # fmt: skip
    assert _send(client, sam, small).status_code == 200


def test_a_lowered_unit_price_needs_approval_too(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop)["id"]
    add_line(client, sam, quote, shop["widget"], "1", unit_price="15.00")
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    assert (data["max_discount"], data["approval_status"]) == ("24.97", "pending")
    assert _send(client, sam, quote).status_code == 422
    # Another price book (other prices, another currency) cannot be swapped in under the
    # lines: their prices and discounts were measured against this one.
    with service_as(sales_app, None) as system:
        cheap = system.create("price_books", {"name": "Promo", "currency": "USD"})
        system.create(
            "price_book_entries",
            {"price_book": cheap.id, "product": shop["widget"], "unit_price": "15.00"},
        )
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    response = client.patch(
        f"/api/v1/quotes/{quote}",
        json={"version": data["version"], "price_book": cheap.id},
        headers=sam,
    )
    assert response.status_code == 422
    assert "remove them first" in response.get_json()["errors"]["price_book"]
    data = client.get(f"/api/v1/quotes/{quote}", headers=sam).get_json()
    assert (data["currency"], data["approval_status"]) == ("EUR", "pending")
    # Without lines it may: the currency follows the book.
    empty = new_quote(client, sam, shop)
    response = client.patch(
        f"/api/v1/quotes/{empty['id']}",
        json={"version": empty["version"], "price_book": cheap.id},
        headers=sam,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["currency"] == "USD"


def test_who_may_approve(sales_app, shop):
    client = sales_app.test_client()
    maria, admin = bearer(sales_app, MARIA), bearer(sales_app, ADMIN)
    # Maria's own quote: she cannot approve it, an administrator can.
    own = new_quote(client, maria, shop)["id"]
    add_line(client, maria, own, shop["widget"], "1", discount_percent="50")
    response = client.post(f"/api/v1/quotes/{own}/approve", json={}, headers=maria)
    assert response.status_code == 403
    assert "your own quote" in response.get_json()["detail"]
    response = client.post(f"/api/v1/quotes/{own}/approve", json={}, headers=admin)
    assert response.status_code == 200
    # Sven's quote (Sales South, under Maria's team Sales): Maria may decide.
    sven = bearer(sales_app, SVEN)
    with service_as(sales_app, None) as system:
        opp = system.create(
            "opportunities",
            {"name": "South deal", "close_date": "2026-12-31", "owner": user_id(sales_app, SVEN)},
        )
    south = new_quote(client, sven, {**shop, "opportunity": opp.id})["id"]
    add_line(client, sven, south, shop["widget"], "1", discount_percent="40")
    assert client.post(f"/api/v1/quotes/{south}/approve", json={}, headers=maria).status_code == 200


def reviewer_manager(sales_app, email):
    """Make ``email`` manager of a separate team "Partners" who holds the approving
    permission and reads every quote: she sees Sam's quotes but does not manage him."""
    from sqlalchemy import select

    from bastion.db import db
    from bastion.models import Role, RoleObjectRule, RolePermission, Team, User

    with sales_app.app_context():
        other = db.session.scalar(select(User).where(User.email == email))
        team = Team(name="Partners")
        db.session.add(team)
        db.session.flush()
        team.manager_id = other.id
        other.team_id = team.id
        role = Role(name="quote_reviewer", label="Quote reviewer")
        role.permissions.append(RolePermission(permission="sales.approve_quotes"))
        for name in ("quotes", "quote_lines"):
            role.object_rules.append(RoleObjectRule(object_name=name, can_read=True, scope="all"))
        db.session.add(role)
        other.roles.append(role)
        db.session.commit()


def test_a_manager_of_another_team_cannot_approve(sales_app, shop):
    reviewer_manager(sales_app, NINA)
    client = sales_app.test_client()
    sam, nina = bearer(sales_app, SAM), bearer(sales_app, NINA)
    quote = _over_threshold_quote(client, sam, shop)
    assert client.get(f"/api/v1/quotes/{quote}", headers=nina).status_code == 200
    response = client.post(f"/api/v1/quotes/{quote}/approve", json={}, headers=nina)
    assert response.status_code == 403
    assert "owner's manager" in response.get_json()["detail"]
    # Her approvals list stays empty; Maria's shows the quote.
    listing = client_as(sales_app, NINA).get("/sales/approvals").get_data(as_text=True)
    assert f'data-quote="{quote}"' not in listing
    listing = client_as(sales_app, MARIA).get("/sales/approvals").get_data(as_text=True)
    assert f'data-quote="{quote}"' in listing


def test_decisions_are_audited(sales_app, shop):
    from sqlalchemy import select

    from bastion.audit.models import AuditEntry
    from bastion.db import db

    client = sales_app.test_client()
    sam, maria = bearer(sales_app, SAM), bearer(sales_app, MARIA)
    quote = _over_threshold_quote(client, sam, shop)
    client.post(f"/api/v1/quotes/{quote}/reject", json={"comment": "No"}, headers=maria)
    client.post(f"/api/v1/quotes/{quote}/approve", json={}, headers=sam)  # no permission
    own = new_quote(client, maria, shop)["id"]
    add_line(client, maria, own, shop["widget"], "1", discount_percent="50")
    assert client.post(f"/api/v1/quotes/{own}/approve", json={}, headers=maria).status_code == 403
    with sales_app.app_context():
        rows = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("sales.quote.%"))
        ).all()
        actions = [(row.action, row.outcome, str(row.object_id)) for row in rows]
    assert ("sales.quote.approval_requested", "success", str(quote)) in actions
    assert ("sales.quote.reject", "success", str(quote)) in actions
    assert ("sales.quote.approve", "denied", str(own)) in actions


def test_another_teams_rep_cannot_see_or_decide(sales_app, shop):
    client = sales_app.test_client()
    sam, sven = bearer(sales_app, SAM), bearer(sales_app, SVEN)
    quote = _over_threshold_quote(client, sam, shop)
    assert client.get(f"/api/v1/quotes/{quote}", headers=sven).status_code == 404
    browser = client_as(sales_app, SVEN)
    assert browser.get(f"/sales/quotes/{quote}/print").status_code == 404
    assert browser.get(f"/sales/quotes/{quote}.pdf").status_code == 404


def test_print_page_and_pdf(sales_app, shop):
    client, sam = sales_app.test_client(), bearer(sales_app, SAM)
    quote = new_quote(client, sam, shop, title="Über-deal “Ω”", terms="Net 30")["id"]
    add_line(client, sam, quote, shop["widget"], "3", discount_percent="5", tax_rate="8.25")
    browser = client_as(sales_app, SAM)
    page = browser.get(f"/sales/quotes/{quote}/print")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/static/plugins/sales/quote-print.css" in html
    assert "Q-00001" in html and "Widget" in html and "59.97" in html
    assert 'class="site-nav' not in html
    assert browser.get("/static/plugins/sales/quote-print.css").status_code == 200
    pdf = browser.get(f"/sales/quotes/{quote}.pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
