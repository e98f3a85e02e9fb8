"""Personal API tokens: created once, stored as a SHA-256, narrowed by scopes, revocable.

A token is ``bst_`` followed by 256 random bits. Only its SHA-256 is stored, so a copy of
the database cannot be replayed; looking a token up by its hash is also what makes the
check constant-time (no secret is compared byte by byte). The first characters are kept
as a prefix so that users can tell their tokens apart.

Scopes narrow a token to some of the permissions its user holds: capability strings
(``admin.users``) and object permissions (``account:read``). A token never holds more
than its user holds now: scopes are intersected with the user's permissions on every
request (:func:`bastion.access.user_permissions`), and ``None`` means "whatever the user
holds".
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bastion import audit
from bastion.db import db
from bastion.models import OBJECT_ACTIONS, ApiToken, User, as_utc, utcnow

TOKEN_PREFIX = "bst_"  # noqa: S105  (a marker, not a secret)
#: Characters of the token shown in lists ("bst_" and 8 random characters).
DISPLAY_PREFIX_LENGTH = 12
NAME_MAX_LENGTH = 100
EXPIRES_DAYS_MAX = 3650
#: What the tokens page proposes.
DEFAULT_EXPIRES_DAYS = 90
#: last_used_at is written at most this often per token.
USE_RESOLUTION_SECONDS = 60
#: Longer than any token we issue; longer input is refused before it is hashed.
RAW_MAX_LENGTH = 100
OBJECT_PERMISSION_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}:(?:" + "|".join(OBJECT_ACTIONS) + r")\Z")


class TokenError(ValueError):
    """A token could not be created; the message says what to change."""


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of looking up a presented token; ``reason`` says why it was refused."""

    token: ApiToken | None
    reason: str | None = None


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def token_scopes(token: ApiToken) -> frozenset[str] | None:
    """The token's scopes, or None when it carries all of its user's permissions."""
    if token.scopes is None:
        return None
    try:
        value = json.loads(token.scopes)
    except ValueError:
        return frozenset()  # unreadable scopes grant nothing
    if not isinstance(value, list):
        return frozenset()
    return frozenset(item for item in value if isinstance(item, str))


def is_expired(token: ApiToken, now: datetime | None = None) -> bool:
    expires = as_utc(token.expires_at)
    return expires is not None and expires <= (now or utcnow())


def status(token: ApiToken, now: datetime | None = None) -> str:
    """active, expired or revoked (what the tokens page shows)."""
    if token.revoked_at is not None:
        return "revoked"
    if is_expired(token, now):
        return "expired"
    return "active"


def grantable_scopes(user: User) -> list[str]:
    """Every scope the user may put on a token right now, sorted.

    Capabilities come from the user's roles (only those of the core or an enabled plugin
    grant). Object permissions come from the authorization service when it is present.
    """
    from bastion.access import user_permissions

    scopes = set(user_permissions(user))
    scopes |= _object_scopes(user)
    return sorted(scopes)


def _object_scopes(user: User) -> set[str]:
    return {
        f"{object_name}:{action}"
        for object_name in _known_objects()
        for action in OBJECT_ACTIONS
        if _object_allowed(user, object_name, action)
    }


def _known_objects() -> frozenset[str]:
    from bastion.runtime import platform

    return frozenset(platform().objects)


def _object_allowed(user: User, object_name: str, action: str) -> bool:
    from bastion.authz import object_decision

    return object_name in _known_objects() and object_decision(user, object_name, action).allowed


def _check_scopes(user: User, scopes: list[str]) -> list[str]:
    """Refuse any scope the user does not hold right now; return them sorted, deduplicated."""
    from bastion.access import user_permissions

    wanted = sorted({scope.strip() for scope in scopes if scope and scope.strip()})
    capabilities = user_permissions(user)
    refused: list[str] = []
    for scope in wanted:
        if scope in capabilities:
            continue
        if OBJECT_PERMISSION_RE.match(scope) and _object_allowed(user, *scope.split(":")):
            continue
        refused.append(scope)
    if refused:
        raise TokenError(
            "A token cannot hold permissions you do not have: "
            f"{', '.join(refused)}. Choose among your own permissions."
        )
    return wanted


def _check_name(user: User, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise TokenError("Give the token a name, such as the script or machine that uses it.")
    if len(name) > NAME_MAX_LENGTH:
        raise TokenError(f"The token name is too long: use at most {NAME_MAX_LENGTH} characters.")
    if any(ord(ch) < 32 for ch in name):
        raise TokenError("The token name cannot contain control characters.")
    taken = db.session.scalar(
        select(ApiToken.id).where(
            ApiToken.user_id == user.id, ApiToken.name == name, ApiToken.revoked_at.is_(None)
        )
    )
    if taken is not None:
        raise TokenError(
            f"You already have a token named {name!r}. Choose another name or revoke it first."
        )
    return name


def create_token(
    user: User,
    name: str,
    *,
    expires_days: int | None = None,
    scopes: list[str] | None = None,
) -> tuple[ApiToken, str]:
    """Create and commit a token; return it with the raw token, which is never stored.

    ``expires_days`` None means no expiry; ``scopes`` None means all the user holds.
    Raises :class:`TokenError` with a sentence for the user when the input is refused.
    """
    name = _check_name(user, name)
    if expires_days is not None and not (
        isinstance(expires_days, int) and 1 <= expires_days <= EXPIRES_DAYS_MAX
    ):
        raise TokenError(
            f"The expiry must be between 1 and {EXPIRES_DAYS_MAX} days, or none at all."
        )
    checked = None if scopes is None else _check_scopes(user, scopes)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=_digest(raw),
        prefix=raw[:DISPLAY_PREFIX_LENGTH],
        scopes=None if checked is None else json.dumps(checked),
        created_at=now,
        expires_at=None if expires_days is None else now + timedelta(days=expires_days),
    )
    db.session.add(token)
    db.session.flush()  # its id, for the audit entry committed with it
    audit.record(
        "token.create",
        object_type="api_token",
        object_id=token.id,
        changes={
            "user_id": user.id,
            "name": name,
            "prefix": token.prefix,
            "expires_at": as_utc(token.expires_at).isoformat() if token.expires_at else None,
            "scopes": checked,
        },
    )
    db.session.commit()
    return token, raw


def check(raw: str | None) -> TokenCheck:
    """Look a presented token up; refuse unknown, revoked and expired tokens and tokens
    of disabled users. Records the use (at most once a minute per token)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > RAW_MAX_LENGTH:
        return TokenCheck(None, "unknown")
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(raw)))
    if token is None:
        return TokenCheck(None, "unknown")
    if token.revoked_at is not None:
        return TokenCheck(token, "revoked")
    now = utcnow()
    if is_expired(token, now):
        return TokenCheck(token, "expired")
    if token.user is None or not token.user.active:
        return TokenCheck(token, "user_disabled")
    _record_use(token, now)
    return TokenCheck(token)


def _record_use(token: ApiToken, now: datetime) -> None:
    """Set last_used_at at most once a minute; audit the first use, then one use per hour.

    An entry per request would drown the trail (a sync job makes thousands), so a
    ``token.use`` entry marks the token's first use and then the first use in each
    clock hour: the trail says in which hours a token was used, and refused uses are
    audited every time (``bastion.web.api_auth``).

    On a connection of its own: this runs before the view, and committing the request's
    session here would commit whatever the view does later in a half-done state. The
    conditional update makes both rules hold across processes too: only the process
    whose update wins writes the entry.
    """
    threshold = now - timedelta(seconds=USE_RESOLUTION_SECONDS)
    last = as_utc(token.last_used_at)
    if last is not None and last > threshold:
        return
    with db.engine.begin() as connection:
        result = connection.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token.id,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= threshold),
            )
            .values(last_used_at=now)
        )
    if not result.rowcount:
        return
    # Written already: keep it out of the request's own unit of work.
    set_committed_value(token, "last_used_at", now)
    if last is None or _hour(last) != _hour(now):
        audit.record(
            "token.use",
            actor=f"user:{token.user_id}",
            object_type="api_token",
            object_id=token.id,
            changes={"first_use": True} if last is None else None,
        )


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def revoke(token: ApiToken, *, actor: str) -> bool:
    """Revoke and commit; False when it was already revoked."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    audit.record(
        "token.revoke",
        actor=actor,
        object_type="api_token",
        object_id=token.id,
        changes={"user_id": token.user_id, "name": token.name, "prefix": token.prefix},
    )
    db.session.commit()  # the revocation and its audit entry together
    return True


def list_tokens(user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones included)."""
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id)
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def find_user_token(user: User, token_id: int) -> ApiToken | None:
    """One of the user's own tokens; None for another user's (no hint that it exists)."""
    token = db.session.get(ApiToken, token_id)
    return token if token is not None and token.user_id == user.id else None
