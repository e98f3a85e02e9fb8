"""Single-use, time-limited links to set a password: resets and invitations.

The raw token (256 bits from ``secrets``) exists only in the emailed link; the database
keeps its SHA-256, so a copy of the table opens nothing. A link is used at most once:
:func:`consume` marks it used with one conditional UPDATE, which only one of any number
of concurrent requests can win. Links are built from ``settings.public_url``, never from
a request's Host header, which an attacker could set to their own server.

Using a link sets the password and ends every session of the user; it never signs
anyone in, so a user with MFA still gives a code at the next sign-in.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select, update

from bastion import audit
from bastion.db import db
from bastion.mail import MailError, send_mail
from bastion.models import PasswordToken, User
from bastion.runtime import platform
from bastion.sessions import end_all_sessions

log = logging.getLogger("bastion.password_tokens")
PURPOSES = ("reset", "invite")
RESET_PATH = "/password/reset/"
#: token_urlsafe(32) gives 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 100


class TokenError(ValueError):
    """The link is unknown, expired, used or replaced; the message says what to do."""


INVALID_LINK = (
    "This link is no longer valid: it has expired, has already been used, or was replaced "
    "by a newer one. Ask for a new link."
)


def _now() -> int:
    return int(time.time())


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def issue(user: User, purpose: str) -> str:
    """Store a new token for ``user`` and return the raw token (put it in a link only).

    Every older unused link of the user stops working: only the newest one counts.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}.")
    settings = platform().settings
    now = _now()
    lifetime = (
        settings.password_reset_minutes * 60
        if purpose == "reset"
        else settings.invitation_hours * 3600
    )
    db.session.execute(
        update(PasswordToken)
        .where(
            PasswordToken.user_id == user.id,
            PasswordToken.used_at.is_(None),
            PasswordToken.expires_at > now,
        )
        .values(expires_at=now)
    )
    raw = secrets.token_urlsafe(32)
    db.session.add(
        PasswordToken(
            id=_digest(raw),
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    db.session.commit()
    return raw


def link(raw: str) -> str:
    """The absolute link for a token, from settings.public_url.

    Without a public_url (possible only while mail is off) the path alone is returned,
    for an administrator to hand over together with the address they use.
    """
    base = platform().settings.public_url.rstrip("/")
    return f"{base}{RESET_PATH}{raw}"


@dataclass(frozen=True)
class ValidToken:
    user: User
    purpose: str


def check(raw: str) -> ValidToken:
    """The unused, unexpired token and its (active) user, or TokenError. Changes nothing."""
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        raise TokenError(INVALID_LINK)
    row = db.session.get(PasswordToken, _digest(raw))
    if row is None or row.used_at is not None or row.expires_at <= _now():
        raise TokenError(INVALID_LINK)
    user = db.session.get(User, row.user_id)
    if user is None or not user.active:
        raise TokenError(INVALID_LINK)
    return ValidToken(user=user, purpose=row.purpose)


def consume(raw: str, new_password: str) -> User:
    """Use a link once: set the user's password and end all their sessions.

    Raises PasswordPolicyError (the link stays usable) or TokenError.
    """
    from bastion.credentials import change_password

    token = check(raw)
    user = token.user
    passwords = current_app.extensions["bastion.passwords"]
    # Before the token is spent: a refused password leaves the link usable.
    passwords.check_policy(new_password, context=(user.email, user.name))
    claimed = db.session.execute(
        update(PasswordToken)
        .where(
            PasswordToken.id == _digest(raw),
            PasswordToken.used_at.is_(None),
            PasswordToken.expires_at > _now(),
        )
        .values(used_at=_now())
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise TokenError(INVALID_LINK)
    actor = f"user:{user.id}"
    # Commits the claim and the new password together.
    change_password(user, new_password, actor=actor, end_other_sessions=False)
    # Every session ends, the browser using the link included: it signs nobody in.
    end_all_sessions(user.id, "password_reset")
    action = "auth.invitation_accepted" if token.purpose == "invite" else "auth.password_reset"
    audit.record(action, actor=actor, object_type="user", object_id=user.id)
    return user


def recent_count(user: User, purpose: str, seconds: int) -> int:
    """How many links of this purpose were issued to the user in the last ``seconds``."""
    return (
        db.session.scalar(
            select(func.count())
            .select_from(PasswordToken)
            .where(
                PasswordToken.user_id == user.id,
                PasswordToken.purpose == purpose,
                PasswordToken.created_at > _now() - seconds,
            )
        )
        or 0
    )


def reset_message(user: User, url: str, *, forced: bool = False) -> tuple[str, str]:
    """The subject and body of a reset mail."""
    minutes = platform().settings.password_reset_minutes
    if forced:
        opening = (
            "An administrator asked you to choose a new password for your Bastion account "
            f"{user.email}."
        )
        closing = "Until you do, you will be asked for a new password when you sign in."
    else:
        opening = (
            "Someone, hopefully you, asked to reset the password of your Bastion account "
            f"{user.email}."
        )
        closing = "If you did not ask for this, ignore this message: your password stays as it is."
    body = (
        f"Hello {user.display_name},\n\n{opening}\n\n"
        f"Open this link within {minutes} minutes to choose a new password:\n\n{url}\n\n"
        "The link works once. Bastion never asks for your password by email.\n"
        f"{closing}\n"
    )
    return "Reset your Bastion password", body


def invitation_message(user: User, url: str) -> tuple[str, str]:
    """The subject and body of an invitation mail."""
    settings = platform().settings
    body = (
        f"Hello {user.display_name},\n\n"
        f"You have been given an account on Bastion at {settings.public_url}, "
        f"with the email address {user.email}.\n\n"
        f"Open this link within {settings.invitation_hours} hours to choose your password:\n\n"
        f"{url}\n\nThe link works once. If you did not expect this, ignore this message.\n"
    )
    return "Your Bastion account", body


def send_invitation(user: User) -> str:
    """Issue an invitation link, email it when mail is on, and return it.

    The link is returned so an administrator can hand it over when mail is off or
    failed; it is shown once and never stored or logged.
    """
    url = link(issue(user, "invite"))
    sent = False
    if platform().settings.mail_enabled:
        try:
            send_mail(user.email, *invitation_message(user, url))
            sent = True
        except MailError as exc:
            log.warning("The invitation could not be emailed: %s", exc)
    audit.record(
        "auth.invitation_issued",
        object_type="user",
        object_id=user.id,
        changes={"emailed": sent},
    )
    return url
