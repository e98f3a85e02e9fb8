"""Sign-in (password, then a TOTP or recovery code when MFA is on) and sign-out.

Throttling (bastion.throttle) is applied before the password is checked, per client
address and per account. A throttled attempt, an unknown email, a wrong password, a
disabled account and an invited user without a password all get the same page, status
and message, and all cost one Argon2 verification, so none of them can be told apart.

After a correct password for a user with MFA, nobody is signed in yet: the cookie session
holds a pending sign-in (user id, time, ``next`` and a random nonce) for five minutes, and
``/login/code`` asks for the code. The pending sign-in allows five code attempts, counted
on the server under its nonce (a replayed older cookie gets none back); then the password
is needed again. Every code attempt is also reserved on the user's ``mfa:<id>`` throttle
key before the code is checked (a correct password never resets that key).
``/login/code?recovery=1`` shows the same form with a ``recovery_code`` field instead.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select, update

from bastion import audit, mfa, throttle
from bastion.access import login_required, public
from bastion.db import db
from bastion.identity import find_user_by_email
from bastion.models import User, utcnow
from bastion.sessions import end_current_session, start_session
from bastion.web.safety import is_safe_next

bp = Blueprint("auth", __name__)

# One message for unknown users, wrong passwords, disabled accounts and throttled
# attempts: no enumeration, and no hint of which accounts are being throttled.
SIGN_IN_FAILED = (
    "The email or password is not correct. After several failed attempts, wait a minute "
    "before trying again."
)
CODE_FAILED = (
    "That code is not correct or has already been used. Enter the code your authenticator "
    "app shows now."
)
RECOVERY_CODE_FAILED = (
    "That recovery code is not correct or has already been used. Check it and try again, "
    "or use another of your recovery codes."
)
CODE_THROTTLED = "Too many wrong codes. Wait a minute, then enter the code your app shows now."
PENDING_ENDED = (
    "Your sign-in has expired or had too many wrong codes. Sign in again with your email "
    "and password."
)
REPLAY_WARNING = (
    "Someone tried to reuse one of your sign-in codes on {when}. If that was not you, "
    "change your password."
)

PENDING_FIELD = "_bastion_mfa_pending"
#: A pending sign-in lasts this long after the password was checked.
PENDING_SECONDS = 300
#: Code attempts per pending sign-in before the password is needed again.
PENDING_ATTEMPTS = 5


def _release_connection() -> None:
    """Hand the request's pooled connection back before the throttle takes its own.

    Every request reads the plugin state through the ORM session first, which keeps a
    connection checked out; the throttle commits on separate connections. Under a burst
    of concurrent sign-ins, requests each holding one connection while waiting for a
    second could drain the pool. Nothing is pending at this point, so this writes nothing.
    """
    db.session.commit()


@bp.get("/login")
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.dashboard"))
    return render_template("core/login.html", email="", next=request.args.get("next", ""))


def _sign_in_failed(email: str, target: str):
    flash(SIGN_IN_FAILED, "error")
    return render_template("core/login.html", email=email, next=target), 401


@bp.post("/login")
@public
def login_submit():
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = request.form.get("next", "")
    passwords = current_app.extensions["bastion.passwords"]
    _release_connection()
    address_key = throttle.address_key(request.remote_addr)
    account_key = throttle.account_key(email)
    # The address first: a throttled address does not eat into the account's allowance.
    allowed = throttle.reserve(address_key, throttle.ADDRESS_POLICY) and throttle.reserve(
        account_key, throttle.ACCOUNT_POLICY
    )
    user = find_user_by_email(email) if email else None
    actor = f"user:{user.id}" if user else "anonymous"
    if not allowed:
        passwords.verify(None, password)  # the same work as a real check: timing tells nothing
        audit.record("auth.sign_in", actor=actor, outcome="throttled")
        return _sign_in_failed(email, target)
    # Always verify (against a dummy hash for unknown users) so timing does not tell.
    valid = passwords.verify(user.password_hash if user else None, password)
    if not (valid and user is not None and user.active):
        audit.record("auth.sign_in", actor=actor, outcome="failure")
        _audit_lockout(account_key, throttle.ACCOUNT_POLICY, actor, user)
        return _sign_in_failed(email, target)

    user_id, needs_code = user.id, user.mfa_enabled
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    if not needs_code:
        user.last_login_at = utcnow()
    db.session.commit()
    throttle.succeeded(account_key)
    throttle.undo(address_key)
    if needs_code:
        _start_pending(user_id, target)
        audit.record("auth.password_verified", actor=actor)
        return redirect(url_for("auth.login_code"))
    return _complete_sign_in(user, target)


def _audit_lockout(
    key: str, policy: throttle.Policy, actor: str, user: User | None, *, step: str = "password"
) -> None:
    """Audit the failure that locked an account out (one attempt an hour from now on).

    An unknown email address is locked out too (so that nothing tells it apart); its
    entry names no user, and never the address typed.
    """
    if throttle.just_locked(key, policy):
        audit.record(
            "auth.lockout",
            actor=actor,
            object_type="user" if user is not None else None,
            object_id=user.id if user is not None else None,
            outcome="refused",
            changes={
                "step": step,
                "failures": policy.hourly_cap,
                "seconds": throttle.DECAY_SECONDS,
            },
        )


def _complete_sign_in(user: User, target: str, *, replay_noticed: datetime | None = None):
    # Rotate: nothing from the anonymous session (including its CSRF token) survives.
    session.clear()
    start_session(user)
    login_user(user)
    session.permanent = True
    if replay_noticed is not None:
        flash(REPLAY_WARNING.format(when=_utc_text(replay_noticed)), "warning")
    audit.record("auth.sign_in", actor=f"user:{user.id}")
    return redirect(target if is_safe_next(target) else url_for("home.dashboard"))


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# The code step -----------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignIn:
    user_id: int
    started: int
    nonce: str
    next: str

    @property
    def attempts_key(self) -> str:
        return _attempts_key(self.nonce)


def _attempts_key(nonce: str) -> str:
    """Counts the codes tried for one pending sign-in (at most PENDING_ATTEMPTS)."""
    return f"mfap:{nonce}"


def _start_pending(user_id: int, target: str) -> None:
    nonce = secrets.token_urlsafe(18)
    throttle.open_attempts(_attempts_key(nonce))
    session[PENDING_FIELD] = {
        "user_id": user_id,
        "started": throttle.now(),
        "nonce": nonce,
        "next": target,
    }


def _pending() -> PendingSignIn | None:
    data = session.get(PENDING_FIELD)
    if not isinstance(data, dict):
        return None
    try:
        pending = PendingSignIn(
            user_id=int(data["user_id"]),
            started=int(data["started"]),
            nonce=str(data["nonce"]),
            next=str(data.get("next", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= throttle.now() - pending.started <= PENDING_SECONDS:
        return None
    return pending


def _pending_ended():
    session.pop(PENDING_FIELD, None)
    flash(PENDING_ENDED, "info")
    return redirect(url_for("auth.login"))


def _code_page(*, recovery: bool, status: int = 200):
    return render_template("core/login_code.html", recovery=recovery), status


@bp.get("/login/code")
@public
def login_code():
    if current_user.is_authenticated:
        return redirect(url_for("home.dashboard"))
    if _pending() is None:
        return _pending_ended()
    return _code_page(recovery=request.args.get("recovery") == "1")


@bp.post("/login/code")
@public
def login_code_submit():
    _release_connection()
    pending = _pending()
    if pending is None:
        return _pending_ended()
    recovery_code = request.form.get("recovery_code", "")
    use_recovery = bool(recovery_code.strip())
    method = "recovery_code" if use_recovery else "totp"
    actor = f"user:{pending.user_id}"
    mfa_key = throttle.mfa_key(pending.user_id)
    if not throttle.take_attempt(pending.attempts_key, PENDING_ATTEMPTS):
        audit.record("auth.mfa_verify", actor=actor, outcome="failure", changes={"method": method})
        return _pending_ended()
    # Reserved (counted as a failure) before the code is checked, in one conditional
    # UPDATE: of many racing code steps of the same user, only as many reach the check
    # as MFA_POLICY lets through. A throttled attempt's code is never looked at. After
    # take_attempt, so that a used-up pending sign-in does not count against the user.
    if not throttle.reserve(mfa_key, throttle.MFA_POLICY):
        audit.record(
            "auth.mfa_verify", actor=actor, outcome="throttled", changes={"method": method}
        )
        flash(CODE_THROTTLED, "error")
        return _code_page(recovery=use_recovery, status=429)
    user = db.session.get(User, pending.user_id)
    if user is None or not user.active or not user.mfa_enabled:
        return _pending_ended()

    if use_recovery:
        accepted = mfa.use_recovery_code(user, recovery_code)
    else:
        accepted = mfa.verify_totp(user, request.form.get("code", "")) == "accepted"
    _release_connection()
    if not accepted:  # already counted on mfa_key by the reservation
        audit.record("auth.mfa_verify", actor=actor, outcome="failure", changes={"method": method})
        _audit_lockout(mfa_key, throttle.MFA_POLICY, actor, user, step="mfa")
        flash(RECOVERY_CODE_FAILED if use_recovery else CODE_FAILED, "error")
        return _code_page(recovery=use_recovery, status=401)

    throttle.succeeded(mfa_key)
    throttle.close_attempts(pending.attempts_key, PENDING_ATTEMPTS)
    audit.record("auth.mfa_verify", actor=actor, changes={"method": method})
    replay_noticed = _take_replay_notice(user.id)
    user.last_login_at = utcnow()
    db.session.commit()
    return _complete_sign_in(user, pending.next, replay_noticed=replay_noticed)


def _take_replay_notice(user_id: int) -> datetime | None:
    """Read and clear the mark of a refused replay without losing one set meanwhile.

    A replay refused between the read and the clear leaves its mark in place (the
    conditional UPDATE matches nothing), so the user is told again next time.
    """
    with db.engine.begin() as connection:
        seen = connection.scalar(select(User.mfa_replay_at).where(User.id == user_id))
        if seen is not None:
            connection.execute(
                update(User)
                .where(User.id == user_id, User.mfa_replay_at == seen)
                .values(mfa_replay_at=None)
            )
    return seen


@bp.post("/logout")
@login_required
def logout():
    user_id = current_user.id
    end_current_session("sign_out")
    logout_user()
    session.clear()
    audit.record("auth.sign_out", actor=f"user:{user_id}")
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))
