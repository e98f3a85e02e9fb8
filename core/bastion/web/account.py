"""A user's own profile: name, time zone, locale; and the way to password, MFA and tokens."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from bastion import accounts
from bastion.access import login_required
from bastion.accounts import AccountError

bp = Blueprint("account", __name__, url_prefix="/account")


def _render(form: dict[str, str], status: int = 200):
    return render_template(
        "account/profile.html",
        form=form,
        time_zones=accounts.time_zones(),
        locales=accounts.SUPPORTED_LOCALES,
    ), status


@bp.get("")
@login_required
def profile():
    user = current_user
    return _render({"name": user.name, "time_zone": user.time_zone, "locale": user.locale})


@bp.post("")
@login_required
def profile_submit():
    form = request.form
    try:
        accounts.update_profile(
            current_user._get_current_object(),
            name=form.get("name", ""),
            time_zone=form.get("time_zone", ""),
            locale=form.get("locale", ""),
            actor=f"user:{current_user.id}",
        )
    except AccountError as exc:
        flash(str(exc), "error")
        return _render({k: form.get(k, "") for k in ("name", "time_zone", "locale")}, status=422)
    flash("Your profile is saved.", "success")
    return redirect(url_for("account.profile"))
