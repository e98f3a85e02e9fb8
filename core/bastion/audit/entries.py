"""Building an audit entry: the event plus who, from where and in which request.

The request context (actor, API token, client address, request id) is read when the
event happens, not when its transaction commits, and once per batch for imports.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context, request

#: An entry before it is chained: the ``AuditEntry`` columns except seq and the hashes,
#: with ``changes`` still a dictionary (serialized when the entry is written).
Entry = dict[str, Any]

_USER_ACTOR = re.compile(r"user:(\d+)\Z")


def utc_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    # isoformat is several times faster than strftime; "+00:00" becomes "Z".
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def current_actor() -> str:
    """Who acts now, as audit entries name them ("user:3" or "system")."""
    if has_request_context():
        user = getattr(g, "_login_user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return f"user:{user.id}"
    return "system"


def request_context(actor: str | None = None) -> dict[str, Any]:
    """The columns that say who acted and from where, for entries made now."""
    actor = actor or current_actor()
    match = _USER_ACTOR.match(actor)
    user_id = int(match.group(1)) if match else None
    context: dict[str, Any] = {
        "actor": actor,
        "actor_user_id": user_id,
        "token_id": None,
        "client_addr": None,
        "request_id": None,
    }
    if has_request_context():
        context["client_addr"] = request.remote_addr
        context["request_id"] = g.get("request_id")
        token = g.get("api_token") if g.get("auth_method") == "token" else None
        if token is not None and getattr(token, "user_id", None) == user_id:
            context["token_id"] = token.id
    return context


def new_entry(
    action: str,
    *,
    context: dict[str, Any],
    object_type: str | None = None,
    object_id: str | int | None = None,
    changes: dict[str, Any] | None = None,
    outcome: str = "success",
) -> Entry:
    return {
        **context,
        "occurred_at": utc_timestamp(),
        "action": action,
        "outcome": outcome,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "changes": changes or None,
    }
