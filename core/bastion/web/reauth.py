"""Re-authentication before sensitive actions (see bastion.reauth).

The signed-in user types their password again, and a code (TOTP or recovery) when MFA
is on; the session then counts as freshly authenticated for ``reauth_minutes``.

Guessing is bounded by the sign-in throttle (bastion.throttle), on the server: a password
attempt here counts on the same per-account key as one on the sign-in page (reserved
before the password is checked, so parallel requests cannot slip past the limit), and a
code attempt on the same per-user MFA key. Someone holding a stolen session cookie gets no
more password guesses than someone at the sign-in page.
"""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request
from flask_login import current_user

from bastion import audit, mfa, throttle
from bastion.access import login_required
from bastion.db import db
from bastion.sessions import mark_authenticated
from bastion.web.safety import is_safe_next

bp = Blueprint("reauth", __name__, url_prefix="/account/reauth")

WRONG = "The password or the code is not correct. Check them and try again."
WRONG_NO_MFA = "The password is not correct. Check it and try again."
THROTTLED = "Too many wrong attempts. Wait a minute, then try again."


def _target(raw: str | None) -> str:
    return raw if raw and is_safe_next(raw) else "/"


def _render(status: int = 200, error: str | None = None):
    return (
        render_template(
            "account/reauth.html",
            next=_target(request.values.get("next")),
            needs_code=current_user.mfa_enabled,
            error=error,
        ),
        status,
    )


@bp.get("")
@login_required
def confirm():
    return _render()


@bp.post("")
@login_required
def confirm_submit():
    user = current_user._get_current_object()
    # Read what the checks need, then hand the pooled connection back: the throttle
    # commits on connections of its own, and reloading the (expired) user while it
    # does would hold two connections per request and drain the pool under a burst.
    account_key = throttle.account_key(user.email)
    mfa_key = throttle.mfa_key(user.id)
    user_id, mfa_enabled, password_hash = user.id, user.mfa_enabled, user.password_hash
    db.session.commit()
    # is_blocked() here only keeps the answer to a blocked user the same whatever the
    # password; the limit itself is the atomic reservation of mfa_key below.
    if not throttle.reserve(account_key, throttle.ACCOUNT_POLICY) or (
        mfa_enabled and throttle.is_blocked(mfa_key)
    ):
        return _throttled(user_id)
    password = request.form.get("password", "")
    passwords = current_app.extensions["bastion.passwords"]
    valid = bool(password) and passwords.verify(password_hash, password)
    if valid:
        throttle.succeeded(account_key)
    if valid and mfa_enabled:
        # The code is checked only after the password: a wrong password must not use
        # up the TOTP step of a correct code. Reserved before the check, so racing
        # requests cannot all get past the limit.
        if not throttle.reserve(mfa_key, throttle.MFA_POLICY):
            return _throttled(user_id)
        code = request.form.get("code", "").strip()
        valid = bool(code) and mfa.check_second_factor(user, code)
        if valid:
            throttle.succeeded(mfa_key)
    if not valid:
        audit.record("auth.reauth", object_type="user", object_id=user_id, outcome="failure")
        return _render(422, WRONG if mfa_enabled else WRONG_NO_MFA)
    mark_authenticated()
    audit.record("auth.reauth", object_type="user", object_id=user_id)
    return redirect(_target(request.form.get("next")))


def _throttled(user_id: int):
    audit.record("auth.reauth", object_type="user", object_id=user_id, outcome="throttled")
    return _render(429, THROTTLED)
