"""TOTP multi-factor authentication (RFC 6238, pyotp) and recovery codes.

* Secrets are stored encrypted (bastion.encryption), bound to the user's row: a secret
  copied to another user does not decrypt.
* A code is accepted for the current 30-second step or the one before, no wider, and
  only once: the accepted step is written with a conditional UPDATE, so of any number of
  requests racing with one code exactly one wins. A matching code for a step already used
  is a replay: refused, audited, and the user is told at their next sign-in.
* Ten recovery codes of 80 random bits each, shown once, stored as salted SHA-256 (their
  entropy makes a slow hash unnecessary), each usable once (again a conditional UPDATE).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import TYPE_CHECKING, Literal

import pyotp
import segno
from markupsafe import Markup
from sqlalchemy import delete, func, select, update

from bastion import audit
from bastion.db import db
from bastion.encryption import DecryptionError
from bastion.models import RecoveryCode, User, utcnow
from bastion.sessions import end_all_sessions, request_rotation

if TYPE_CHECKING:
    from bastion.keys.cipher import EnvelopeCipher

ISSUER = "Bastion"
STEP_SECONDS = 30
CODE_RE = re.compile(r"\d{6}")
RECOVERY_CODE_COUNT = 10
QR_SCALE = 5
QR_BORDER = 4
#: Crockford's base32 alphabet in lower case: no i, l, o or u to misread.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_CODE_CHARS = 16  # 16 x 5 bits = 80 bits
#: What people mistype for Crockford characters.
_RECOVERY_CONFUSABLES = str.maketrans({"o": "0", "i": "1", "l": "1"})

TotpResult = Literal["accepted", "replayed", "invalid"]


def now() -> float:
    """The clock for TOTP steps (Unix seconds); tests move it by patching this function."""
    return time.time()


def current_step(at: float | None = None) -> int:
    return int((now() if at is None else at) // STEP_SECONDS)


# Secrets -----------------------------------------------------------------------------


def new_secret() -> str:
    """160 random bits in base32: what authenticator apps expect."""
    return pyotp.random_base32(32)


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> Markup:
    """The URI as an inline SVG QR code, drawn here: no request leaves the server.

    segno writes presentation attributes (fill, stroke), never ``style=``, which the CSP
    would block; the guard below keeps it that way if segno ever changes.
    """
    qr = segno.make(uri, error="m")
    size = qr.symbol_size(scale=QR_SCALE, border=QR_BORDER)[0]
    svg = qr.svg_inline(
        scale=QR_SCALE,
        border=QR_BORDER,
        omitsize=True,  # a viewBox instead, so the stylesheet can scale it to a phone
        dark="#000",
        light="#fff",  # a white quiet zone whatever the page's background
        svgclass="qr-code",
        lineclass=None,
        title="QR code for your authenticator app",
    )
    svg = re.sub(r'\sstyle="[^"]*"', "", svg)
    svg = svg.replace("<svg ", f'<svg width="{size}" height="{size}" role="img" ', 1)
    return Markup(svg)  # noqa: S704  (segno's own markup; the URI is encoded as modules)


def cipher() -> EnvelopeCipher:
    """The encryption service of field values and credential material (bastion.keys)."""
    from bastion.keys.cipher import cipher as envelope_cipher

    return envelope_cipher()


def secret_context(user_id: int) -> str:
    return f"users.mfa_secret:{user_id}"


def encrypt_secret(user_id: int, secret: str) -> str:
    return cipher().encrypt(secret, context=secret_context(user_id))


def _decrypt_secret(user: User) -> str | None:
    if not user.mfa_secret:
        return None
    try:
        return cipher().decrypt(user.mfa_secret, context=secret_context(user.id))
    except DecryptionError:
        audit.record("auth.mfa_secret_unreadable", actor=f"user:{user.id}", outcome="failure")
        return None


def normalize_code(code: str | None) -> str:
    return "".join((code or "").split()).replace("-", "")


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The step (current or previous, no wider) whose code is ``code``, or None."""
    code = normalize_code(code)
    if not CODE_RE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    step = current_step(at)
    found = None
    for candidate in (step, step - 1):
        # Both compared every time, in constant time: no timing hint of which matched.
        if hmac.compare_digest(totp.at(candidate * STEP_SECONDS), code) and found is None:
            found = candidate
    return found


def verify_totp(user: User, code: str) -> TotpResult:
    """Check a code and use it up. Commits the database session.

    "accepted": right and not used before (it is now). "replayed": right, but its step
    (or a later one) was accepted already, possibly a moment ago by a racing request.
    "invalid": anything else, including a user without MFA.
    """
    secret = _decrypt_secret(user)
    if secret is None:
        return "invalid"
    step = matching_step(secret, code)
    if step is None:
        return "invalid"
    user_id = user.id
    result = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            (User.mfa_last_step.is_(None)) | (User.mfa_last_step < step),
        )
        .values(mfa_last_step=step)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount == 1:
        return "accepted"
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(mfa_replay_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    audit.record(
        "auth.mfa_replay_refused",
        actor=f"user:{user_id}",
        object_type="user",
        object_id=user_id,
        outcome="failure",
    )
    return "replayed"


# Recovery codes ----------------------------------------------------------------------


def _format_recovery_code(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalize_recovery_code(code: str | None) -> str | None:
    """Case, spaces and dashes do not matter; o, i and l read as 0, 1 and 1."""
    bare = "".join((code or "").split()).replace("-", "").lower()
    bare = bare.translate(_RECOVERY_CONFUSABLES)
    if len(bare) != RECOVERY_CODE_CHARS or any(ch not in RECOVERY_ALPHABET for ch in bare):
        return None
    return bare


def _hash_recovery_code(salt: str, normalized: str) -> str:
    return hashlib.sha256(f"{salt}:{normalized}".encode("ascii")).hexdigest()


def generate_recovery_codes(user: User) -> list[str]:
    """Ten new codes (the old ones stop working), returned once to be shown once.

    Adds to the database session; the caller commits.
    """
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes: list[str] = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_CHARS))
        salt = secrets.token_hex(16)
        db.session.add(
            RecoveryCode(user_id=user.id, salt=salt, code_hash=_hash_recovery_code(salt, raw))
        )
        codes.append(_format_recovery_code(raw))
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """True once for each of the user's codes; uses it up atomically. Commits."""
    normalized = normalize_recovery_code(code)
    if normalized is None:
        return False
    rows = db.session.execute(
        select(RecoveryCode.id, RecoveryCode.salt, RecoveryCode.code_hash).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
        )
    ).all()
    match = None
    for row_id, salt, code_hash in rows:
        if hmac.compare_digest(_hash_recovery_code(salt, normalized), code_hash):
            match = row_id
    if match is None:
        return False
    result = db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == match, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount != 1:
        return False  # a racing request used it a moment ago
    audit.record(
        "auth.recovery_code_used",
        actor=f"user:{user.id}",
        object_type="user",
        object_id=user.id,
        changes={"remaining": remaining_recovery_codes(user)},
    )
    return True


def remaining_recovery_codes(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


# Second factor, enrolment, removal ---------------------------------------------------


def check_second_factor(user: User, code: str) -> bool:
    """A TOTP code (accepted, single use) or a recovery code. Commits.

    For re-authentication: one field takes either kind.
    """
    if verify_totp(user, code) == "accepted":
        return True
    return use_recovery_code(user, code)


def enable_mfa(user: User, secret: str, accepted_step: int) -> list[str]:
    """Turn MFA on with a confirmed secret; returns the recovery codes to show once.

    The confirming code's step counts as used. The user's sessions are rotated (their
    privileges changed). Commits and audits.
    """
    user.mfa_secret = encrypt_secret(user.id, secret)
    user.mfa_enabled_at = utcnow()
    user.mfa_last_step = accepted_step
    user.mfa_replay_at = None
    codes = generate_recovery_codes(user)
    request_rotation(user.id)
    audit.record("mfa.enrol", actor=f"user:{user.id}", object_type="user", object_id=user.id)
    db.session.commit()
    return codes


def _clear(user: User) -> None:
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    user.mfa_replay_at = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def reset_mfa(user: User, *, actor: str) -> None:
    """An administrator's reset: MFA off, recovery codes gone, every session ended.

    The user signs in with their password and enrols again (if MFA is required for them,
    the account gate sends them straight to enrolment). Commits and audits.
    """
    _clear(user)
    audit.record("mfa.reset", actor=actor, object_type="user", object_id=user.id)
    db.session.commit()
    end_all_sessions(user.id, "mfa_reset")


def disable_mfa(user: User, *, actor: str) -> None:
    """The user turns MFA off themselves (only when not required): other sessions end."""
    _clear(user)
    request_rotation(user.id)
    audit.record("mfa.disable", actor=actor, object_type="user", object_id=user.id)
    db.session.commit()
    end_all_sessions(user.id, "mfa_disabled", keep_current=True)
