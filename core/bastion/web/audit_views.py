"""The audit trail page: filter, page through and export the entries (``audit.view``).

``GET /admin/audit`` shows the newest entries first with the filters of
:mod:`bastion.web.audit_filters`; "Load more" appends the next page with htmx, or opens
it as a plain link without JavaScript. ``GET /admin/audit/export.csv`` and
``/admin/audit/export.json`` stream every entry the filters select (it can be millions:
never held in memory), after a recent sign-in; each export is itself audited as
``audit.export`` with the filters it used.

Holders of ``audit.view`` (administrators, and the default auditor role) read the whole
trail: it is what they are there to check. The trail never holds secrets or values of
encrypted fields to begin with.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context, url_for

from bastion import audit
from bastion.access import requires
from bastion.audit.chain import COLUMNS
from bastion.audit.models import AuditEntry
from bastion.data.catalog import Catalog, current_catalog
from bastion.data.exporter import formula_like
from bastion.data.listeners import ENCRYPTED_MARK
from bastion.db import db
from bastion.reauth import recent_auth_required
from bastion.web.audit_filters import (
    EXPORT_BATCH,
    FILTER_KEYS,
    AuditFilters,
    FilterError,
    every_entry,
    page_of,
    parse_cursor,
    parse_filters,
)
from bastion.web.audit_format import actor_names, entry_view

PERMISSION = "audit.view"
EXPORT_COLUMNS = COLUMNS
#: Object types of the core's own entries, offered next to the catalog's objects.
CORE_OBJECT_TYPES = ("api_token", "plugin", "role", "setting", "team", "user")
#: Action families offered as suggestions in the action filter.
ACTION_PREFIXES = (
    "auth.",
    "mfa.",
    "user.",
    "team.",
    "role.",
    "security.",
    "token.",
    "plugin.",
    "settings.",
    "schema.",
    "record.",
    "records.",
    "audit.",
    "keys.",
    "backup.",
)

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")


def _filter_args(filters: AuditFilters, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {k: v for k, v in filters.raw.items() if v}
    args.update({k: v for k, v in extra.items() if v is not None})
    return args


def _as_typed() -> AuditFilters:
    """The filters as typed, to show them again next to the message about them."""
    return AuditFilters(raw={key: request.args.get(key, "")[:200] for key in FILTER_KEYS})


def _render(
    filters: AuditFilters,
    entries: list[AuditEntry],
    next_cursor: int | None,
    error: FilterError | None = None,
):
    """The page (or, for htmx "Load more", the next entries only)."""
    names = actor_names(entries)
    next_url = None
    if next_cursor is not None:
        next_url = url_for(".index", **_filter_args(filters, cursor=next_cursor))
    context = {
        "entries": [entry_view(entry, names) for entry in entries],
        "next_url": next_url,
        "filters": filters,
        "error": error.message if error else "",
        "error_field": error.field if error else "",
        "exports": [
            (fmt.upper(), url_for(".export", format=fmt, **_filter_args(filters)))
            for fmt in ("csv", "json")
        ],
        "object_types": sorted({*current_catalog().objects, *CORE_OBJECT_TYPES}),
        "action_prefixes": ACTION_PREFIXES,
        "continued": bool(request.args.get("cursor")),
    }
    status = 400 if error else 200
    if request.args.get("partial") == "rows" and request.htmx:
        return render_template("audit/_entries.html", **context), status
    return render_template("audit/index.html", **context), status


@bp.get("")
@requires(PERMISSION)
def index():
    try:
        filters = parse_filters(request.args)
        entries, next_cursor = page_of(filters, parse_cursor(request.args.get("cursor")))
    except FilterError as exc:
        return _render(_as_typed(), [], None, exc)
    return _render(filters, entries, next_cursor)


@bp.get("/export.<any(csv, json):format>")
@requires(PERMISSION)
@recent_auth_required
def export(format: str):
    """Every entry the filters select, newest first, as a file to download."""
    try:
        filters = parse_filters(request.args)
    except FilterError as exc:
        return _render(_as_typed(), [], None, exc)
    audit.record("audit.export", changes={"format": format, "filters": filters.described()})
    # Committed before the first byte leaves: the export is on record even if the
    # download is cut short.
    db.session.commit()
    chunks = _csv_chunks(filters) if format == "csv" else _json_chunks(filters)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    response = Response(stream_with_context(chunks), mimetype=media.split(";")[0])
    response.headers["Content-Type"] = media
    name = f"audit-trail-{date.today().isoformat()}.{format}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _row(entry: AuditEntry, catalog: Catalog) -> list[Any]:
    row = [getattr(entry, column) for column in EXPORT_COLUMNS]
    row[EXPORT_COLUMNS.index("changes")] = _redacted(entry, catalog)
    return row


def _cell(value: Any) -> str:
    """A CSV cell; one starting like a spreadsheet formula is escaped (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if formula_like(text) else text


def _csv_chunks(filters: AuditFilters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    catalog = current_catalog()
    for count, entry in enumerate(every_entry(filters), start=1):
        writer.writerow([_cell(value) for value in _row(entry, catalog)])
        if count % EXPORT_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _changes_json(text: str | None) -> Any:
    """The stored changes as JSON (they always are; anything else stays text)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _redacted(entry: AuditEntry, catalog: Catalog) -> str | None:
    """The entry's changes with the values of fields encrypted *now* replaced by the
    encrypted mark: entries written before a field was marked encrypted keep its old
    plaintext (the trail is append-only), and an export must not carry it away. The
    page and History hide them the same way (``audit_format.field_change``)."""
    meta = catalog.objects.get(entry.object_type or "")
    if meta is None or not entry.changes or not entry.action.startswith("record."):
        return entry.changes
    changes = _changes_json(entry.changes)
    if not isinstance(changes, dict):
        return entry.changes
    hidden = [
        name
        for name, item in meta.all_fields.items()
        if item.encrypted and isinstance(changes.get(name), dict)
    ]
    if not hidden:
        return entry.changes
    for name in hidden:
        changes[name] = ENCRYPTED_MARK
    return json.dumps(changes, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _json_chunks(filters: AuditFilters) -> Iterator[str]:
    yield "["
    separator = "\n"
    batch: list[str] = []
    catalog = current_catalog()
    for entry in every_entry(filters):
        data = dict(zip(EXPORT_COLUMNS, _row(entry, catalog), strict=True))
        data["changes"] = _changes_json(data["changes"])
        batch.append(separator + json.dumps(data, ensure_ascii=False, sort_keys=True))
        separator = ",\n"
        if len(batch) >= EXPORT_BATCH:
            yield "".join(batch)
            batch = []
    batch.append("\n]\n")
    yield "".join(batch)
