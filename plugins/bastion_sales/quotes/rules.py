"""What the record service asks of quotes, their lines and price book entries.

``record_changing`` handlers check and complete a write before it happens (prices from
the price book, computed line amounts, status transitions, one price per product);
``record_changed`` on lines recomputes the quote's totals and approval state in the
same transaction, through the system's record service (those fields are read-only to
users). An exception in these hooks refuses the write (the core rolls it back).

Pricing rule: every line's product has an active price in the quote's (active) price
book; the unit price defaults to it, and a lower unit price counts as a discount. A
quote's price book cannot change once it has lines (their prices and discounts were
measured against it).

Editing rule: lines are added, changed or removed only while the quote is a draft. A
line change recomputes the approval: a largest discount over the threshold puts the
quote (back) to ``pending``, even when it was approved or rejected before; at or under
the threshold it becomes ``not_required``. Whoever caused the request is kept in
``approval_requested_by`` (see :func:`_requester`): they (and the quote's owner) never
decide on it. An owner
change on a quote whose discount needed approval asks for it again (the new owner has
another manager). Marking sent re-measures the lines against the current list prices
and threshold (:func:`send_problems`), so nothing stored can be stale at that point.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bastion.api import (
    Conflict,
    Filter,
    NotFound,
    RecordChange,
    RecordService,
    has_permission,
    user_info,
)
from bastion_sales.quotes import approval
from bastion_sales.quotes.document import money
from bastion_sales.quotes.pricing import (
    LineInput,
    effective_discount,
    line_amounts,
    quote_totals,
)
from bastion_sales.settings import discount_threshold

#: Allowed status changes; accepted and declined are final. A sent quote may go back to
#: draft to be revised (its lines become editable again, and approval applies again).
TRANSITIONS = {
    "draft": {"sent"},
    "sent": {"accepted", "declined", "draft"},
    "accepted": set(),
    "declined": set(),
}
LINE_FIELDS = ("line_subtotal", "line_discount", "line_tax", "line_total")
#: Upper bound (exclusive) of a line's or a quote's amounts: far below what the decimal
#: columns hold (10**16 with two decimals), so sums of many lines still fit.
MAX_AMOUNT = Decimal(10) ** 13
#: Approval states that mean "the discount needed a manager".
DECIDED_OR_WAITING = ("pending", "approved", "rejected")


def system() -> RecordService:
    return RecordService(None, system=True)


def _merged(change: RecordChange) -> dict[str, Any]:
    return {**(change.before or {}), **change.values}


def _actor_id(actor: Any) -> int | None:
    value = getattr(actor, "id", None)
    return value if isinstance(value, int) else None


def _quote(quote_id: Any) -> Any | None:
    if not isinstance(quote_id, int):
        return None
    try:
        return system().get("quotes", quote_id)
    except NotFound:
        return None


def _get(object_name: str, record_id: Any) -> Any | None:
    if not isinstance(record_id, int):
        return None
    try:
        return system().get(object_name, record_id)
    except NotFound:
        return None


def active_price(price_book_id: Any, product_id: Any) -> Any | None:
    """The product's active entry in the price book, or None."""
    if not isinstance(price_book_id, int) or not isinstance(product_id, int):
        return None
    page = system().query(
        "price_book_entries",
        filters=(
            Filter("price_book", "eq", price_book_id),
            Filter("product", "eq", product_id),
            Filter("active", "eq", True),
        ),
        sort="id",
        limit=1,
    )
    return page.records[0] if page.records else None


def _name(object_name: str, record_id: Any) -> str:
    if not isinstance(record_id, int):
        return ""
    return system().names(object_name, [record_id]).get(record_id, f"#{record_id}")


def _lines(quote_id: int) -> list[Any]:
    return list(system().iterate("quote_lines", filters=(Filter("quote", "eq", quote_id),)))


def _line_input(line: Any) -> LineInput:
    return LineInput(
        quantity=line.get("quantity") or Decimal(0),
        unit_price=line.get("unit_price") or Decimal(0),
        discount_percent=line.get("discount_percent") or Decimal(0),
        tax_rate=line.get("tax_rate") or Decimal(0),
    )


def largest_discount(price_book_id: Any, lines: list[Any]) -> tuple[Decimal, list[Any]]:
    """The largest effective discount of ``lines`` against the book's current list prices,
    and the lines whose product has no active price there (any more)."""
    list_prices = _list_prices(price_book_id)
    largest, unpriced = Decimal(0), []
    for line in lines:
        list_price = list_prices.get(line.get("product"))
        if list_price is None:
            unpriced.append(line)
        item = _line_input(line)
        off = effective_discount(item.unit_price, item.discount_percent, list_price)
        largest = max(largest, off)
    return largest, unpriced


# --------------------------------------------------------------------------- lines


def _product_problem(book: Any, product_id: Any) -> str | None:
    """Why the product cannot be quoted from the book, or None (then it has a price)."""
    product = _get("products", product_id)
    if product is None:
        return None  # the core says the product does not exist
    if book is None:
        return None  # the core says the quote's price book does not exist
    name, book_name = product.get("name") or f"#{product.id}", book.get("name") or ""
    if book.get("active") is False:
        return f"The price book {book_name} is inactive: no lines can be added from it."
    if product.get("active") is False:
        return f"{name} is an inactive product and cannot be quoted."
    if active_price(book.id, product.id) is None:
        return (
            f"{name} has no active price in the price book {book_name}; only products "
            "priced there can be quoted (an administrator adds the price first)."
        )
    return None


def line_changing(change: RecordChange) -> dict[str, str] | None:
    """Only on draft quotes; products priced in the quote's book; amounts computed here."""
    values = _merged(change)
    quote = _quote(values.get("quote"))
    if quote is None:
        return None  # the core already said the quote does not exist
    moved = change.values.get("quote", values.get("quote")) != (change.before or {}).get("quote")
    if change.action == "update" and moved:
        return {"quote": "A line cannot move to another quote; remove it and add it there."}
    if quote.get("status") != "draft":
        return {
            "quote": f"Quote {quote.get('number') or quote.id} is {quote.get('status')}: "
            "lines can only be changed while it is a draft (set it back to draft first)."
        }
    if change.action == "delete":
        return None
    book = _get("price_books", quote.get("price_book"))
    problem = _product_problem(book, values.get("product"))
    if problem is not None:
        return {"product": problem}
    product_changed = change.action == "update" and "product" in change.values
    if values.get("unit_price") is None or (product_changed and "unit_price" not in change.values):
        entry = active_price(quote.get("price_book"), values.get("product"))
        if entry is not None:
            change.values["unit_price"] = values["unit_price"] = entry.get("unit_price")
    if not values.get("description") and change.action == "create":
        change.values["description"] = _name("products", values.get("product"))[:255]
    too_large = _size_problem(quote, change.record_id, values)
    if too_large is not None:
        return too_large
    amounts = line_amounts(
        values.get("quantity") or Decimal(0),
        values.get("unit_price") or Decimal(0),
        values.get("discount_percent") or Decimal(0),
        values.get("tax_rate") or Decimal(0),
    )
    change.values.update(
        line_subtotal=amounts.subtotal,
        line_discount=amounts.discount,
        line_tax=amounts.tax,
        line_total=amounts.total,
    )
    return None


def _size_problem(quote: Any, line_id: Any, values: dict[str, Any]) -> dict[str, str] | None:
    """A line, or the quote with it, whose amounts would not fit (checked before any
    rounding, so the arithmetic never works on numbers beyond its precision)."""
    quantity = values.get("quantity") or Decimal(0)
    unit_price = values.get("unit_price") or Decimal(0)
    limit = money(MAX_AMOUNT)
    # Tax is at most 100 %, so a line's total stays under twice its amount.
    if quantity * unit_price >= MAX_AMOUNT / 2:
        return {
            "quantity": "Quantity x unit price is too large: a line's amount stays under "
            f"{money(MAX_AMOUNT / 2)}."
        }
    amounts = line_amounts(
        quantity,
        unit_price,
        values.get("discount_percent") or Decimal(0),
        values.get("tax_rate") or Decimal(0),
    )
    subtotal, total = amounts.subtotal, amounts.total
    for line in _lines(quote.id):
        if line.id != line_id:
            subtotal += line.get("line_subtotal") or Decimal(0)
            total += line.get("line_total") or Decimal(0)
    if max(subtotal, total) >= MAX_AMOUNT:
        return {
            "quantity": f"With this line the quote would come to more than {limit}, "
            "the largest amount a quote holds; split it into several quotes."
        }
    return None


def line_changed(change: RecordChange) -> None:
    """Recompute the quote of the line (and of its old quote, should it have moved)."""
    ids = {(change.after or {}).get("quote"), (change.before or {}).get("quote")}
    for quote_id in ids:
        if isinstance(quote_id, int):
            recompute(quote_id, actor=change.actor)


def recompute(quote_id: int, *, actor: Any = None) -> str:
    """Write the quote's totals, largest discount and approval state from its lines;
    the approval state it has afterwards.

    Runs in the transaction of the line change: should the quote have been sent
    meanwhile, the Conflict refuses the line change (nothing is saved).
    """
    service = system()
    quote = service.get("quotes", quote_id)
    if quote.get("status") != "draft":
        raise Conflict(
            f"Quote {quote.get('number') or quote.id} was marked {quote.get('status')} "
            "meanwhile: its lines can no longer change."
        )
    lines = _lines(quote_id)
    max_discount, _ = largest_discount(quote.get("price_book"), lines)
    totals = quote_totals([_line_input(line) for line in lines])
    state = approval.state_after_lines(max_discount)
    old_state = quote.get("approval_status")
    requester = _requester(quote, state, actor)
    changes: dict[str, Any] = {
        "subtotal": totals.subtotal,
        "discount_total": totals.discount_total,
        "tax_total": totals.tax_total,
        "total": totals.total,
        "max_discount": max_discount,
        "approval_status": state,
        "approval_requested_by": requester,
        "approval_requested_by_name": requester_name(requester),
    }
    if state != old_state:
        changes["approval_comment"] = None
        changes["approved_at"] = None
    service.update("quotes", quote_id, changes, version=quote.version)
    if state == "pending" and old_state != "pending":
        approval.audit_requested(quote, max_discount, actor)
    return state


def _requester(quote: Any, state: str, actor: Any) -> int | None:
    """Who asked for the pending approval: whoever made it pending. While it waits, a
    line change by someone other than the owner takes over the request when nobody but
    the owner held it, or when they could decide themselves (``sales.approve_quotes``):
    a manager who edits a discount must not approve it, and a rep's later edit must not
    launder a manager's. A request the system makes with nobody acting (demo data, a
    command) is the owner's: the owner never decides anyway, and people see a name."""
    if state != "pending":
        return None
    actor_id = _actor_id(actor)
    current, owner = quote.get("approval_requested_by"), quote.get("owner")
    if quote.get("approval_status") != "pending":
        found = actor_id
    elif actor_id is None or actor_id == owner:
        found = current
    elif current in (None, owner) or has_permission(actor, approval.APPROVE):
        found = actor_id
    else:
        found = current
    if found is None and isinstance(owner, int):
        return owner
    return found


def requester_name(user_id: Any) -> str | None:
    """The name (or e-mail) of who asked for approval, as the quote page shows it."""
    info = user_info(user_id) if isinstance(user_id, int) else None
    return ((info.name or info.email) if info else None) or None


def needs_new_request(quote: Any) -> bool:
    """A draft marked ``not_required`` whose lines exceed the current threshold (the
    threshold was lowered, or list prices rose, since its lines last changed)."""
    if quote.get("status") != "draft" or quote.get("approval_status") not in (
        None,
        "not_required",
    ):
        return False
    largest, _ = largest_discount(quote.get("price_book"), _lines(quote.id))
    return largest > discount_threshold()


def request_approval(quote_id: int, *, actor: Any) -> str:
    """Re-measure a draft's lines now (see :func:`needs_new_request`); its new state."""
    return recompute(quote_id, actor=actor)


def _list_prices(price_book_id: Any) -> dict[int, Decimal]:
    """Product id -> active unit price in the price book."""
    if not isinstance(price_book_id, int):
        return {}
    entries = system().iterate(
        "price_book_entries",
        filters=(Filter("price_book", "eq", price_book_id), Filter("active", "eq", True)),
    )
    return {entry.get("product"): entry.get("unit_price") for entry in entries}


# --------------------------------------------------------------------------- quotes


def quote_changing(change: RecordChange) -> dict[str, str] | None:
    """Currency and account filled in; price book and owner rules; status changes follow
    TRANSITIONS and the approval gate."""
    if change.action == "delete":
        before = change.before or {}
        if before.get("status") not in (None, "draft"):
            return {"status": "Only draft quotes can be deleted."}
        return None
    values = _merged(change)
    before = change.before or {}
    errors: dict[str, str] = {}
    if change.action == "create" or "price_book" in change.values:
        errors.update(_price_book_problems(change, values))
    if not values.get("account") and ("opportunity" in change.values):
        opportunity = _get("opportunities", values.get("opportunity"))
        if opportunity is not None and opportunity.get("account"):
            change.values["account"] = opportunity.get("account")
    if change.action == "update" and "owner" in change.values:
        _owner_changing(change, values)
        values = _merged(change)  # a send in the same write sees the new approval state
    if change.actor is None:
        return errors or None  # the system (recomputing, approving, demo) is trusted
    if change.action == "create":
        if values.get("status") not in (None, "draft"):
            errors["status"] = "A new quote starts as a draft."
        return errors or None
    old, new = before.get("status"), values.get("status")
    if "status" in change.values and new != old:
        if new not in TRANSITIONS.get(old, set()):
            errors["status"] = f"A {old} quote cannot become {new}."
        elif new == "sent":
            errors.update(send_problems(change.record_id, values))
    return errors or None


def _price_book_problems(change: RecordChange, values: dict[str, Any]) -> dict[str, str]:
    before = change.before or {}
    other_book = change.values.get("price_book") != before.get("price_book")
    if change.action == "update" and not other_book:
        return {}
    if change.action == "update" and before.get("status") != "draft":
        return {"price_book": "The price book of a sent quote cannot change."}
    if change.action == "update" and _line_count(change.record_id):
        return {
            "price_book": "This quote has lines priced from its price book: remove them "
            "first, or make a new quote with the other price book."
        }
    book = _get("price_books", values.get("price_book"))
    if book is None:
        return {}  # the core says it does not exist
    if book.get("active") is False:
        return {"price_book": f"The price book {book.get('name')} is inactive."}
    change.values["currency"] = book.get("currency")
    return {}


def _owner_changing(change: RecordChange, values: dict[str, Any]) -> None:
    """A new owner has another manager: a discount that needed approval is asked again
    (otherwise a manager could hand her quote to a rep, approve it, and take it back)."""
    before = change.before or {}
    if change.values.get("owner") == before.get("owner"):
        return
    if before.get("approval_status") not in DECIDED_OR_WAITING:
        return
    largest, _ = largest_discount(values.get("price_book"), _lines(change.record_id))
    state = approval.state_after_lines(largest)
    requester = _actor_id(change.actor) if state == "pending" else None
    if requester is None and state == "pending":
        requester = change.values.get("owner")  # the system moved it: the new owner's
    change.values.update(
        max_discount=largest,
        approval_status=state,
        approval_comment=None,
        approved_at=None,
        approval_requested_by=requester,
        approval_requested_by_name=requester_name(requester),
    )


def quote_changed(change: RecordChange) -> None:
    """An owner change that asked for approval again is audited as a request."""
    if change.action != "update" or "owner" not in change.changed:
        return
    after, before = change.after or {}, change.before or {}
    if after.get("approval_status") == "pending":
        quote = system().get("quotes", change.record_id)
        approval.audit_requested(
            quote,
            after.get("max_discount") or Decimal(0),
            change.actor,
            reason=f"owner changed from user {before.get('owner')} to {after.get('owner')}",
        )


def send_problems(quote_id: Any, values: dict[str, Any]) -> dict[str, str]:
    """Why the quote cannot be marked sent now: its lines are measured again against
    the book's current list prices and the current threshold."""
    if not isinstance(quote_id, int):
        return {"status": "Add at least one line before sending the quote."}
    lines = _lines(quote_id)
    if not lines:
        return {"status": "Add at least one line before sending the quote."}
    largest, unpriced = largest_discount(values.get("price_book"), lines)
    if unpriced:
        names = ", ".join(sorted({str(line.get("description") or "") for line in unpriced}))
        return {
            "status": f"No active price in the quote's price book any more for: {names}. "
            "Remove those lines, or have the price restored, before sending."
        }
    state = values.get("approval_status") or "not_required"
    threshold = discount_threshold()
    if state == "pending":
        return {
            "status": "This quote waits for the owner's manager to approve its discount; "
            "it can be sent once approved."
        }
    if state == "rejected":
        return {
            "status": "The discount on this quote was rejected; lower it (the quote then "
            "needs approval again, or none) before sending."
        }
    approved = values.get("max_discount") or Decimal(0)
    if state == "approved" and largest > threshold and largest > approved:
        return {
            "status": f"The discount is now {largest} % (list prices changed), more than "
            f"the {approved} % that was approved: change a line to ask for approval again."
        }
    if state != "approved" and largest > threshold:
        return {
            "status": f"A line's discount of {largest} % is over the approval threshold of "
            f"{threshold} %: the owner's manager must approve it first (ask for approval: "
            f"POST /api/v1/quotes/{quote_id}/request-approval, or Mark sent on its page)."
        }
    return {}


def _line_count(quote_id: Any) -> int:
    if not isinstance(quote_id, int):
        return 0
    return system().count("quote_lines", filters=(Filter("quote", "eq", quote_id),))


# --------------------------------------------------------------------------- price books


def entry_changing(change: RecordChange) -> dict[str, str] | None:
    """One active price per product and price book; the product's name copied in."""
    if change.action == "delete":
        return None
    values = _merged(change)
    if change.action == "create" or "product" in change.values:
        change.values["product_name"] = _name("products", values.get("product"))[:255] or None
    if values.get("active") is False:
        return None
    book, product = values.get("price_book"), values.get("product")
    if not isinstance(book, int) or not isinstance(product, int):
        return None
    filters = [
        Filter("price_book", "eq", book),
        Filter("product", "eq", product),
        Filter("active", "eq", True),
    ]
    if change.record_id is not None:
        filters.append(Filter("id", "ne", change.record_id))
    if system().count("price_book_entries", filters=filters):
        return {
            "product": f"{_name('products', product)} already has an active price in the "
            f"price book {_name('price_books', book)}; change that price or deactivate it "
            "first."
        }
    return None
