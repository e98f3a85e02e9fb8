"""The audit trail: every security-relevant event is recorded through :func:`record`.

Entries live in the ``audit_entries`` table, hash-chained (``chain``), append-only
(triggers refuse updates and deletes), anchored by signed checkpoints outside the
database (``anchors``) and checked by ``bastion audit verify`` (``verify``).

An entry belongs to the transaction of the change it describes: it is written when
that transaction commits, and a record change that rolls back leaves no entry. Events
recorded through :func:`record` (sign-ins, refusals, administration) are kept even when
the surrounding transaction rolls back: they are written by the next commit of the
session or when the request ends. Callers never pass secrets or decrypted values.
Each written entry is also logged on the ``bastion.audit`` logger.
"""

from __future__ import annotations

import logging
from typing import Any

from bastion.audit.entries import current_actor, new_entry, request_context

log = logging.getLogger("bastion.audit")

__all__ = ["current_actor", "record"]


def record(
    action: str,
    *,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    changes: dict[str, Any] | None = None,
    outcome: str = "success",
) -> None:
    from bastion.audit import buffer

    entry = new_entry(
        action,
        context=request_context(actor),
        object_type=object_type,
        object_id=object_id,
        changes=changes,
        outcome=outcome,
    )
    buffer.record_event(entry)
