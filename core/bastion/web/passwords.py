"""Changing one's own password, and reset or invitation links by email.

- ``/account/password``: a signed-in user changes their password (the account gate
  sends a user whose administrator forced a reset here, and nowhere else).
- ``/password/forgot``: asks for a reset link by email. The answer is the same whether
  or not an account exists; everything about the account (lookup, limits, the link, the
  mail) happens in the background so that the time taken does not tell either. Mails
  are limited per client address and per account.
- ``/password/reset/<token>``: sets a password with a link (resets and invitations).
  It never signs anyone in, so MFA is still asked at the next sign-in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, logout_user
from sqlalchemy import case, literal, or_, update

from bastion import audit, throttle
from bastion.access import login_required, public
from bastion.config import Settings
from bastion.credentials import change_password
from bastion.db import db
from bastion.identity import find_user_by_email
from bastion.mail import MailError, send_mail
from bastion.models import AuthThrottle, User
from bastion.password_tokens import (
    RESET_PATH,
    TokenError,
    ValidToken,
    check,
    consume,
    issue,
    link,
    recent_count,
    reset_message,
)
from bastion.passwords import PasswordPolicyError
from bastion.runtime import platform
from bastion.sessions import end_current_session, mark_authenticated

bp = Blueprint("password", __name__)
log = logging.getLogger("bastion.passwords")

RESET_MAILS_PER_ADDRESS_PER_HOUR = 5
RESET_MAILS_PER_ACCOUNT_PER_HOUR = 3
WINDOW_SECONDS = 3600
#: Wrong current passwords on the change form before the session is ended: a stolen
#: session must not become a way to guess the password.
CHANGE_FAILURES_BEFORE_SIGN_OUT = 5
_CHANGE_FAILURES = "_bastion_pw_change_failures"
CHANGE_THROTTLED = "Too many wrong passwords. Wait a minute, then try again."
FORGOT_ANSWER = (
    "If an account exists for that address, we have sent a link to it to choose a new "
    "password. It works once, for {minutes} minutes. Check your spam folder if it does not "
    "arrive."
)
PASSWORD_SET = "Your password is set. Sign in with it."  # noqa: S105  (a message)


@bp.url_value_preprocessor
def _keep_tokens_out_of_logs(endpoint: str | None, values: dict | None) -> None:
    # The access log records the path; a link's token must not end up in it.
    if values and "token" in values:
        g.log_path = f"{RESET_PATH}[token]"


@bp.app_context_processor
def _mail_flag() -> dict[str, bool]:
    # The sign-in page offers "Forgot your password?" only when a link can be mailed.
    return {"mail_enabled": platform().settings.mail_enabled}


@bp.after_request
def _no_caching_or_referrer(response):
    # Forms for passwords and pages reached by a secret link: keep them out of caches
    # and never send their address (with the token) along as a Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _passwords():
    return current_app.extensions["bastion.passwords"]


def _settings() -> Settings:
    return platform().settings


# --- Changing one's own password ---------------------------------------------------------


def _change_page(error: str | None = None, status: int = 200):
    return (
        render_template(
            "password/change.html",
            forced=current_user.must_change_password,
            min_length=_settings().password_min_length,
            error=error,
        ),
        status,
    )


@bp.get("/account/password")
@login_required
def change():
    return _change_page()


@bp.post("/account/password")
@login_required
def change_submit():
    user: User = current_user._get_current_object()
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    confirm = request.form.get("new_password_confirm", "")
    actor = f"user:{user.id}"
    # The limit that holds is the server-side one, shared with the sign-in and re-auth
    # pages: each attempt is reserved on the account's key before the password is
    # checked (the count in the cookie below could be reset by replaying an old cookie).
    account_key = throttle.account_key(user.email)
    password_hash = user.password_hash
    # Hand the pooled connection back: the throttle commits on connections of its own.
    db.session.commit()
    if not throttle.reserve(account_key, throttle.ACCOUNT_POLICY):
        audit.record(
            "auth.password_change",
            actor=actor,
            object_type="user",
            object_id=user.id,
            outcome="throttled",
        )
        return _change_page(CHANGE_THROTTLED, 429)
    if not _passwords().verify(password_hash, current):
        audit.record(
            "auth.password_change",
            actor=actor,
            object_type="user",
            object_id=user.id,
            outcome="failure",
        )
        failures = int(session.get(_CHANGE_FAILURES, 0)) + 1
        session[_CHANGE_FAILURES] = failures
        if failures >= CHANGE_FAILURES_BEFORE_SIGN_OUT:
            end_current_session("password_guessing")
            logout_user()
            session.clear()
            audit.record("auth.sign_out", actor=actor, changes={"reason": "password_guessing"})
            flash(
                "You were signed out after several wrong passwords. Sign in again to "
                "change your password.",
                "error",
            )
            return redirect(url_for("auth.login"))
        return _change_page("Your current password is not correct. Type it again.", 422)
    throttle.succeeded(account_key)
    session.pop(_CHANGE_FAILURES, None)
    if new != confirm:
        return _change_page(
            "The two new passwords are not the same. Type the new password twice.", 422
        )
    if new == current:
        return _change_page(
            "The new password is the same as the current one. Choose a different one.", 422
        )
    try:
        change_password(user, new, actor=actor)
    except PasswordPolicyError as exc:
        db.session.rollback()
        return _change_page(str(exc), 422)
    # Typing the current password proved who they are: counts as a re-authentication.
    mark_authenticated()
    flash(
        "Your password has been changed. Your other sessions, if any, have been signed out.",
        "success",
    )
    return redirect("/")


# --- Asking for a reset link -------------------------------------------------------------


@bp.get("/password/forgot")
@public
def forgot():
    return _forgot_page()


def _forgot_page():
    return render_template("password/forgot.html")


@bp.post("/password/forgot")
@public
def forgot_submit():
    settings = _settings()
    if not settings.mail_enabled:
        return _forgot_page()
    email = request.form.get("email", "").strip()[:320]
    # Everything that depends on the account (looking it up, counting, issuing a link,
    # mailing it) happens in the background, so that known, unknown and disabled
    # addresses all cost the request the same work: starting one thread.
    _in_background(
        current_app._get_current_object(),
        _handle_reset_request,
        settings,
        email,
        request.remote_addr or "unknown",
    )
    # The same answer, whatever happens: no way to learn who has an account.
    flash(FORGOT_ANSWER.format(minutes=settings.password_reset_minutes), "info")
    return redirect(url_for("password.forgot"), code=303)


#: Serializes "count the recent links, then issue one" within this process, so that
#: requests whose background jobs overlap cannot issue more links than allowed.
_issue_lock = threading.Lock()
_jobs: set[threading.Thread] = set()


def _handle_reset_request(settings: Settings, email: str, addr: str) -> None:
    """The per-account part of /password/forgot (runs in an app context, no request)."""
    user = find_user_by_email(email) if "@" in email else None
    outcome, message = "unknown_account", None
    if user is not None and user.active:
        with _issue_lock:
            outcome = "throttled"
            if _allowed_to_send(user, addr):
                outcome = "sent"
                message = reset_message(user, link(issue(user, "reset")))
    audit.record(
        "auth.password_reset_requested",
        actor="anonymous",
        object_type="user" if user else None,
        object_id=user.id if user else None,
        changes={"client_addr": addr},
        outcome="success" if outcome == "sent" else outcome,
    )
    if user is not None and message is not None:
        try:
            send_mail(user.email, *message, settings=settings)
        except MailError as exc:
            log.error("A password reset link could not be emailed: %s", exc)


def _allowed_to_send(user: User, addr: str) -> bool:
    """At most a few reset mails per account and per client address each hour.

    Over the limit nothing is sent and nothing is said: the answer stays the same.
    """
    if recent_count(user, "reset", WINDOW_SECONDS) >= RESET_MAILS_PER_ACCOUNT_PER_HOUR:
        return False
    return _count_address(addr)


def _count_address(addr: str) -> bool:
    """One more reset mail for this client address, if its hourly allowance has room.

    The row's ``failures`` counts mails in the window that started at ``last_attempt``.
    One conditional UPDATE takes a place, so racing requests cannot overshoot.
    """
    key = f"reset:{addr}"[:100]
    now = int(time.time())
    new_window = literal(now) - AuthThrottle.last_attempt >= WINDOW_SECONDS
    throttle.open_attempts(key)  # creates the row once, even when requests race
    with db.engine.begin() as connection:
        result = connection.execute(
            update(AuthThrottle)
            .where(
                AuthThrottle.key == key,
                or_(AuthThrottle.failures < RESET_MAILS_PER_ADDRESS_PER_HOUR, new_window),
            )
            .values(
                failures=case((new_window, 1), else_=AuthThrottle.failures + 1),
                last_attempt=case((new_window, now), else_=AuthThrottle.last_attempt),
            )
        )
    return result.rowcount == 1


def _in_background(app: Flask, job: Callable[..., None], *args: object) -> None:
    """Run ``job(*args)`` in a thread with an app context; failures are logged, not raised."""

    def run() -> None:
        try:
            with app.app_context():
                job(*args)
        except Exception:
            log.exception("Handling a password reset request failed unexpectedly.")
        finally:
            _jobs.discard(threading.current_thread())

    thread = threading.Thread(target=run, name="bastion-reset-mail", daemon=True)
    _jobs.add(thread)
    thread.start()


def wait_for_background_jobs(timeout: float = 10.0) -> None:
    """Wait for the reset requests still being handled (tests, before tearing down)."""
    for thread in list(_jobs):
        thread.join(timeout)


# --- Setting a password with a link ------------------------------------------------------


def _invalid_link(message: str):
    return (
        render_template("password/invalid.html", message=message),
        410,
    )


def _reset_page(valid: ValidToken, token: str, error: str | None = None, status: int = 200):
    invite = valid.purpose == "invite"
    return (
        render_template(
            "password/reset.html",
            purpose=valid.purpose,
            title="Choose your password" if invite else "Choose a new password",
            email=valid.user.email,
            token=token,
            min_length=_settings().password_min_length,
            error=error,
        ),
        status,
    )


@bp.get("/password/reset/<token>")
@public
def reset(token: str):
    try:
        valid = check(token)
    except TokenError as exc:
        return _invalid_link(str(exc))
    return _reset_page(valid, token)


@bp.post("/password/reset/<token>")
@public
def reset_submit(token: str):
    try:
        valid = check(token)
    except TokenError as exc:
        return _invalid_link(str(exc))
    new = request.form.get("new_password", "")
    if new != request.form.get("new_password_confirm", ""):
        return _reset_page(
            valid,
            token,
            "The two passwords are not the same. Type the new password twice.",
            422,
        )
    try:
        user = consume(token, new)
    except PasswordPolicyError as exc:
        db.session.rollback()
        return _reset_page(valid, token, str(exc), 422)
    except TokenError as exc:
        return _invalid_link(str(exc))
    if current_user.is_authenticated and current_user.id == user.id:
        # Their sessions all ended; this browser's too.
        logout_user()
        session.clear()
    flash(PASSWORD_SET, "success")
    return redirect(url_for("auth.login"))
