"""Sign-in and sign-out. The identity issue adds MFA and throttling."""

from __future__ import annotations

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

from bastion import audit
from bastion.access import login_required, public
from bastion.db import db
from bastion.identity import find_user_by_email
from bastion.models import utcnow
from bastion.sessions import end_current_session, start_session
from bastion.web.safety import is_safe_next

bp = Blueprint("auth", __name__)

# One message for unknown users, wrong passwords and disabled accounts: no enumeration.
SIGN_IN_FAILED = "The email or password is not correct."


@bp.get("/login")
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.dashboard"))
    return render_template("core/login.html", email="", next=request.args.get("next", ""))


@bp.post("/login")
@public
def login_submit():
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = request.form.get("next", "")
    passwords = current_app.extensions["bastion.passwords"]
    user = find_user_by_email(email) if email else None
    # Always verify (against a dummy hash for unknown users) so timing does not tell.
    valid = passwords.verify(user.password_hash if user else None, password)
    if not (valid and user is not None and user.active):
        audit.record(
            "auth.sign_in",
            actor=f"user:{user.id}" if user else "anonymous",
            outcome="failure",
        )
        flash(SIGN_IN_FAILED, "error")
        return render_template("core/login.html", email=email, next=target), 401

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    user.last_login_at = utcnow()
    db.session.commit()
    # Rotate: nothing from the anonymous session (including its CSRF token) survives.
    session.clear()
    start_session(user)
    login_user(user)
    session.permanent = True
    audit.record("auth.sign_in", actor=f"user:{user.id}")
    return redirect(target if is_safe_next(target) else url_for("home.dashboard"))


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
