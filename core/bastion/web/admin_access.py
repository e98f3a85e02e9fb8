"""Roles, the permission matrix, and why a user can or cannot reach something."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_access", __name__, url_prefix="/admin")
