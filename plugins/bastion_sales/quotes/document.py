"""A quote with its lines and display names, as the lines panel, print page and PDF show it.

Everything is read through the service given (the user's, so record scope and field
security apply: a field the user may not read is simply absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bastion.api import Filter, RecordService, user_info

MAX_LINES = 500


def money(value: Any) -> str:
    """An exact amount with thousands separators and two decimals ("" when empty)."""
    if value is None or value == "":
        return ""
    return f"{Decimal(value):,.2f}"


def number(value: Any) -> str:
    """A quantity or percentage without trailing zeros ("1.5", "12.5", "3")."""
    if value is None or value == "":
        return ""
    text = f"{Decimal(value):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class QuoteDocument:
    quote: Any
    lines: list[Any]
    product_names: dict[int, str]
    names: dict[str, str] = field(default_factory=dict)
    owner_name: str = ""

    @property
    def currency(self) -> str:
        return self.quote.get("currency") or ""

    @property
    def number(self) -> str:
        return self.quote.get("number") or f"Quote {self.quote.id}"

    @property
    def unapproved(self) -> str:
        """The marking a pending or rejected quote carries on paper ("" when none)."""
        state = self.quote.get("approval_status")
        if state == "pending":
            return "NOT APPROVED - DRAFT: the discount awaits the manager's approval"
        if state == "rejected":
            return "NOT APPROVED - DRAFT: the discount was rejected"
        return ""

    def product(self, line: Any) -> str:
        return line.get("description") or self.product_names.get(line.get("product"), "")


def load(service: RecordService, quote_id: int) -> QuoteDocument:
    """The quote and its lines as the service's user may see them (NotFound outside scope)."""
    quote = service.get("quotes", quote_id)
    lines: list[Any] = []
    if service.can("quote_lines", "read"):
        lines = service.query(
            "quote_lines",
            filters=(Filter("quote", "eq", quote_id),),
            sort="position,id",
            limit=MAX_LINES,
        ).records
    product_ids = [line.get("product") for line in lines]
    names = {}
    for key, target in (
        ("opportunity", "opportunities"),
        ("account", "accounts"),
        ("contact", "contacts"),
        ("price_book", "price_books"),
    ):
        value = quote.get(key)
        if isinstance(value, int):
            names[key] = service.names(target, [value]).get(value, "")
    owner = quote.get("owner")
    info = user_info(owner) if isinstance(owner, int) else None
    return QuoteDocument(
        quote=quote,
        lines=lines,
        product_names=service.names("products", product_ids),
        names=names,
        owner_name=(info.name or info.email) if info else "",
    )
