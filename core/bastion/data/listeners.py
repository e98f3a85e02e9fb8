"""The core's record-event listeners: the audit entry and the search-index job.

Both belong to the record's transaction: the outbox row is written in it, and the
audit entry is written when it commits (``audit_buffer``), so a rolled-back change
leaves neither behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Flask
from sqlalchemy import insert

from bastion import audit
from bastion.data.audit_buffer import record_on_commit
from bastion.data.catalog import current_catalog
from bastion.data.events import RecordChange, subscribe
from bastion.data.models import SearchOutbox
from bastion.data.values import to_json
from bastion.db import db

ENCRYPTED_MARK = "(encrypted value changed)"


def audit_change(change: RecordChange) -> None:
    """One audit entry per change, with before/after per field; never encrypted values."""
    meta = current_catalog().objects.get(change.object)
    diff: dict[str, Any] = {}
    if meta is not None and change.action != "merge":
        for name in change.changed:
            item = meta.fields.get(name)
            if item is None or item.type == "formula" or (item.standard and name != "owner"):
                continue
            if item.encrypted:
                diff[name] = ENCRYPTED_MARK
                continue
            before = None if change.before is None else to_json(item, change.before.get(name))
            after = None if change.after is None else to_json(item, change.after.get(name))
            diff[name] = {"before": before, "after": after}
    elif change.action == "merge":
        diff["merged_ids"] = list(change.merged_ids)
    record_on_commit(
        db.session(),
        f"record.{change.action}",
        actor=audit.current_actor(),
        object_type=change.object,
        object_id=change.record_id,
        changes=diff or None,
    )


def queue_search_update(change: RecordChange) -> None:
    """Write the index job in the record's transaction: committed together, or not at all."""
    queue_search_updates([change])


def queue_search_updates(changes: Sequence[RecordChange]) -> None:
    """The same for a batch of changes (imports): one multi-row INSERT, not one per record."""
    rows = []
    catalog = current_catalog()
    for change in changes:
        meta = catalog.objects.get(change.object)
        if meta is None or not any(item.searchable for item in meta.fields.values()):
            continue
        action = "delete" if change.action == "delete" else "index"
        rows.append({"object_name": change.object, "record_id": change.record_id, "action": action})
        for merged in change.merged_ids:
            rows.append({"object_name": change.object, "record_id": merged, "action": "delete"})
    if rows:
        db.session.execute(insert(SearchOutbox), rows)


# RecordService.create_many hands a batch to a listener's ``many`` when it has one.
queue_search_update.many = queue_search_updates  # type: ignore[attr-defined]


def init_record_listeners(app: Flask) -> None:
    subscribe(app, audit_change)
    subscribe(app, queue_search_update)
