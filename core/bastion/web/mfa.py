"""The user's own MFA pages: enrolment, status, recovery codes, turning MFA off.

Enrolment keeps the not-yet-confirmed secret in the cookie session, encrypted with the
credentials key and bound to the user (context ``mfa.pending:<id>``): the cookie is only
signed, and a secret must never sit in it readable. MFA is on only once a code from the
new secret was entered. Recovery codes are rendered in the response that creates them
and never again (no GET shows them).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from bastion import audit, mfa
from bastion.access import login_required
from bastion.db import db
from bastion.encryption import DecryptionError
from bastion.mfa_policy import mfa_required
from bastion.models import User
from bastion.reauth import recent_auth_required

bp = Blueprint("mfa", __name__, url_prefix="/account/mfa")

PENDING_SECRET_FIELD = "_bastion_mfa_enrol"  # noqa: S105  (a key name, not a secret)
ENROL_CODE_FAILED = (
    "That code does not match. Check that your phone's clock is right, then enter the "
    "code your authenticator app shows now for Bastion."
)
RESTART_ENROLMENT = "Your setup expired. Scan the new QR code and enter the code again."


def _pending_context(user_id: int) -> str:
    return f"mfa.pending:{user_id}"


def _pending_secret(user: User) -> str | None:
    token = session.get(PENDING_SECRET_FIELD)
    if not isinstance(token, str):
        return None
    try:
        return mfa.cipher().decrypt(token, context=_pending_context(user.id))
    except DecryptionError:
        return None


def _enrol_page(user: User, secret: str, *, status: int = 200):
    uri = mfa.provisioning_uri(user, secret)
    return (
        render_template(
            "account/mfa_enrol.html",
            secret=secret,
            qr=mfa.qr_svg(uri),
            required=mfa_required(user),
        ),
        status,
    )


@bp.get("")
@login_required
def enrol():
    user: User = current_user  # type: ignore[assignment]
    if user.mfa_enabled:
        return render_template(
            "account/mfa.html",
            remaining=mfa.remaining_recovery_codes(user),
            can_disable=not mfa_required(user),
        )
    secret = _pending_secret(user)
    if secret is None:
        # Only the user's own cookie changes: the same QR code until it is confirmed.
        secret = mfa.new_secret()
        session[PENDING_SECRET_FIELD] = mfa.cipher().encrypt(
            secret, context=_pending_context(user.id)
        )
    return _enrol_page(user, secret)


@bp.post("/confirm")
@login_required
def confirm():
    user: User = current_user  # type: ignore[assignment]
    if user.mfa_enabled:
        flash("Two-step sign-in is already on for your account.", "info")
        return redirect(url_for("mfa.enrol"))
    secret = _pending_secret(user)
    if secret is None:
        flash(RESTART_ENROLMENT, "error")
        return redirect(url_for("mfa.enrol"))
    step = mfa.matching_step(secret, request.form.get("code", ""))
    if step is None:
        audit.record("mfa.enrol", actor=f"user:{user.id}", outcome="failure")
        flash(ENROL_CODE_FAILED, "error")
        return _enrol_page(user, secret, status=422)
    codes = mfa.enable_mfa(user, secret, step)
    session.pop(PENDING_SECRET_FIELD, None)
    flash("Two-step sign-in is on. Save your recovery codes now.", "success")
    return render_template("account/mfa_codes.html", codes=codes)


@bp.post("/recovery-codes")
@login_required
@recent_auth_required
def regenerate():
    user: User = current_user  # type: ignore[assignment]
    if not user.mfa_enabled:
        flash("Set up two-step sign-in first; recovery codes come with it.", "error")
        return redirect(url_for("mfa.enrol"))
    codes = mfa.generate_recovery_codes(user)
    audit.record(
        "mfa.recovery_codes_regenerated",
        actor=f"user:{user.id}",
        object_type="user",
        object_id=user.id,
    )
    db.session.commit()
    flash("New recovery codes are ready; the old ones no longer work.", "success")
    return render_template("account/mfa_codes.html", codes=codes)


@bp.post("/disable")
@login_required
@recent_auth_required
def disable():
    user: User = current_user  # type: ignore[assignment]
    if not user.mfa_enabled:
        return redirect(url_for("mfa.enrol"))
    if mfa_required(user):
        audit.record(
            "mfa.disable",
            actor=f"user:{user.id}",
            object_type="user",
            object_id=user.id,
            outcome="failure",
        )
        flash(
            "Two-step sign-in is required for your account, so it cannot be turned off. "
            "Ask an administrator if you lost your phone.",
            "error",
        )
        return redirect(url_for("mfa.enrol"))
    mfa.disable_mfa(user, actor=f"user:{user.id}")
    flash("Two-step sign-in is off. Your other sessions were signed out.", "success")
    return redirect(url_for("mfa.enrol"))
