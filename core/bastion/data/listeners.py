"""The core's record-event listeners: the audit entry and the search-index job.

Both belong to the record's transaction: the outbox row is written in it, and the
audit entry is written when it commits (``bastion.audit.buffer``), so a rolled-back change
leaves neither behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Flask
from sqlalchemy import insert

from bastion.audit.buffer import record_on_commit
from bastion.audit.entries import new_entry, request_context
from bastion.data.catalog import ObjectMeta, current_catalog
from bastion.data.events import Cause, RecordChange, subscribe
from bastion.data.models import SearchOutbox
from bastion.data.values import to_json
from bastion.db import db

ENCRYPTED_MARK = "(encrypted value changed)"
#: In an audit entry's changes: why the core changed the record (see ``events.Cause``).
CAUSE_KEY = "_cause"


def audit_change(change: RecordChange) -> None:
    """One audit entry per change, with before/after per field; never encrypted values.

    An update the core made because referenced records went says so under ``_cause``.
    """
    audit_changes([change])


def audit_changes(changes: Sequence[RecordChange]) -> None:
    """The same for a batch (imports): the catalog and the actor are looked up once."""
    catalog = current_catalog()
    contexts: dict[int | None, dict[str, Any]] = {}

    def context_of(change: RecordChange) -> dict[str, Any]:
        # The service's acting user, who may differ from the request's (the system, or
        # a command's user outside any request).
        user_id = getattr(change.actor, "id", None)
        if user_id not in contexts:
            contexts[user_id] = request_context("system" if user_id is None else f"user:{user_id}")
        return contexts[user_id]

    entries = []
    for change in changes:
        meta = catalog.objects.get(change.object)
        entries.append(
            new_entry(
                f"record.{change.action}",
                context=context_of(change),
                object_type=change.object,
                object_id=change.record_id,
                changes=_audit_diff(meta, change) or None,
            )
        )
        if change.action == "merge" and meta is not None:
            entries.extend(
                new_entry(
                    "record.delete",
                    context=context_of(change),
                    object_type=change.object,
                    object_id=loser,
                    changes=values,
                )
                for loser, values in _merged_away(meta, change)
            )
    record_on_commit(db.session(), entries)


def _merged_away(meta: ObjectMeta, change: RecordChange) -> list[tuple[int, dict[str, Any]]]:
    """A delete entry's changes for each record a merge removed: what it held (encrypted
    values only marked), and the merge as its cause, so the record's own trail ends."""
    held = (change.before or {}).get("merged", {})
    cause = Cause("merge", change.object, change.merged_ids, change.record_id).as_json()
    found = []
    for loser in change.merged_ids:
        diff: dict[str, Any] = {}
        for name, value in (held.get(str(loser)) or {}).items():
            item = meta.all_fields.get(name)
            if value is None or item is None or item.type == "formula":
                continue
            if item.standard and name != "owner":
                continue
            diff[name] = ENCRYPTED_MARK if item.encrypted else {"before": value, "after": None}
        diff[CAUSE_KEY] = cause
        found.append((loser, diff))
    return found


def _audit_diff(meta: ObjectMeta | None, change: RecordChange) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    if change.action == "merge":
        diff["merged_ids"] = list(change.merged_ids)
    elif meta is not None:
        for name in change.changed:
            # A removed field keeps its data, and a delete elsewhere can still clear it.
            item = meta.all_fields.get(name)
            if item is None or item.type == "formula" or (item.standard and name != "owner"):
                continue
            if item.encrypted:
                diff[name] = ENCRYPTED_MARK
                continue
            before = None if change.before is None else to_json(item, change.before.get(name))
            after = None if change.after is None else to_json(item, change.after.get(name))
            diff[name] = {"before": before, "after": after}
    if change.cause is not None:
        # "_" cannot begin a field name: the key never shadows a field's diff.
        diff[CAUSE_KEY] = change.cause.as_json()
    return diff


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
audit_change.many = audit_changes  # type: ignore[attr-defined]


def init_record_listeners(app: Flask) -> None:
    subscribe(app, audit_change)
    subscribe(app, queue_search_update)
