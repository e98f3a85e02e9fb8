"""A user's own profile: name, time zone, locale."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")
