"""The audit seam: every security-relevant event is recorded through :func:`record`.

Until the tamper-evident audit trail lands, entries are structured log lines on the
``bastion.audit`` logger. Callers never pass secrets or decrypted values.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, has_request_context, request

log = logging.getLogger("bastion.audit")


def record(
    action: str,
    *,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    changes: dict[str, Any] | None = None,
    outcome: str = "success",
) -> None:
    entry: dict[str, Any] = {
        "audit": True,
        "action": action,
        "actor": actor or _current_actor(),
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "outcome": outcome,
    }
    if changes:
        entry["changes"] = changes
    if has_request_context():
        entry["client_addr"] = request.remote_addr
    log.info("audit %s", action, extra=entry)


def current_actor() -> str:
    """Who acts now, as audit entries name them ("user:3" or "system")."""
    return _current_actor()


def _current_actor() -> str:
    if has_request_context():
        user = getattr(g, "_login_user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return f"user:{user.id}"
    return "system"
