"""The lead conversion page: /sales/leads/<id>/convert.

GET shows what will be created and offers look-alike accounts (same name, phone or
website) and contacts (same email) to link instead; POST converts in one transaction
and opens the new opportunity (or the account). A duplicate found only at conversion
(another user created it meanwhile) brings the page back with it offered.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from bastion.api import (
    AnyOf,
    DuplicatesFound,
    Filter,
    RecordError,
    RecordService,
    ValidationFailed,
    bounded_int,
    flash,
    login_required,
    redirect,
    render_template,
    request,
    request_service,
    url_for,
)
from bastion_sales.leads.conversion import (
    CLOSE_AFTER_DAYS,
    account_values,
    convert,
    converted_already,
)
from bastion_sales.leads.rules_views import refusal
from bastion_sales.web import bp

MAX_CANDIDATES = 10


def account_candidates(service: RecordService, lead: Any) -> list[Any]:
    """Accounts the user can see that look like the lead's company."""
    if not service.can("accounts", "read"):
        return []
    probes = []
    name = (lead.get("company") or "").strip()
    if name:
        probes.append(Filter("name", "contains", name))
    if lead.get("phone"):
        probes.append(Filter("phone", "eq", lead.get("phone")))
    if not probes:
        return []
    try:
        page = service.query("accounts", filters=[AnyOf(tuple(probes))], limit=MAX_CANDIDATES)
    except RecordError:
        return []
    return page.records


def contact_candidates(service: RecordService, lead: Any) -> list[Any]:
    """Contacts the user can see with the lead's email address."""
    if not lead.get("email") or not service.can("contacts", "read"):
        return []
    try:
        page = service.query(
            "contacts", filters=[Filter("email", "eq", lead.get("email"))], limit=MAX_CANDIDATES
        )
    except RecordError:
        return []
    return page.records


def _chosen_id(text: str, key: str) -> int | None:
    """The form's choice: "new" (or nothing) creates one; else the id of the record to link."""
    text = text.strip()
    if text in ("", "new"):
        return None
    chosen = bounded_int(text, minimum=1)
    if chosen is not None:
        return chosen
    label = "account" if key == "account" else "contact"
    raise ValidationFailed({key: f"Choose a new {label} or one of the {label}s offered."})


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def best_account(lead: Any, accounts: list[Any]) -> Any | None:
    """The account the lead most likely duplicates: the same name (ignoring case and
    spacing), else the same phone. A name that merely contains the company's is only
    offered, not preselected: "Acme" is not necessarily "Acme Holdings"."""
    company = _norm(lead.get("company"))
    if company:
        for account in accounts:
            if _norm(account.get("name")) == company:
                return account
    phone = _norm(lead.get("phone"))
    if phone:
        for account in accounts:
            if _norm(account.get("phone")) == phone:
                return account
    return None


def best_contact(contacts: list[Any], account_id: int | None) -> Any | None:
    """A contact with the lead's email that may be linked with the chosen account
    (the conversion refuses a contact of another account)."""
    for contact in contacts:
        linked = contact.get("account")
        if linked is None or linked == account_id:
            return contact
    return None


def _render(service: RecordService, lead: Any, *, status: int = 200, **context: Any):
    form = context.pop("form", None) or {}
    accounts = account_candidates(service, lead)
    contacts = contact_candidates(service, lead)
    extra = context.pop("duplicates", None) or []
    known = {r.id for r in accounts}
    for match in extra:
        if match.get("object") == "accounts" and match.get("id") not in known:
            accounts.append(service.get("accounts", match["id"]))
    known_contacts = {r.id for r in contacts}
    for match in extra:
        if match.get("object") == "contacts" and match.get("id") not in known_contacts:
            contacts.append(service.get("contacts", match["id"]))
    default_close = date.today() + timedelta(CLOSE_AFTER_DAYS)
    # On first display, preselect linking to the likely duplicates (the user can still
    # choose "new"); after a submit, keep what the user chose.
    account = best_account(lead, accounts)
    contact = best_contact(contacts, account.id if account is not None else None)
    default_account = str(account.id) if account is not None else "new"
    default_contact = str(contact.id) if contact is not None else "new"
    return render_template(
        "sales/leads/convert.html",
        lead=lead,
        new_account=account_values(lead),
        accounts=accounts,
        contacts=contacts,
        form={
            "account": form.get("account", default_account),
            "contact": form.get("contact", default_contact),
            # A checkbox left unticked is not sent: ticked by default only on GET.
            "create_opportunity": form.get("create_opportunity", "" if form else "true"),
            "opportunity_name": form.get("opportunity_name", lead.get("company") or ""),
            "amount": form.get("amount", ""),
            "close_date": form.get("close_date", default_close.isoformat()),
        },
        **context,
    ), status


@bp.route("/leads/<int:lead_id>/convert", methods=["GET", "POST"], endpoint="convert_lead")
@login_required
def convert_lead(lead_id: int):
    service = request_service()
    try:
        lead = service.get("leads", lead_id)
        if converted_already(lead):
            flash("This lead was converted already.", "info")
            return redirect(url_for("records.detail", object="leads", record_id=lead_id), 303)
        if request.method == "GET":
            return _render(service, lead)
        form = request.form
        create_opportunity = form.get("create_opportunity") == "true"
        try:
            account_id = _chosen_id(form.get("account", "new"), "account")
            contact_id = _chosen_id(form.get("contact", "new"), "contact")
            result = convert(
                service,
                lead_id,
                account_id=account_id,
                contact_id=contact_id,
                create_opportunity=create_opportunity,
                opportunity_name=form.get("opportunity_name", "").strip() or None,
                opportunity_amount=form.get("amount", "").strip() or None,
                close_date=form.get("close_date", "").strip() or None,
                allow_duplicates=form.get("create_anyway") == "1",
            )
        except DuplicatesFound as exc:
            return _render(
                service,
                lead,
                status=409,
                form=form,
                duplicates=exc.matches,
                problem=exc.message,
                duplicate_found=True,
            )
        except ValidationFailed as exc:
            return _render(
                service,
                lead,
                status=422,
                form=form,
                problem=exc.message,
                errors=list(dict.fromkeys(exc.errors.values())),
            )
    except RecordError as exc:
        return refusal(exc)
    flash("Lead converted.", "success")
    if result.opportunity_id is not None:
        target = url_for("records.detail", object="opportunities", record_id=result.opportunity_id)
    else:
        target = url_for("records.detail", object="accounts", record_id=result.account_id)
    return redirect(target, 303)
