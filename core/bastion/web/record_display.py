"""Field values as HTML: one formatter for lists, detail pages, timelines and other modules.

Datetimes are shown in the reader's time zone, money with its currency, lookups and
record links as links named through ``RecordService.names`` (so a record the reader may
not see is never named), owners through the users table. Build one :class:`Display`
per page, ``prime`` it with the records about to be shown (one names query per target
object instead of one per cell), then call ``value`` for each cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import url_for
from markupsafe import Markup, escape
from sqlalchemy import select

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.records import Record, RecordService
from bastion.data.values import Money, RecordLink, is_empty
from bastion.db import db

USERS = "users"
EMPTY = Markup('<span class="muted">—</span>')


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_datetime(value: datetime, zone: ZoneInfo) -> str:
    """A stored UTC moment as the reader's local time, e.g. "2026-11-23 14:30 CET"."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def format_number(value: int | Decimal) -> str:
    """Digits grouped by thousands, the scale kept ("1,234.50")."""
    return format(value, ",")


def format_money(value: Money) -> str:
    return f"{format_number(value.amount)} {value.currency}"


def record_url(object_name: str, record_id: int) -> str:
    return url_for("records.detail", object=object_name, record_id=record_id)


def user_names(ids: Iterable[int]) -> dict[int, str]:
    """Display names of users (owners, authors); colleagues' names are not secret."""
    from bastion.models import User

    wanted = sorted({i for i in ids if isinstance(i, int)})
    if not wanted:
        return {}
    rows = db.session.scalars(select(User).where(User.id.in_(wanted[:1000])))
    return {user.id: user.display_name for user in rows}


class Display:
    """Formats the values one user may read; remembers names it has looked up."""

    def __init__(self, service: RecordService):
        self.service = service
        self.zone = zone_of(service.context.time_zone)
        self._names: dict[str, dict[int, str]] = {}

    # ------------------------------------------------------------------ names

    def prime(self, meta: ObjectMeta, records: Iterable[Record]) -> None:
        """Look up, in one query per target, the names every lookup of ``records`` needs."""
        wanted: dict[str, set[int]] = {}
        for record in records:
            for name, value in record.values.items():
                item = meta.fields.get(name)
                if item is None or is_empty(value):
                    continue
                for target, ident in _references(item, value):
                    wanted.setdefault(target, set()).add(ident)
        for target, ids in wanted.items():
            self._load(target, ids)

    def _load(self, target: str, ids: Iterable[int]) -> dict[str, Any]:
        known = self._names.setdefault(target, {})
        missing = {i for i in ids if i not in known}
        if missing:
            found = user_names(missing) if target == USERS else self.service.names(target, missing)
            known.update(found)
            # Remember what stayed unnamed (not readable) so it is not asked for again.
            known.update({i: "" for i in missing if i not in found})
        return known

    def name(self, target: str, record_id: int) -> str:
        """The name of a record the user may read, or "" (unknown or not visible)."""
        return self._load(target, [record_id]).get(record_id, "")

    def record_name(self, meta: ObjectMeta, record: Record) -> str:
        return meta.record_name(record.values)

    # ------------------------------------------------------------------ values

    @staticmethod
    def empty(value: Any) -> bool:
        return is_empty(value)

    def value(self, item: FieldMeta, value: Any) -> Markup:
        """HTML for one value of ``item``; an em dash when empty."""
        if is_empty(value):
            return EMPTY
        kind = item.value_type
        if item.standard and item.name in {"id", "version"}:
            return escape(str(value))  # numbers that name things are not grouped
        if item.type == "lookup" and item.target:
            return self._link(item.target, value)
        if item.type == "many_to_many" and item.target:
            target = item.target
            return Markup(", ").join(self._link(target, ident) for ident in value)
        if isinstance(value, RecordLink):
            return self._link(value.object, value.id)
        return self._plain(kind, value)

    def text(self, item: FieldMeta, value: Any) -> str:
        """The value as plain text (titles, confirmations): names instead of links."""
        if is_empty(value):
            return ""
        if item.type == "lookup" and item.target:
            return self.name(item.target, value) or f"#{value}"
        if item.type == "many_to_many" and item.target:
            target = item.target
            return ", ".join(self.name(target, i) or f"#{i}" for i in value)
        if isinstance(value, RecordLink):
            return self.name(value.object, value.id) or f"#{value.id}"
        return _plain_text(item.value_type, value, self.zone)

    def _link(self, target: str, record_id: int) -> Markup:
        name = self.name(target, record_id)
        if not name:
            # Not readable (or gone): show that something is linked, never its name.
            return Markup('<span class="muted">#{}</span>').format(record_id)
        if target == USERS:
            return Markup("{}").format(name)
        return Markup('<a href="{}">{}</a>').format(record_url(target, record_id), name)

    def _plain(self, kind: str, value: Any) -> Markup:
        if kind == "boolean":
            word = "Yes" if value else "No"
            return Markup('<span class="badge{}">{}</span>').format(
                " badge--ok" if value else "", word
            )
        if kind == "email":
            return Markup('<a href="mailto:{0}">{0}</a>').format(value)
        if kind == "phone":
            return Markup('<a href="tel:{0}">{0}</a>').format(value)
        if kind == "url" and isinstance(value, str) and value.startswith(("http://", "https://")):
            return Markup('<a href="{0}" rel="noopener noreferrer nofollow">{0}</a>').format(value)
        if kind == "long_text":
            return Markup('<span class="long-text">{}</span>').format(value)
        if kind == "multi_picklist":
            return Markup(" ").join(
                Markup('<span class="badge">{}</span>').format(v) for v in value
            )
        return escape(_plain_text(kind, value, self.zone))


def _references(item: FieldMeta, value: Any) -> list[tuple[str, int]]:
    if item.type == "lookup" and item.target:
        return [(item.target, value)] if isinstance(value, int) else []
    if item.type == "many_to_many" and item.target:
        return [(item.target, i) for i in value if isinstance(i, int)]
    if isinstance(value, RecordLink):
        return [(value.object, value.id)]
    return []


def _plain_text(kind: str, value: Any, zone: ZoneInfo) -> str:
    if isinstance(value, Money):
        return format_money(value)
    if isinstance(value, datetime):
        return format_datetime(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if kind == "percent" and isinstance(value, Decimal | int):
        return f"{format_number(value)} %"
    if isinstance(value, Decimal | int) and kind in {"decimal", "currency", "integer"}:
        return format_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
