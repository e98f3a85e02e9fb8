"""The identity part of the REST API: who am I, my token, the users.

Answers are JSON; errors are RFC 9457 problem details. Who the caller is and whether a
cookie may be used was settled before the view runs (bastion.web.api_auth).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask_login import current_user
from sqlalchemy import func, select

from bastion import tokens
from bastion.access import login_required, requires, user_permissions
from bastion.db import db
from bastion.models import User
from bastion.web.errors import problem
from bastion.web.params import bounded_int

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: Fields a user may change on themselves with PATCH /api/v1/me.
PROFILE_FIELDS = ("name", "time_zone", "locale")
USERS_PAGE_DEFAULT = 100
USERS_PAGE_MAX = 500


def _actor() -> str:
    return f"user:{current_user.id}"


def _team(user: User) -> dict[str, Any] | None:
    return None if user.team is None else {"id": user.team.id, "name": user.team.name}


def _me(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "time_zone": user.time_zone,
        "locale": user.locale,
        "roles": sorted(role.name for role in user.roles),
        "team": _team(user),
        "permissions": sorted(user_permissions(user)),
        "mfa_enabled": user.mfa_enabled,
        "auth": g.get("auth_method", "session"),
    }


@bp.get("/me")
@login_required
def me():
    return jsonify(_me(current_user._get_current_object()))


@bp.patch("/me")
@login_required
def update_me():
    from bastion.accounts import AccountError, update_profile

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return problem(
            400,
            "Bad Request",
            "Send a JSON object with any of the fields name, time_zone and locale.",
        )
    unknown = sorted(set(body) - set(PROFILE_FIELDS))
    if unknown:
        return problem(
            422,
            "Unprocessable Content",
            f"These fields cannot be changed here: {', '.join(unknown)}. "
            "Send only name, time_zone or locale.",
        )
    not_text = [key for key, value in body.items() if not isinstance(value, str)]
    if not_text:
        return problem(
            422,
            "Unprocessable Content",
            f"These fields must be strings: {', '.join(sorted(not_text))}.",
        )
    user = current_user._get_current_object()
    values = {key: body.get(key, getattr(user, key)) for key in PROFILE_FIELDS}
    try:
        update_profile(user, actor=_actor(), **values)
    except AccountError as exc:
        return problem(422, "Unprocessable Content", str(exc))
    return jsonify(_me(user))


@bp.delete("/tokens/current")
@login_required
def revoke_current_token():
    token = g.get("api_token")
    if g.get("auth_method") != "token" or token is None:
        return problem(
            400,
            "Bad Request",
            "This request was not made with an API token, so there is none to revoke. "
            "Revoke tokens on your account's API tokens page.",
        )
    tokens.revoke(token, actor=_actor())
    return "", 204


@bp.get("/users")
@requires("admin.users")
def users():
    offset = bounded_int(request.args.get("offset", "0"))
    limit = bounded_int(
        request.args.get("limit", str(USERS_PAGE_DEFAULT)), minimum=1, maximum=USERS_PAGE_MAX
    )
    if offset is None or limit is None:
        return problem(
            400,
            "Bad Request",
            f"offset must be a whole number, and limit a number from 1 to {USERS_PAGE_MAX}.",
        )
    total = db.session.scalar(select(func.count()).select_from(User)) or 0
    rows = db.session.scalars(
        select(User).order_by(User.email, User.id).offset(offset).limit(limit)
    )
    items = [
        {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "active": user.active,
            "roles": sorted(role.name for role in user.roles),
            "team": _team(user),
        }
        for user in rows
    ]
    return jsonify({"items": items, "total": total, "offset": int(offset), "limit": int(limit)})
