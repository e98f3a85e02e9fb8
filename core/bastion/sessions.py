"""Server-side sessions: started at sign-in, checked on every request, ended from the server.

The signed cookie holds only a random token. A session ends at sign-out, after the idle
or absolute timeout, or when revoked (a disabled user, a changed password); a copy of an
ended session's cookie is worthless.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from flask import flash, request, session
from sqlalchemy import update

from bastion.db import db
from bastion.models import User, UserSession
from bastion.runtime import platform

SESSION_TOKEN_FIELD = "_bastion_sid"  # noqa: S105  (a key name, not a secret)
# Refreshing the last-seen time at most this often keeps writes off most requests.
SEEN_RESOLUTION_SECONDS = 60


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(user: User) -> None:
    """Call right after the cookie session was cleared at a successful sign-in."""
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    db.session.add(
        UserSession(
            id=_digest(token),
            user_id=user.id,
            started_at=now,
            seen_at=now,
            client_addr=(request.remote_addr or "")[:64],
            user_agent=request.headers.get("User-Agent", "")[:200],
        )
    )
    db.session.commit()
    session[SESSION_TOKEN_FIELD] = token


def _current_row() -> UserSession | None:
    token = session.get(SESSION_TOKEN_FIELD)
    if not isinstance(token, str) or not token:
        return None
    return db.session.get(UserSession, _digest(token))


def session_is_valid(user: User) -> bool:
    """Called when the signed-in user is loaded: is their server-side session alive?"""
    row = _current_row()
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return False
    settings = platform().settings
    now = int(time.time())
    if now - row.started_at > settings.session_absolute_hours * 3600:
        _end(row, "absolute", now)
    elif now - row.seen_at > settings.session_idle_minutes * 60:
        _end(row, "idle", now)
    else:
        if now - row.seen_at >= SEEN_RESOLUTION_SECONDS:
            _write(row.id, seen_at=now)
        return True
    flash("Your session has expired. Please sign in again.", "info")
    return False


def _write(session_id: str, **values: object) -> None:
    # On a connection of its own: the user is loaded in the middle of someone's request,
    # and committing the request's session here would commit its half-done work too.
    with db.engine.begin() as connection:
        connection.execute(update(UserSession).where(UserSession.id == session_id).values(**values))


def _end(row: UserSession, reason: str, now: int) -> None:
    _write(row.id, ended_at=now, end_reason=reason)


def end_current_session(reason: str = "sign_out") -> None:
    row = _current_row()
    if row is not None and row.ended_at is None:
        _end(row, reason, int(time.time()))


def end_all_sessions(user_id: int, reason: str = "revoked") -> int:
    """End every open session of a user; they are signed out on their next request."""
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=int(time.time()), end_reason=reason)
    )
    db.session.commit()
    return result.rowcount or 0
