"""Personal access tokens: create (shown once), list, revoke.

Creating a token hands out a credential that outlives the session, so it needs a recent
re-authentication. The raw token appears in exactly one response (never cached, never
logged); afterwards only its prefix is shown.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from bastion import tokens
from bastion.access import login_required
from bastion.reauth import recent_auth_required
from bastion.runtime import platform
from bastion.web.admin_users import local_time
from bastion.web.params import bounded_int

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "local_time": local_time,
        "token_status": tokens.status,
        "token_scope_list": _scope_list,
    }


def _scope_list(token: Any) -> list[str] | None:
    scopes = tokens.token_scopes(token)
    return None if scopes is None else sorted(scopes)


def _scope_choices(user: Any) -> list[tuple[str, str]]:
    """(scope, label) for every scope the user may put on a token."""
    defined = platform().permissions
    choices = []
    for scope in tokens.grantable_scopes(user):
        entry = defined.get(scope)
        label = entry[1].label if entry else scope.replace(":", ": ")
        choices.append((scope, label))
    return choices


def _page(status: int = 200, *, new_token: str | None = None, error: str | None = None, **form):
    user = current_user._get_current_object()
    choices = _scope_choices(user)
    response = render_template(
        "account/tokens.html",
        tokens=tokens.list_tokens(user),
        choices=choices,
        new_token=new_token,
        error=error,
        form={
            "name": "",
            "expires_days": str(tokens.DEFAULT_EXPIRES_DAYS),
            "no_expiry": False,
            "scopes": {scope for scope, _ in choices},
            **form,
        },
        expires_max=tokens.EXPIRES_DAYS_MAX,
    )
    headers = {"Cache-Control": "no-store"}  # the new token must not stay in any cache
    return response, status, headers


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("")
@login_required
@recent_auth_required
def create():
    user = current_user._get_current_object()
    name = request.form.get("name", "")
    raw_days = request.form.get("expires_days", "").strip()
    no_expiry = request.form.get("no_expiry") == "yes"
    scopes = request.form.getlist("scopes")
    form = {"name": name, "expires_days": raw_days, "no_expiry": no_expiry, "scopes": set(scopes)}
    expires_days: int | None = None
    if not no_expiry:
        # Only the form is checked here; create_token says which range is allowed.
        expires_days = bounded_int(raw_days, maximum=10**9)
        if expires_days is None:
            return _page(
                422,
                error=f"Enter the number of days the token stays valid (1 to "
                f"{tokens.EXPIRES_DAYS_MAX}), or tick “No expiry”.",
                **form,
            )
    try:
        token, raw = tokens.create_token(user, name, expires_days=expires_days, scopes=scopes)
    except tokens.TokenError as exc:
        return _page(422, error=str(exc), **form)
    flash(
        f"The token {token.name} was created. Copy it now: it will not be shown again.",
        "success",
    )
    return _page(201, new_token=raw)


@bp.post("/<int:token_id>/revoke")
@login_required
def revoke(token_id: int):
    user = current_user._get_current_object()
    token = tokens.find_user_token(user, token_id)
    if token is None:
        abort(404)
    if tokens.revoke(token, actor=f"user:{user.id}"):
        flash(f"The token {token.name} was revoked: it no longer works.", "success")
    else:
        flash(f"The token {token.name} was already revoked.", "info")
    return redirect(url_for("tokens.index"))
