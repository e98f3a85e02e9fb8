"""Pages and API actions of quotes: line items, sending, approvals, print and PDF.

Every read and write goes through the signed-in user's record service, so scope,
permissions, validation and audit apply; only the approval decision itself is written
by the system's service (approval fields are read-only to users), after the user's
service has found the quote and :mod:`approval` has checked who decides.
"""

from __future__ import annotations

from typing import Any

from flask import Response, make_response

from bastion.api import (
    BadQuery,
    Filter,
    Forbidden,
    NotFound,
    RecordError,
    ValidationFailed,
    abort,
    bounded_int,
    current_user,
    flash,
    login_required,
    redirect,
    render_template,
    request,
    request_service,
    requires,
    url_for,
    user_info,
)
from bastion_sales.quotes import approval, document, pdf, rules
from bastion_sales.web import api_bp, bp

LINE_INPUTS = ("product", "quantity", "unit_price", "discount_percent", "tax_rate")


def _detail(quote_id: int) -> str:
    return url_for("records.detail", object="quotes", record_id=quote_id)


def _htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _load(quote_id: int) -> document.QuoteDocument:
    try:
        return document.load(request_service(), quote_id)
    except RecordError:
        abort(404)


# --------------------------------------------------------------------------- lines panel


def lines_context(
    service: Any, quote_id: int, *, errors: dict[str, str] | None = None, form: Any = None
) -> dict[str, Any]:
    """What ``_lines_panel.html`` shows: lines, totals and the add-line form."""
    doc = document.load(service, quote_id)
    quote = doc.quote
    entries: list[Any] = []
    editable = quote.get("status") == "draft" and service.can("quote_lines", "create")
    if editable and service.can("price_book_entries", "read"):
        book = quote.get("price_book")
        if isinstance(book, int):
            entries = service.query(
                "price_book_entries",
                filters=(Filter("price_book", "eq", book), Filter("active", "eq", True)),
                sort="product_name",
                limit=500,
            ).records
            entries = _quotable(entries)
    return {
        "approval_note": approval_note(quote, getattr(service, "user", None)),
        "defaults": _defaults(doc.lines),
        "doc": doc,
        "quote": quote,
        "entries": entries,
        "editable": editable,
        "can_remove": quote.get("status") == "draft" and service.can("quote_lines", "delete"),
        "errors": errors or {},
        "form": form or {},
        "money": document.money,
        "number": document.number,
    }


def approval_note(quote: Any, user: Any) -> str:
    """What a pending quote's page tells the person looking at it (their own words)."""
    if quote.get("approval_status") != "pending":
        return ""
    user_id = getattr(user, "id", None)
    owner, requester = quote.get("owner"), quote.get("approval_requested_by")
    name = quote.get("approval_requested_by_name") or rules.requester_name(requester)
    if user_id is not None and user_id == owner:
        text = (
            "Waiting for your manager's approval: a line's discount is over the "
            "threshold, so this quote can be sent once your manager approves it."
        )
        if name and requester not in (None, owner):
            text += f" Requested by {name}, who therefore cannot approve it."
        return text
    if user_id is not None and user_id == requester:
        return (
            "Waiting for approval: you changed a discount over the threshold, so the "
            "owner's manager (someone other than you) approves it before it can be sent."
        )
    text = (
        "Waiting for approval: a line's discount is over the threshold, so the owner's "
        "manager approves this quote before it can be sent."
    )
    return f"{text} Requested by {name}." if name else text


def _defaults(lines: list[Any]) -> dict[str, str]:
    """Add-line form defaults: quantity 1 and the tax rate of the last line (lines of a
    quote mostly share a rate, and an empty rate would silently mean 0 %)."""
    defaults = {"quantity": "1"}
    if lines:
        defaults["tax_rate"] = document.number(lines[-1].get("tax_rate"))
    return defaults


def _quotable(entries: list[Any]) -> list[Any]:
    """Entries whose product is active (an inactive product cannot be quoted)."""
    ids = [e.get("product") for e in entries if isinstance(e.get("product"), int)]
    if not ids:
        return entries
    inactive = {
        product.id
        for product in rules.system().iterate(
            "products", filters=(Filter("id", "in", ids), Filter("active", "eq", False))
        )
    }
    return [e for e in entries if e.get("product") not in inactive]


def _panel(quote_id: int, status: int = 200, **kwargs: Any) -> Response:
    context = lines_context(request_service(), quote_id, **kwargs)
    return make_response(render_template("sales/quotes/_lines_panel.html", p=context), status)


def _refresh(quote_id: int, message: str) -> Response:
    """A line change rewrites the quote's totals, approval state, actions and related
    lists, so htmx reloads the whole page (``HX-Refresh``) rather than swapping only
    the panel; the body is the fresh panel all the same, and the message is flashed
    for the reloaded page."""
    flash(message, "success")
    response = _panel(quote_id)
    response.headers["HX-Refresh"] = "true"
    return response


@bp.post("/quotes/<int:quote_id>/lines")
@login_required
def add_line(quote_id: int) -> Any:
    service = request_service()
    try:
        service.get("quotes", quote_id)
    except RecordError:
        abort(404)
    values: dict[str, Any] = {"quote": quote_id}
    for name in LINE_INPUTS:
        raw = (request.form.get(name) or "").strip()
        if raw:
            values[name] = raw
    if "quantity" not in values:
        values["quantity"] = "1"
    try:
        service.create("quote_lines", values)
    except ValidationFailed as exc:
        if _htmx():
            return _panel(quote_id, 422, errors=exc.errors, form=request.form)
        flash(" ".join(exc.errors.values()), "error")
        return redirect(_detail(quote_id))
    except RecordError as exc:
        if _htmx():
            return _panel(quote_id, exc.status, errors={"": exc.message}, form=request.form)
        flash(exc.message, "error")
        return redirect(_detail(quote_id))
    if _htmx():
        return _refresh(quote_id, "Line added.")
    flash("Line added.", "success")
    return redirect(_detail(quote_id))


@bp.post("/quotes/<int:quote_id>/lines/<int:line_id>/delete")
@login_required
def remove_line(quote_id: int, line_id: int) -> Any:
    service = request_service()
    try:
        line = service.get("quote_lines", line_id)
        if line.get("quote") != quote_id:
            raise NotFound("That line is not on this quote.")
        service.delete("quote_lines", line_id)
    except NotFound:
        abort(404)
    except RecordError as exc:
        message = (
            " ".join(exc.errors.values()) if isinstance(exc, ValidationFailed) else exc.message
        )
        if _htmx():
            return _panel(quote_id, 422, errors={"": message})
        flash(message, "error")
        return redirect(_detail(quote_id))
    if _htmx():
        return _refresh(quote_id, "Line removed.")
    flash("Line removed.", "success")
    return redirect(_detail(quote_id))


# --------------------------------------------------------------------------- sending


def _version(raw: str | None) -> int | None:
    """The version the page showed (from the action's URL), or None when absent."""
    return bounded_int(raw, minimum=1)


@bp.post("/quotes/<int:quote_id>/send")
@login_required
def mark_sent(quote_id: int) -> Any:
    """Mark sent with the version the page showed, so a quote changed since (a line
    added, a decision taken) is a conflict rather than sent unseen."""
    service = request_service()
    try:
        quote = service.get("quotes", quote_id)
        version = _version(request.args.get("version") or request.form.get("version"))
        service.update("quotes", quote_id, {"status": "sent"}, version=version or quote.version)
    except NotFound:
        abort(404)
    except ValidationFailed as exc:
        if _ask_again(service, quote_id):
            flash(
                "The discount threshold or list prices changed since the lines were "
                "entered: this quote now waits for the owner's manager to approve its "
                "discount.",
                "error",
            )
        else:
            flash(" ".join(exc.errors.values()), "error")
        return redirect(_detail(quote_id))
    except RecordError as exc:
        flash(exc.message, "error")
        return redirect(_detail(quote_id))
    flash("The quote is marked sent.", "success")
    return redirect(_detail(quote_id))


def _ask_again(service: Any, quote_id: int) -> bool:
    """Put a stale ``not_required`` draft to pending (see rules.needs_new_request)."""
    try:
        quote = service.get("quotes", quote_id)
        if not service.can("quotes", "edit") or not rules.needs_new_request(quote):
            return False
        return rules.request_approval(quote_id, actor=current_user) == "pending"
    except RecordError:
        return False


@api_bp.post("/quotes/<int:quote_id>/request-approval")
@login_required
def api_request_approval(quote_id: int) -> Response:
    """Measure a draft's lines against the current threshold and list prices now: a
    quote over the threshold becomes ``pending`` (its owner's manager then decides)."""
    from bastion.api import record_json

    service = request_service()
    quote = service.get("quotes", quote_id)  # NotFound outside the user's scope
    if not service.can("quotes", "edit"):
        raise Forbidden("You may not change quotes.")
    if quote.get("status") != "draft":
        raise ValidationFailed({"status": "Only a draft quote can ask for approval."})
    if rules.needs_new_request(quote):
        rules.request_approval(quote_id, actor=current_user)
    return make_response(record_json(service, "quotes", service.get("quotes", quote_id)), 200)


# --------------------------------------------------------------------------- approvals


@bp.get("/approvals")
@requires(approval.APPROVE)
def approvals() -> str:
    service = request_service()
    quotes = approval.pending_for(service, current_user)
    owners = {}
    for quote in quotes:
        owner = quote.get("owner")
        if isinstance(owner, int) and owner not in owners:
            info = user_info(owner)
            owners[owner] = (info.name or info.email) if info else f"#{owner}"
    opportunities = service.names("opportunities", [q.get("opportunity") for q in quotes])
    return render_template(
        "sales/quotes/approvals.html",
        quotes=quotes,
        owners=owners,
        opportunities=opportunities,
        money=document.money,
        number=document.number,
        threshold=approval.discount_threshold(),
    )


@bp.get("/approvals/<int:quote_id>")
@requires(approval.APPROVE)
def decision(quote_id: int) -> Any:
    doc = _load(quote_id)
    return render_template(
        "sales/quotes/decision.html",
        doc=doc,
        quote=doc.quote,
        problem=approval.refusal(current_user, doc.quote),
        money=document.money,
        number=document.number,
    )


def _decide_page(quote_id: int, approve: bool) -> Any:
    comment = request.form.get("comment", "")
    try:
        approval.decide(request_service(), quote_id, approve=approve, comment=comment)
    except NotFound:
        abort(404)
    except ValidationFailed as exc:
        flash(" ".join(exc.errors.values()), "error")
        return redirect(url_for("sales.decision", quote_id=quote_id))
    except RecordError as exc:
        flash(exc.message, "error")
        return redirect(url_for("sales.decision", quote_id=quote_id))
    flash("Quote approved." if approve else "Quote rejected.", "success")
    return redirect(url_for("sales.approvals"))


@bp.post("/quotes/<int:quote_id>/approve")
@requires(approval.APPROVE)
def approve_page(quote_id: int) -> Any:
    return _decide_page(quote_id, True)


@bp.post("/quotes/<int:quote_id>/reject")
@requires(approval.APPROVE)
def reject_page(quote_id: int) -> Any:
    return _decide_page(quote_id, False)


def _api_decide(quote_id: int, approve: bool) -> Response:
    body = request.get_json(silent=True)
    if body is None and request.is_json and request.get_data(cache=True).strip():
        raise BadQuery('The body is not valid JSON; send an object such as {"comment": "..."}.')
    if body is not None and not isinstance(body, dict):
        raise ValidationFailed({"": 'Send a JSON object such as {"comment": "..."}.'})
    comment = (body or {}).get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValidationFailed({"comment": "The comment is text."})
    from bastion.api import record_json  # facade addition of the plugin API (H1b)

    service = request_service()
    quote = approval.decide(service, quote_id, approve=approve, comment=comment)
    return make_response(record_json(service, "quotes", quote), 200)


@api_bp.post("/quotes/<int:quote_id>/approve")
@requires(approval.APPROVE)
def api_approve(quote_id: int) -> Response:
    return _api_decide(quote_id, True)


@api_bp.post("/quotes/<int:quote_id>/reject")
@requires(approval.APPROVE)
def api_reject(quote_id: int) -> Response:
    return _api_decide(quote_id, False)


# --------------------------------------------------------------------------- print and PDF


@bp.get("/quotes/<int:quote_id>/print")
@login_required
def print_quote(quote_id: int) -> str:
    doc = _load(quote_id)
    return render_template(
        "sales/quotes/print.html", doc=doc, money=document.money, number=document.number
    )


@bp.get("/quotes/<int:quote_id>.pdf")
@login_required
def quote_pdf(quote_id: int) -> Response:
    doc = _load(quote_id)
    response = make_response(pdf.render(doc))
    response.headers["Content-Type"] = "application/pdf"
    filename = "".join(c for c in doc.number if c.isalnum() or c in "-_") or f"quote-{quote_id}"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
