"""Discount approval of quotes by the owner's manager.

States (``quotes.approval_status``):

- ``not_required``: no line's discount exceeds the threshold (``settings.discount_threshold``);
- ``pending``: some line's discount exceeds it (a unit price below the list price
  counts as a discount: ``pricing.effective_discount``). Set automatically whenever the lines
  change (also on an approved or rejected quote: a changed quote is a new request);
  the quote cannot be marked sent;
- ``approved`` / ``rejected``: decided, with a comment (required to reject), by the
  quote owner's manager (``manager_of(owner)``, or a manager of a team above the
  owner's) or an administrator (``admin.users``); the decider holds
  ``sales.approve_quotes`` and is neither the quote's owner nor the person who caused
  the request (``approval_requested_by``: who changed the lines or the owner).

Requests (``sales.quote.approval_requested``) and decisions (``sales.quote.approve`` /
``sales.quote.reject``) are audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bastion.api import (
    Filter,
    Forbidden,
    RecordService,
    ValidationFailed,
    audit_event,
    has_permission,
    manager_of,
    team_members,
    teams_managed_by,
)
from bastion_sales.settings import discount_threshold

APPROVE = "sales.approve_quotes"
ADMINISTER = "admin.users"
MAX_COMMENT = 2000


def state_after_lines(max_discount: Decimal) -> str:
    """The approval state a quote gets when its lines change."""
    return "pending" if max_discount > discount_threshold() else "not_required"


@dataclass(frozen=True)
class Refusal:
    """Why a user may not decide: ``waiting`` False means it is not theirs to decide
    (403), True that the quote is not waiting for a decision (422)."""

    message: str
    waiting: bool = False


def audit_requested(
    quote: Any, max_discount: Decimal, actor: Any, *, reason: str | None = None
) -> None:
    """Audit a request for approval, attributed to whoever caused it."""
    changes = {"max_discount": str(max_discount), "threshold": str(discount_threshold())}
    if reason:
        changes["reason"] = reason
    actor_id = getattr(actor, "id", None)
    audit_event(
        "sales.quote.approval_requested",
        actor=f"user:{actor_id}" if isinstance(actor_id, int) else "system",
        object_type="quotes",
        object_id=quote.id,
        changes=changes,
    )


def managed_owner_ids(user: Any) -> set[int]:
    """Users in the teams (and sub-teams) ``user`` manages, ``user`` left out."""
    ids: set[int] = set()
    for team in teams_managed_by(user.id):
        ids |= {member.id for member in team_members(team.id, active_only=False)}
    ids.discard(user.id)
    return ids


def refusal(user: Any, quote: Any, *, managed: set[int] | None = None) -> Refusal | None:
    """Why ``user`` may not decide on ``quote`` now, or None when they may.

    ``managed``: :func:`managed_owner_ids` of ``user`` when already known (lists).
    """
    if not has_permission(user, APPROVE):
        return Refusal("You may not approve quotes.")
    owner = quote.get("owner")
    if owner == user.id:
        return Refusal(
            "You cannot approve your own quote; your manager or an administrator decides."
        )
    if quote.get("approval_requested_by") == user.id:
        return Refusal(
            "You changed this quote's discount or owner, so you asked for this approval; "
            "another manager or an administrator decides."
        )
    if quote.get("approval_status") != "pending":
        return Refusal("This quote is not waiting for approval.", waiting=True)
    if has_permission(user, ADMINISTER):
        return None
    if managed is None:
        managed = managed_owner_ids(user)
    if owner in managed:
        return None
    manager = manager_of(owner) if isinstance(owner, int) else None
    if manager is not None and manager.id == user.id:
        return None
    return Refusal("Only the quote owner's manager (or an administrator) can decide on this quote.")


def may_decide(user: Any, quote: Any, *, managed: set[int] | None = None) -> bool:
    return refusal(user, quote, managed=managed) is None


def pending_for(service: RecordService, user: Any) -> list[Any]:
    """Quotes waiting for ``user``'s decision, within what they may read."""
    managed = managed_owner_ids(user)
    found = []
    for quote in service.iterate(
        "quotes", filters=(Filter("approval_status", "eq", "pending"),), batch=200
    ):
        if may_decide(user, quote, managed=managed):
            found.append(quote)
    return found


def decide(service: RecordService, quote_id: int, *, approve: bool, comment: str | None) -> Any:
    """Approve or reject as the service's user; the quote as it is afterwards.

    The user's service finds the quote (NotFound outside their scope); the decision is
    written by the system's service because the approval fields are read-only to users,
    with the version read here (a quote changed meanwhile is a Conflict).
    """
    user = service.user
    quote = service.get("quotes", quote_id)
    problem = refusal(user, quote)
    if problem is not None:
        audit_event(
            "sales.quote.approve" if approve else "sales.quote.reject",
            object_type="quotes",
            object_id=quote_id,
            changes={"reason": problem.message},
            outcome="denied",
        )
        if problem.waiting:
            raise ValidationFailed({"approval_status": problem.message})
        raise Forbidden(problem.message)
    text = (comment or "").strip()
    if not approve and not text:
        raise ValidationFailed({"comment": "Say why the discount is rejected."})
    if len(text) > MAX_COMMENT:
        raise ValidationFailed({"comment": f"Keep the comment under {MAX_COMMENT} characters."})
    state = "approved" if approve else "rejected"
    system = RecordService(None, system=True)
    with system.atomic():
        system.update(
            "quotes",
            quote_id,
            {
                "approval_status": state,
                "approval_comment": text or None,
                "approved_at": datetime.now(UTC),
            },
            version=quote.version,
        )
        audit_event(
            "sales.quote.approve" if approve else "sales.quote.reject",
            object_type="quotes",
            object_id=quote_id,
            changes={
                "approval_status": [quote.get("approval_status"), state],
                "max_discount": str(quote.get("max_discount")),
                "comment": text,
            },
        )
    return service.get("quotes", quote_id)
