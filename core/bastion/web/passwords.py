"""Changing one's own password, and reset or invitation links by email."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("password", __name__)
