"""The identity part of the REST API: who am I, my token, users and teams."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
