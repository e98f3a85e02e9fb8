"""Audit entries as people read them: who, when, what, and each change as before → after.

Shared by the audit page (everything, for holders of ``audit.view``) and the History
tab of a record (filtered by field-level security in :mod:`bastion.web.record_history`).
Stored ``changes`` are canonical JSON; a field's change is ``{"before": x, "after": y}``,
an encrypted field's is only the mark that it changed, which is shown as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import url_for
from werkzeug.routing import BuildError

from bastion.access import can
from bastion.audit.models import AuditEntry
from bastion.data.catalog import FieldMeta, ObjectMeta, current_catalog
from bastion.data.listeners import CAUSE_KEY, ENCRYPTED_MARK
from bastion.web.record_display import user_names

EMPTY_TEXT = "—"
#: Longest value shown in full; a longer one is cut (the export holds it whole).
MAX_VALUE_CHARS = 500
OUTCOME_BADGES = {"success": "badge--ok", "failure": "badge--danger", "refused": "badge--danger"}

ValueText = Callable[[FieldMeta | None, Any], str]


@dataclass
class ChangeView:
    """One field's change: labelled, with values as text (none for an encrypted field)."""

    field: str
    label: str
    before: str = ""
    after: str = ""
    encrypted: bool = False


@dataclass
class EntryView:
    seq: int
    occurred_at: str
    when: str
    actor: str
    action: str
    outcome: str
    object_type: str | None
    object_id: str | None
    object_url: str | None = None
    actor_user_id: int | None = None
    client_addr: str | None = None
    request_id: str | None = None
    changes: list[ChangeView] = field(default_factory=list)
    #: Other members of ``changes`` (reasons, counts, filters...), as (key, text).
    details: list[tuple[str, str]] = field(default_factory=list)

    @property
    def outcome_badge(self) -> str:
        return OUTCOME_BADGES.get(self.outcome, "badge--warn")


def parse_changes(text: str | None) -> dict[str, Any]:
    """The stored changes as a dictionary (a non-object is kept under "value")."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {"value": text}
    return data if isinstance(data, dict) else {"value": data}


def parse_moment(occurred_at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def utc_text(occurred_at: str) -> str:
    """ "2026-12-05 03:40:01 UTC" for a stored time (the page filters in UTC too)."""
    moment = parse_moment(occurred_at)
    if moment is None:
        return occurred_at
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plain_text(value: Any) -> str:
    """A JSON value as a short text: empty as a dash, booleans as Yes / No."""
    if value is None or value == [] or value == "":
        return EMPTY_TEXT
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and set(value) == {"amount", "currency"}:
        text = f"{value['amount']} {value['currency']}"
    elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        text = ", ".join(plain_text(v) for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def is_field_change(value: Any) -> bool:
    return value == ENCRYPTED_MARK or (
        isinstance(value, dict) and set(value) == {"before", "after"}
    )


def field_change(name: str, value: Any, item: FieldMeta | None, text: ValueText) -> ChangeView:
    """One field's change; encrypted now or then, it says only that it changed."""
    label = item.label if item is not None else name
    if value == ENCRYPTED_MARK or (item is not None and item.encrypted):
        return ChangeView(name, label, encrypted=True)
    return ChangeView(name, label, text(item, value["before"]), text(item, value["after"]))


def actor_names(entries: Iterable[AuditEntry]) -> dict[int, str]:
    """Display names of the users acting in ``entries``, in one query."""
    return user_names(e.actor_user_id for e in entries if e.actor_user_id is not None)


def actor_text(entry: AuditEntry, names: dict[int, str]) -> str:
    """ "Ada Lovelace", "Ada Lovelace (API token #4)", "System", "Anonymous"."""
    if entry.actor_user_id is not None:
        who = names.get(entry.actor_user_id) or f"User #{entry.actor_user_id}"
    elif entry.actor in {"system", "anonymous"}:
        who = entry.actor.capitalize()
    else:
        who = entry.actor
    if entry.token_id is not None:
        who = f"{who} (API token #{entry.token_id})"
    return who


def object_url(object_type: str | None, object_id: str | None, action: str) -> str | None:
    """A link to what the entry is about, where there is a page for it."""
    if not object_type or not object_id or not object_id.isdigit() or action.endswith(".delete"):
        return None
    try:
        if object_type in current_catalog().objects:
            return url_for("records.detail", object=object_type, record_id=int(object_id))
        if object_type == "user" and can("admin.users"):
            return url_for("admin_users.user", user_id=int(object_id))
    except BuildError:
        return None
    return None


def _plain(_item: FieldMeta | None, value: Any) -> str:
    return plain_text(value)


def entry_view(entry: AuditEntry, names: dict[int, str], *, when: str | None = None) -> EntryView:
    """An entry with every change it holds (the audit page: no field is left out)."""
    meta: ObjectMeta | None = current_catalog().objects.get(entry.object_type or "")
    view = EntryView(
        seq=entry.seq,
        occurred_at=entry.occurred_at,
        when=when or utc_text(entry.occurred_at),
        actor=actor_text(entry, names),
        action=entry.action,
        outcome=entry.outcome,
        object_type=entry.object_type,
        object_id=entry.object_id,
        object_url=object_url(entry.object_type, entry.object_id, entry.action),
        actor_user_id=entry.actor_user_id,
        client_addr=entry.client_addr,
        request_id=entry.request_id,
    )
    for key, value in sorted(parse_changes(entry.changes).items()):
        if key != CAUSE_KEY and is_field_change(value):
            item = meta.all_fields.get(key) if meta is not None else None
            view.changes.append(field_change(key, value, item, _plain))
        else:
            view.details.append((key.lstrip("_"), plain_text(value)))
    return view
