"""Re-authentication before sensitive actions (see bastion.reauth)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("reauth", __name__, url_prefix="/account/reauth")
