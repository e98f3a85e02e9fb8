"""Lead conversion: one lead becomes an account, a contact and optionally an opportunity.

Everything happens in one transaction (``service.atomic()``): when any step fails (a
validation error on the opportunity, a duplicate found, a stale lead) nothing of it is
kept. The user's own record service writes the new records and the lead's status, so
their permissions, record scope, validation and audit apply; only the lead's read-only
conversion fields (``converted_at`` and the three links) are written by the system.

- Account: an existing one (``account_id``, which the user must be able to see), or a
  new one from the lead's company (its industry, website, phone, city, country; the
  person's name when the lead has no company). A new account is checked for duplicates
  (the core's duplicate detection) unless ``allow_duplicates``: ``DuplicatesFound``
  then lists the look-alikes the user may see, and the caller offers "link to it".
- Contact: an existing one (``contact_id``), or a new one from the lead's person,
  linked to the account (also duplicate-checked).
- Opportunity (``create_opportunity``): named ``opportunity_name`` (default: the
  account's name), for the account and contact, closing on ``close_date`` (default:
  today + 30 days), with the lead as its origin. Its pipeline and stage are left to the
  pipelines area, which fills in the default pipeline's first stage.
- A linked contact must belong to the chosen account (or to none): linking another
  account's contact is refused (422), it would tie the lead to two companies.
- New records get the lead's owner; when that user was deactivated, the converting
  user (the core's default owner) instead.
- A lead converted already is refused (Conflict, 409), also when another conversion
  finished a moment earlier; so is a lead the user may not edit (their scope decides:
  NotFound or Forbidden).
- Users cannot set the status "converted" by hand, nor change it afterwards (the
  leads' ``record_changing`` hook refuses it): only this function sets it, and marks
  the lead it converts in :data:`CONVERTING` meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bastion.api import (
    Conflict,
    DuplicatesFound,
    NotFound,
    Record,
    RecordService,
    ValidationFailed,
    user_info,
)
from bastion_sales.leads.scoring import now_utc

CLOSE_AFTER_DAYS = 30
ACCOUNT_FROM_LEAD = ("industry", "website", "phone", "city", "country")
CONTACT_FROM_LEAD = ("first_name", "last_name", "title", "email", "phone", "city", "country")
#: The id of the lead being converted in this context, while its status is written.
CONVERTING: ContextVar[int | None] = ContextVar("sales_converting_lead", default=None)


def converting() -> int | None:
    """The lead whose conversion is writing its status now (None otherwise)."""
    return CONVERTING.get()


@contextmanager
def _converting(lead_id: int) -> Iterator[None]:
    token = CONVERTING.set(lead_id)
    try:
        yield
    finally:
        CONVERTING.reset(token)


@dataclass(frozen=True)
class Conversion:
    account_id: int
    contact_id: int
    opportunity_id: int | None
    account_created: bool = False
    contact_created: bool = False

    @property
    def created_any(self) -> bool:
        return self.account_created or self.contact_created or self.opportunity_id is not None


class ConvertDuplicates(DuplicatesFound):
    """A new account or contact looks like existing ones; ``object`` says which."""

    def __init__(self, object_name: str, found: DuplicatesFound):
        label = "account" if object_name == "accounts" else "contact"
        super().__init__(
            f"A similar {label} exists already. Link the lead to it, or create a new "
            f"{label} anyway.",
            [dict(match, object=object_name) for match in found.matches],
        )
        self.object = object_name


def converted_already(lead: Record) -> bool:
    return lead.get("status") == "converted" or lead.get("converted_at") is not None


def _refuse_converted() -> Conflict:
    return Conflict(
        "This lead was converted already; open its account or contact instead.",
        field="status",
    )


def _mark_converted(service: RecordService, lead: Record) -> None:
    """Set the status through the user's service (their scope and permission apply)."""
    try:
        with _converting(lead.id):
            service.update("leads", lead.id, {"status": "converted"}, version=lead.version)
    except Conflict:
        # Someone changed it since it was read; most likely a second conversion of the
        # same lead (a double click, two tabs) finished first: say so.
        if converted_already(service.get("leads", lead.id)):
            raise _refuse_converted() from None
        raise


def _active_owner(owner: int | None) -> int | None:
    """The lead's owner when still active; else None (the core's default owner)."""
    if owner is None:
        return None
    info = user_info(owner)
    return owner if info is not None and info.active else None


def convert(
    service: RecordService,
    lead_id: int,
    *,
    account_id: int | None = None,
    contact_id: int | None = None,
    create_opportunity: bool = False,
    opportunity_name: str | None = None,
    opportunity_amount: Any = None,
    close_date: Any = None,
    allow_duplicates: bool = False,
    today: date | None = None,
) -> Conversion:
    """Convert the lead as the service's user; all or nothing."""
    with service.atomic():
        lead = service.get("leads", lead_id)
        if converted_already(lead):
            raise _refuse_converted()
        # Marking it converted through the user's own service proves they may edit it
        # (permission and record scope) before anything else is written.
        _mark_converted(service, lead)
        owner = _active_owner(lead.get("owner"))
        account_created = account_id is None
        if account_id is None:
            account_id = _create(service, "accounts", account_values(lead), owner, allow_duplicates)
        else:
            _existing(service, "accounts", account_id, "account_id")
        contact_created = contact_id is None
        if contact_id is None:
            values = contact_values(lead, account_id)
            contact_id = _create(service, "contacts", values, owner, allow_duplicates)
        else:
            contact = _existing(service, "contacts", contact_id, "contact_id")
            _check_contact_account(contact, account_id)
        opportunity_id = None
        if create_opportunity:
            account = service.get("accounts", account_id)
            values = {
                "name": (opportunity_name or "").strip() or account.get("name") or "New deal",
                "account": account_id,
                "primary_contact": contact_id,
                "close_date": close_date or (today or date.today()) + timedelta(CLOSE_AFTER_DAYS),
            }
            if opportunity_amount not in (None, ""):
                values["amount"] = opportunity_amount
            if owner is not None:
                values["owner"] = owner
            created = service.create("opportunities", values)
            opportunity_id = created.id
            system = RecordService(None, system=True)
            opportunity = system.get("opportunities", opportunity_id)
            system.update(
                "opportunities", opportunity_id, {"lead": lead_id}, version=opportunity.version
            )
        system = RecordService(None, system=True)
        current = system.get("leads", lead_id)
        system.update(
            "leads",
            lead_id,
            {
                "converted_at": now_utc(),
                "converted_account": account_id,
                "converted_contact": contact_id,
                "converted_opportunity": opportunity_id,
            },
            version=current.version,
        )
    return Conversion(account_id, contact_id, opportunity_id, account_created, contact_created)


def account_values(lead: Record) -> dict[str, Any]:
    name = (lead.get("company") or "").strip() or _person(lead)
    values: dict[str, Any] = {"name": name}
    for field in ACCOUNT_FROM_LEAD:
        if lead.get(field) not in (None, ""):
            values[field] = lead.get(field)
    return values


def contact_values(lead: Record, account_id: int) -> dict[str, Any]:
    values: dict[str, Any] = {"account": account_id}
    for field in CONTACT_FROM_LEAD:
        if lead.get(field) not in (None, ""):
            values[field] = lead.get(field)
    return values


def _person(lead: Record) -> str:
    return (
        " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) or "New account"
    )


def _existing(service: RecordService, object_name: str, record_id: int, key: str) -> Record:
    """A record to link must exist and be visible to the user: else a field error."""
    label = "account" if object_name == "accounts" else "contact"
    try:
        return service.get(object_name, record_id)
    except NotFound:
        message = f"There is no {label} {record_id} that you can see."
        raise ValidationFailed({key: message}) from None


def _check_contact_account(contact: Record, account_id: int) -> None:
    """A linked contact of another account would tie the lead to two companies."""
    linked = contact.get("account")
    if linked is not None and linked != account_id:
        raise ValidationFailed(
            {
                "contact_id": f"Contact {contact.id} belongs to another account "
                f"({linked}); link that account, or choose or create another contact."
            }
        )


def _create(
    service: RecordService,
    object_name: str,
    values: dict[str, Any],
    owner: int | None,
    allow_duplicates: bool,
) -> int:
    if owner is not None:
        values["owner"] = owner
    try:
        return service.create(object_name, values, check_duplicates=not allow_duplicates).id
    except DuplicatesFound as exc:
        raise ConvertDuplicates(object_name, exc) from None
    except ValidationFailed as exc:
        label = "account" if object_name == "accounts" else "contact"
        raise ValidationFailed(
            {"": f"The new {label} cannot be created: {exc.message}"} | exc.errors
        ) from None
