"""Record events: what changed, handed to the core's listeners and to plugins' hooks.

``record_changing`` runs before a write and may refuse it with field messages or adjust
the values about to be written; ``record_changed`` runs after the write, inside the
same transaction, so an audit entry, a search-index job or a plugin's own records
commit or roll back together with the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

LISTENERS_KEY = "bastion.record_listeners"


@dataclass(frozen=True)
class Cause:
    """Why the core changed a record nobody edited: records it referred to went.

    A delete clears (or a merge re-points) the lookups and links of other records that
    point at the records going; each such record gets its own change with this cause.
    """

    #: "delete" or "merge"
    action: str
    #: The object of the records deleted or merged away, and their ids.
    object: str
    ids: tuple[int, ...]
    #: For a merge: the record the references now point at.
    into: int | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "action": self.action,
            "object": self.object,
            "ids": list(self.ids),
        }
        if self.into is not None:
            found["into"] = self.into
        return found


@dataclass
class RecordChange:
    """One create, update, delete or merge of a record."""

    object: str
    #: "create", "update", "delete" or "merge"
    action: str
    record_id: int | None
    #: The acting user (None for the system).
    actor: Any
    #: Typed values before the change (None on create), after it (None on delete).
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    #: Field names whose value changed.
    changed: tuple[str, ...] = ()
    #: Before the write: the values about to be written; a hook may adjust them.
    values: dict[str, Any] = field(default_factory=dict)
    #: For a merge: ids of the records merged into ``record_id``.
    merged_ids: tuple[int, ...] = ()
    #: Set on an update the core made because records this one referred to went; its
    #: ``before`` and ``after`` then hold only the fields that changed.
    cause: Cause | None = None


Listener = Callable[[RecordChange], None]


def subscribe(app: Flask, listener: Listener) -> None:
    """Register a core listener called after every record change (in its transaction)."""
    app.extensions.setdefault(LISTENERS_KEY, []).append(listener)


def core_listeners() -> list[Listener]:
    return list(current_app.extensions.get(LISTENERS_KEY, []))
