"""A record's history: who created, changed, merged it and when, field by field.

Anyone who may read the record may read its history, with the same field-level
security as the record itself: a change of a field the reader may not see is left out
entirely (a hidden field is an unknown field everywhere), and an update that changed
nothing they may see is not listed at all. Encrypted fields say only that they changed:
their values never reach the audit trail. Reads of a sensitive record (read audit) are
in the audit trail, not here: the History tab lists changes.

Served as the History tab of the detail page (``/o/<object>/<id>/history``, "Load more"
with htmx or plain links) and as ``GET /api/v1/<object>/<id>/history`` (cursor paging).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import render_template, request, url_for
from sqlalchemy import select

from bastion.access import login_required
from bastion.audit.models import AuditEntry
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery
from bastion.data.listeners import CAUSE_KEY
from bastion.data.records import Record, RecordService
from bastion.db import db
from bastion.web import read_audit
from bastion.web.audit_filters import MAX_SEQ
from bastion.web.audit_format import (
    ChangeView,
    actor_names,
    actor_text,
    field_change,
    is_field_change,
    parse_changes,
    parse_moment,
    plain_text,
)
from bastion.web.record_display import Display, format_datetime
from bastion.web.records_common import bp, object_for, records, wants_fragment

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
#: Entries read per query while looking for ones the reader may see.
SCAN_BATCH = 200
#: Entries looked at for one page at most (see ``history_page``).
MAX_SCANNED = 2_000
#: Reads are audited (sensitive objects) but are not changes: not part of the history.
READ_ACTIONS = ("record.view", "record.list")
VERBS = {
    "record.create": "Created",
    "record.update": "Changed",
    "record.delete": "Deleted",
    "record.merge": "Merged",
}


@dataclass
class HistoryItem:
    """One entry as this reader may see it."""

    seq: int
    occurred_at: str
    when: str
    action: str
    verb: str
    actor: str
    actor_user_id: int | None
    token_id: int | None
    actor_kind: str
    changes: list[ChangeView] = field(default_factory=list)
    #: (change, raw before, raw after) for the API: values as the API writes them.
    raw: list[tuple[ChangeView, Any, Any]] = field(default_factory=list)
    merged_ids: list[int] = field(default_factory=list)
    cause: dict[str, Any] | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        changes = []
        for change, before, after in self.raw:
            item: dict[str, Any] = {"field": change.field, "label": change.label}
            if change.encrypted:
                item["encrypted"] = True
            else:
                item["before"], item["after"] = before, after
            changes.append(item)
        return {
            "seq": self.seq,
            "occurred_at": self.occurred_at,
            "action": self.action,
            "actor": {
                "kind": self.actor_kind,
                "user_id": self.actor_user_id,
                "token_id": self.token_id,
                "name": self.actor,
            },
            "changes": changes,
            "merged_ids": self.merged_ids,
            "cause": self.cause,
        }


# --------------------------------------------------------------------------- values


def value_text(display: Display) -> Callable[[FieldMeta | None, Any], str]:
    """Formats a stored JSON value of a field for this reader: records they may not
    read are only numbered, times are in their time zone."""

    def text(item: FieldMeta | None, value: Any) -> str:
        if value is None or value == [] or value == "" or item is None:
            return plain_text(value)
        if item.type == "lookup" and item.target and isinstance(value, int):
            return display.name(item.target, value) or f"#{value}"
        if item.type == "many_to_many" and item.target and isinstance(value, list):
            target = item.target
            return ", ".join(
                (display.name(target, v) or f"#{v}") if isinstance(v, int) else str(v)
                for v in value
            )
        if isinstance(value, dict) and set(value) == {"object", "id"}:
            ident = value["id"]
            named = display.name(str(value["object"]), ident) if isinstance(ident, int) else ""
            return named or f"#{ident}"
        if item.value_type == "datetime" and isinstance(value, str):
            moment = parse_moment(value)
            if moment is not None:
                return format_datetime(moment, display.zone)
        return plain_text(value)

    return text


def _cause_note(service: RecordService, cause: dict[str, Any]) -> str:
    """ "Because Account #5 was deleted." for a change the core made."""
    meta = service.catalog.objects.get(str(cause.get("object", "")))
    ids = [i for i in cause.get("ids", []) if isinstance(i, int)]
    label = meta.label if meta is not None else "Record"
    if len(ids) != 1:
        label = meta.label_plural if meta is not None else "Records"
    numbers = ", ".join(f"#{i}" for i in ids)
    verb = "was" if len(ids) == 1 else "were"
    if cause.get("action") == "merge":
        return f"Because {label} {numbers} {verb} merged into #{cause.get('into')}."
    return f"Because {label} {numbers} {verb} deleted."


# --------------------------------------------------------------------------- entries


def _actor_kind(entry: AuditEntry) -> str:
    if entry.token_id is not None:
        return "token"
    return "user" if entry.actor_user_id is not None else "system"


def _visible(
    service: RecordService,
    meta: ObjectMeta,
    entry: AuditEntry,
    display: Display,
    names: dict[int, str],
) -> HistoryItem | None:
    """The entry as the reader may see it; None when nothing of it is theirs to see."""
    access = service.field_access(meta)
    text = value_text(display)
    data = parse_changes(entry.changes)
    moment = parse_moment(entry.occurred_at)
    item = HistoryItem(
        seq=entry.seq,
        occurred_at=entry.occurred_at,
        when=format_datetime(moment, display.zone) if moment else entry.occurred_at,
        action=entry.action,
        verb=VERBS.get(entry.action, entry.action),
        actor=actor_text(entry, names),
        actor_user_id=entry.actor_user_id,
        token_id=entry.token_id,
        actor_kind=_actor_kind(entry),
    )
    # In the order of the record's fields; a removed field is unknown like a hidden one.
    for name, found in meta.fields.items():
        value = data.get(name)
        if value is None or not is_field_change(value):
            continue
        if access.get(name, "hidden") == "hidden":
            continue  # a hidden field is unknown: not even that it changed
        change = field_change(name, value, found, text)
        item.changes.append(change)
        raw = value if isinstance(value, dict) else {}
        item.raw.append((change, raw.get("before"), raw.get("after")))
    merged = data.get("merged_ids")
    if isinstance(merged, list):
        item.merged_ids = [i for i in merged if isinstance(i, int)]
        numbers = ", ".join(f"#{i}" for i in item.merged_ids)
        item.note = f"Merged {numbers} into this {meta.label.lower()}."
    cause = data.get(CAUSE_KEY)
    if isinstance(cause, dict):
        item.cause = cause
        item.note = _cause_note(service, cause)
    if entry.action == "record.update" and not item.changes:
        return None  # only fields this reader may not see changed
    return item


def history_page(
    service: RecordService,
    meta: ObjectMeta,
    record: Record,
    *,
    cursor: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[HistoryItem], int | None]:
    """Up to ``limit`` entries the reader may see, newest first, and the next cursor.

    Entries the reader may not see are skipped; the cursor is the last entry looked
    at, so the next page continues right after it (keyset paging on ``seq``).
    """
    display = Display(service)
    statement = (
        select(AuditEntry)
        .where(
            AuditEntry.object_type == meta.name,
            AuditEntry.object_id == str(record.id),
            AuditEntry.action.like("record.%"),
            AuditEntry.action.notin_(READ_ACTIONS),
        )
        .order_by(AuditEntry.seq.desc())
    )
    shown: list[HistoryItem] = []
    position = cursor
    # A record whose updates touched only fields hidden from the reader must not make
    # one request walk its whole history: past MAX_SCANNED entries, the page ends
    # (short, perhaps empty) with a cursor to go on from.
    for _batch in range(MAX_SCANNED // SCAN_BATCH):
        query = statement if position is None else statement.where(AuditEntry.seq < position)
        rows = list(db.session.scalars(query.limit(SCAN_BATCH)))
        names = actor_names(rows)
        for row in rows:
            position = row.seq
            visible = _visible(service, meta, row, display, names)
            if visible is not None:
                shown.append(visible)
                if len(shown) == limit:
                    more = db.session.scalar(
                        statement.with_only_columns(AuditEntry.seq)
                        .where(AuditEntry.seq < position)
                        .limit(1)
                    )
                    return shown, (position if more is not None else None)
        if len(rows) < SCAN_BATCH:
            return shown, None
    return shown, position


def parse_page_params(args: Any) -> tuple[int | None, int]:
    """``cursor`` and ``limit`` of a history request; BadQuery names a bad one."""
    raw_cursor = (args.get("cursor") or "").strip()
    cursor = None
    if raw_cursor:
        plain = raw_cursor.isascii() and raw_cursor.isdigit() and len(raw_cursor) <= 19
        if not plain or int(raw_cursor) > MAX_SEQ:
            raise BadQuery("cursor must be the next value of the previous page.", field="cursor")
        cursor = int(raw_cursor)
    raw_limit = (args.get("limit") or "").strip()
    limit = PAGE_SIZE
    if raw_limit:
        plain = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3
        if not plain or not 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
            raise BadQuery(f"limit must be between 1 and {MAX_PAGE_SIZE}.", field="limit")
        limit = int(raw_limit)
    return cursor, limit


# --------------------------------------------------------------------------- page


@bp.get("/<object>/<int:record_id>/history")
@login_required
def history(object: str, record_id: int):
    """The History tab of a record (a page, or the next entries for "Load more")."""
    service = records()
    meta = object_for(object)
    record = service.get(meta.name, record_id)
    cursor, limit = parse_page_params(request.args)
    items, next_cursor = history_page(service, meta, record, cursor=cursor, limit=limit)
    read_audit.viewed(meta, record.id, via="history")
    next_url = None
    if next_cursor is not None:
        next_url = url_for(".history", object=meta.name, record_id=record.id, cursor=next_cursor)
    context = {
        "meta": meta,
        "record": record,
        "items": items,
        "next_url": next_url,
        "title": meta.record_name(record.values),
        "continued": cursor is not None,
    }
    if wants_fragment() and request.args.get("partial") == "items":
        return render_template("records/_history.html", **context)
    return render_template("records/history.html", **context)
