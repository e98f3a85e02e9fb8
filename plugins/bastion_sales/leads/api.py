"""``POST /api/v1/leads/<id>/convert``: convert a lead through the REST API.

Body (JSON object, every key optional):

- ``account_id``: an existing account to link instead of creating one;
- ``contact_id``: an existing contact to link instead of creating one;
- ``create_opportunity``: true to create an opportunity (default false);
- ``opportunity``: ``{"name", "amount", "close_date"}`` for it (amount as a decimal
  string such as "12000.00" or {"amount": "12000.00", "currency": "EUR"});
- ``allow_duplicates``: true to create a new account/contact even when look-alikes
  exist (default false: 409 with ``matches``, each naming its ``object``).

Answers 201 (something was created) or 200 (everything linked) with ``account_id``,
``contact_id`` and ``opportunity_id`` (null when none was asked). A lead converted
already: 409. Bad input: 422 problem details with field errors.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from bastion.api import ValidationFailed, login_required, request, request_service
from bastion_sales.leads.conversion import convert
from bastion_sales.web import api_bp

KEYS = {"account_id", "contact_id", "create_opportunity", "opportunity", "allow_duplicates"}
OPPORTUNITY_KEYS = {"name", "amount", "close_date"}


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise ValidationFailed({"": "Send a JSON object."})
    errors: dict[str, str] = {}
    for key in sorted(set(body) - KEYS):
        errors[key] = f"{key!r} is not understood here; use {', '.join(sorted(KEYS))}."
    for key in ("account_id", "contact_id"):
        value = body.get(key)
        if value is not None and (type(value) is not int or value < 1):
            errors[key] = f"{key} is the id of an existing record (a whole number) or null."
    for key in ("create_opportunity", "allow_duplicates"):
        if key in body and type(body[key]) is not bool:
            errors[key] = f"{key} is true or false."
    opportunity = body.get("opportunity")
    if opportunity is not None:
        if not isinstance(opportunity, dict):
            errors["opportunity"] = (
                'opportunity is an object such as {"name": "...", "amount": "100"}.'
            )
        else:
            for key in sorted(set(opportunity) - OPPORTUNITY_KEYS):
                errors[f"opportunity.{key}"] = (
                    f"Opportunities here take {', '.join(sorted(OPPORTUNITY_KEYS))}."
                )
            if "name" in opportunity and not isinstance(opportunity["name"], str | None):
                errors["opportunity.name"] = "name is text."
            if isinstance(opportunity.get("amount"), float):
                errors["opportunity.amount"] = (
                    'Send the amount as a decimal string such as "12000.50".'
                )
            if opportunity and not body.get("create_opportunity", True):
                errors["create_opportunity"] = "Set create_opportunity to true to create it."
    if errors:
        raise ValidationFailed(errors)
    return body


@api_bp.post("/leads/<int:lead_id>/convert", endpoint="convert_lead")
@login_required
def convert_lead(lead_id: int):
    body = _body()
    opportunity = body.get("opportunity") or {}
    create = body.get("create_opportunity", bool(opportunity))
    result = convert(
        request_service(),
        lead_id,
        account_id=body.get("account_id"),
        contact_id=body.get("contact_id"),
        create_opportunity=create,
        opportunity_name=opportunity.get("name"),
        opportunity_amount=opportunity.get("amount"),
        close_date=opportunity.get("close_date"),
        allow_duplicates=body.get("allow_duplicates", False),
    )
    answer = {
        "lead_id": lead_id,
        "account_id": result.account_id,
        "contact_id": result.contact_id,
        "opportunity_id": result.opportunity_id,
    }
    return jsonify(answer), 201 if result.created_any else 200
