"""TOTP enrolment, recovery codes and the sign-in code step's pages."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("mfa", __name__, url_prefix="/account/mfa")
