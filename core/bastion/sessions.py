"""Idle and absolute session timeouts, checked before every request."""

from __future__ import annotations

import time

from flask import flash, session
from flask_login import current_user, logout_user

from bastion.runtime import platform

STARTED = "_bastion_started"
SEEN = "_bastion_seen"
# Refreshing the last-seen time at most this often keeps Set-Cookie off most responses.
SEEN_RESOLUTION_SECONDS = 60


def start_session() -> None:
    """Call right after a successful sign-in."""
    now = int(time.time())
    session[STARTED] = now
    session[SEEN] = now


def enforce_session_lifetime() -> None:
    if not current_user.is_authenticated:
        return
    settings = platform().settings
    now = int(time.time())
    started = session.get(STARTED, 0)
    seen = session.get(SEEN, 0)
    idle_limit = settings.session_idle_minutes * 60
    absolute_limit = settings.session_absolute_hours * 3600
    if now - started > absolute_limit or now - seen > idle_limit:
        logout_user()
        session.clear()
        flash("Your session has expired. Please sign in again.", "info")
        return
    if now - seen >= SEEN_RESOLUTION_SECONDS:
        session[SEEN] = now
