"""Server-side sessions: started at sign-in, checked on every request, ended from the server.

The signed cookie holds only a random token. A session ends at sign-out, after the idle
or absolute timeout, or when revoked (a disabled user, a changed password, a reset MFA);
a copy of an ended session's cookie is worthless. When privileges change the session is
rotated: a new token replaces the old one on the user's next request.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from flask import flash, request, session
from sqlalchemy import insert, update

from bastion.db import db
from bastion.models import User, UserSession
from bastion.runtime import platform

SESSION_TOKEN_FIELD = "_bastion_sid"  # noqa: S105  (a key name, not a secret)
# Refreshing the last-seen time at most this often keeps writes off most requests.
SEEN_RESOLUTION_SECONDS = 60


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(user: User, *, started_at: int | None = None) -> None:
    """Call right after the cookie session was cleared at a successful sign-in.

    ``started_at`` carries a rotated session's start over, so rotation never extends the
    absolute timeout.
    """
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    db.session.add(
        UserSession(
            id=_digest(token),
            user_id=user.id,
            started_at=started_at or now,
            seen_at=now,
            authenticated_at=now,
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
        if row.rotate:
            _rotate(row, now)
        elif now - row.seen_at >= SEEN_RESOLUTION_SECONDS:
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


def _rotate(row: UserSession, now: int) -> None:
    """Swap the session for a fresh one after a privilege change; the old cookie dies.

    The CSRF token goes too: one issued under the old privileges stops working.
    """
    _end(row, "rotated", now)
    token = secrets.token_urlsafe(32)
    with db.engine.begin() as connection:
        connection.execute(
            insert(UserSession).values(
                id=_digest(token),
                user_id=row.user_id,
                started_at=row.started_at,
                seen_at=now,
                authenticated_at=row.authenticated_at,
                client_addr=row.client_addr,
                user_agent=row.user_agent,
                rotate=False,
            )
        )
    session[SESSION_TOKEN_FIELD] = token
    session.pop("csrf_token", None)


def request_rotation(user_id: int) -> None:
    """Privileges of a user changed: each of their sessions is rotated on its next request."""
    db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(rotate=True)
    )


def seconds_since_authentication() -> int | None:
    """How long ago the signed-in user last proved who they are, or None without a session."""
    row = _current_row()
    if row is None or row.ended_at is not None:
        return None
    return int(time.time()) - (row.authenticated_at or row.started_at)


def mark_authenticated() -> None:
    """The user re-authenticated (password, and a code when MFA is on)."""
    row = _current_row()
    if row is not None:
        _write(row.id, authenticated_at=int(time.time()))


def end_current_session(reason: str = "sign_out") -> None:
    row = _current_row()
    if row is not None and row.ended_at is None:
        _end(row, reason, int(time.time()))


def end_all_sessions(user_id: int, reason: str = "revoked", *, keep_current: bool = False) -> int:
    """End every open session of a user; they are signed out on their next request.

    ``keep_current`` spares the session making the request (a user changing their own
    password stays signed in here and is signed out everywhere else).
    """
    query = update(UserSession).where(
        UserSession.user_id == user_id, UserSession.ended_at.is_(None)
    )
    current = _current_row() if keep_current else None
    if current is not None:
        query = query.where(UserSession.id != current.id)
    result = db.session.execute(query.values(ended_at=int(time.time()), end_reason=reason))
    db.session.commit()
    return result.rowcount or 0
