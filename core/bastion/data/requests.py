"""The record service of the signed-in user, built once per request."""

from __future__ import annotations

from flask import g
from flask_login import current_user

from bastion.data.records import RecordService


def request_service() -> RecordService:
    service = g.get("_bastion_records")
    if service is None:
        user = current_user._get_current_object() if current_user.is_authenticated else None
        service = g._bastion_records = RecordService(user)
    return service


def forget_request_service() -> None:
    """After a definition change, so the rest of the request sees the new fields."""
    from bastion.data.catalog import forget_catalog

    g.pop("_bastion_records", None)
    forget_catalog()
