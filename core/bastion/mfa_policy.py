"""Who must use MFA: everyone (a site setting) or the members of chosen roles."""

from __future__ import annotations

from typing import Any

from bastion.db import db
from bastion.models import SiteSetting, utcnow

MFA_REQUIRED_SETTING = "mfa.required_for_all"


def required_for_all() -> bool:
    row = db.session.get(SiteSetting, MFA_REQUIRED_SETTING)
    return row is not None and row.value == "yes"


def set_required_for_all(required: bool, *, actor: str) -> None:
    row = db.session.get(SiteSetting, MFA_REQUIRED_SETTING) or SiteSetting(key=MFA_REQUIRED_SETTING)
    row.value, row.changed_at, row.changed_by = ("yes" if required else "no"), utcnow(), actor
    db.session.add(row)


def mfa_required(user: Any) -> bool:
    return required_for_all() or any(role.require_mfa for role in user.roles)


def enrolment_required(user: Any) -> bool:
    """Signed in, obliged to use MFA and not enrolled: enrolment is all they may do."""
    return not user.mfa_enabled and mfa_required(user)
