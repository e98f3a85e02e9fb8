"""quotes area of the sales plugin (see bastion_sales.area for what it contributes).

Products and price books use the core's generic pages; this area adds the quote
arithmetic (``pricing``), the rules of quotes, lines and prices (``rules``), discount
approval (``approval``), the line items panel, print page, PDF and approvals pages
(``views``).
"""

from __future__ import annotations

from typing import Any

from bastion.api import (
    Filter,
    NavItem,
    Permission,
    RecordAction,
    RecordError,
    RecordPanel,
    request_service,
    url_for,
)
from bastion_sales.quotes import approval, document, rules, views

PERMISSIONS = [
    Permission(
        approval.APPROVE,
        "Approve quote discounts",
        "Approve or reject quotes whose discount exceeds the threshold, for the people "
        "one manages.",
    )
]

CHANGING = {
    "quotes": rules.quote_changing,
    "quote_lines": rules.line_changing,
    "price_book_entries": rules.entry_changing,
}
CHANGED = {"quote_lines": rules.line_changed, "quotes": rules.quote_changed}


def nav_items(user: Any) -> list[NavItem]:
    return [
        NavItem(
            "Approvals",
            "sales.approvals",
            icon="check-circle",
            permission=approval.APPROVE,
            order=260,
        )
    ]


def panels(object_name: str, record: Any, user: Any) -> list[RecordPanel]:
    if object_name == "quotes":
        context = views.lines_context(request_service(), record.id)
        return [
            RecordPanel(
                "Line items",
                "sales/quotes/_lines_panel.html",
                {"p": context},
                order=10,
                placement="top",  # the lines and totals are what a quote is about
            )
        ]
    if object_name == "price_books":
        return _price_book_panel(record)
    return []


def _price_book_panel(record: Any) -> list[RecordPanel]:
    service = request_service()
    if not service.can("price_book_entries", "read"):
        return []
    try:
        entries = service.query(
            "price_book_entries",
            filters=(Filter("price_book", "eq", record.id),),
            sort="product_name",
            limit=200,
        ).records
    except RecordError:
        return []
    context = {
        "entries": entries,
        "currency": record.get("currency") or "",
        "book": record,
        "money": document.money,
    }
    return [RecordPanel("Prices", "sales/quotes/_price_book_panel.html", {"p": context}, order=10)]


def actions(object_name: str, record: Any, user: Any) -> list[RecordAction]:
    if object_name != "quotes":
        return []
    found = [
        RecordAction("Print", url_for("sales.print_quote", quote_id=record.id), order=50),
        RecordAction("PDF", url_for("sales.quote_pdf", quote_id=record.id), order=51),
    ]
    status, state = record.get("status"), record.get("approval_status")
    sendable = state in ("not_required", "approved", None)
    if status == "draft" and sendable and request_service().can("quotes", "edit"):
        found.append(
            RecordAction(
                "Mark sent",
                url_for("sales.mark_sent", quote_id=record.id, version=record.version),
                method="post",
                style="primary",
                order=40,
                confirm="Mark this quote as sent to the customer?",
            )
        )
    if state == "pending" and approval.may_decide(user, record):
        found += [
            RecordAction(
                "Approve",
                url_for("sales.approve_page", quote_id=record.id),
                method="post",
                style="primary",
                order=30,
                confirm="Approve the discount on this quote?",
            ),
            RecordAction(
                "Reject",
                url_for("sales.decision", quote_id=record.id),
                order=31,
                style="danger",
            ),
        ]
    return found
