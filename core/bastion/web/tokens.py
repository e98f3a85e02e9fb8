"""Personal access tokens: create (shown once), list, revoke."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")
