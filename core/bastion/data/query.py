"""Filters, sorting and keyset pagination, turned into SQL for one object's table.

Filters arrive as (path, operator, raw value); a path names a field, or a lookup and a
field of its target ("account.industry"). Sorting is by stored fields with the id as a
tie-breaker; a cursor carries the last row's sort values, so the next page is an index
range scan however deep it is. NULLs sort as the smallest value on both databases.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, false, literal, or_, true
from sqlalchemy.sql import ColumnElement as Col

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery
from bastion.data.values import (
    MAX_INTEGER,
    FieldValueError,
    ValueContext,
    parse,
    parse_filter_value,
)

OPERATORS = {
    "eq": "equals",
    "ne": "does not equal",
    "contains": "contains",
    "startswith": "starts with",
    "in": "is one of",
    "gt": "is greater than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "empty": "is empty",
}
RANGE_OPS = {"gt", "gte", "lt", "lte"}
TEXT_OPS = {"contains", "startswith"}
TEXTUAL = {"text", "long_text", "email", "phone", "url", "picklist", "auto_number"}
MAX_IN = 500


@dataclass(frozen=True)
class Filter:
    path: str
    op: str = "eq"
    value: Any = None


@dataclass(frozen=True)
class AnyOf:
    """Matches when any of its filters does (the others of a query must all match)."""

    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = False


def parse_sort(text: str | None) -> list[SortKey]:
    """'-amount,name' -> keys; at most three."""
    if not text:
        return []
    keys = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        keys.append(SortKey(part.lstrip("-+"), descending))
    if len(keys) > 3:
        raise BadQuery("Sort by at most three fields.", field="sort")
    return keys


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _typed(meta: FieldMeta, raw: Any, context: ValueContext) -> Any:
    probe = meta
    if meta.type in {"multi_picklist"}:
        probe = FieldMeta(meta.name, "picklist", meta.label, options=meta.options)
    elif meta.type == "many_to_many":
        probe = FieldMeta(meta.name, "lookup", meta.label, target=meta.target)
    elif meta.type == "currency":
        probe = FieldMeta(meta.name, "decimal", meta.label, scale=meta.scale)
    elif meta.type == "record_link":
        probe = meta
    elif meta.type == "email":
        probe = FieldMeta(meta.name, "text", meta.label)
    try:
        value = parse_filter_value(probe, raw, context)  # an auto-number reads as text
    except FieldValueError as exc:
        raise BadQuery(f"Filter on {meta.label}: {exc}", field=meta.name) from None
    if meta.type == "email" and isinstance(value, str):
        value = value.lower()
    return value


def condition(
    meta: FieldMeta,
    table: Any,
    op: str,
    raw: Any,
    context: ValueContext,
    junction: Any = None,
) -> ColumnElement[bool]:
    """SQL for one filter on one field of ``table``."""
    if op not in OPERATORS:
        raise BadQuery(
            f"Unknown filter operator {op!r}; use one of {', '.join(OPERATORS)}.", field=meta.name
        )
    if not meta.filterable:
        raise BadQuery(f"{meta.label} cannot be filtered on.", field=meta.name)
    if meta.type == "many_to_many":
        return _many_condition(meta, table, op, raw, context, junction)
    column = table.c[meta.name]
    if op == "empty":
        wanted = _typed(FieldMeta("empty", "boolean", "empty"), raw, context)
        if wanted is None:
            wanted = True
        return column.is_(None) if wanted else column.is_not(None)
    if op in TEXT_OPS:
        if meta.type not in TEXTUAL | {"multi_picklist"}:
            raise BadQuery(f"{meta.label} is not text; use eq, in or a range.", field=meta.name)
        if not isinstance(raw, str) or not raw.strip():
            raise BadQuery(f"Filter on {meta.label}: give some text.", field=meta.name)
        text = like_escape(raw.strip().lower())
        pattern = f"%{text}%" if op == "contains" else f"{text}%"
        if meta.type == "multi_picklist":
            pattern = f"%{text}%"
        # Lower-case both sides: SQLite's LIKE is case-insensitive only for ASCII,
        # PostgreSQL's is case-sensitive.
        from sqlalchemy import func

        return func.lower(column).like(pattern, escape="\\")
    if op == "in":
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        items = [item for item in items if str(item).strip() != ""]
        if not items or len(items) > MAX_IN:
            raise BadQuery(f"Filter on {meta.label}: give 1 to {MAX_IN} values.", field=meta.name)
        values = [_typed(meta, item, context) for item in items]
        if meta.type == "multi_picklist":
            return or_(*[_has_option(column, v) for v in values])
        if meta.type == "record_link":
            return or_(*[_link_eq(meta, table, v) for v in values])
        return column.in_(values)
    value = _typed(meta, raw, context)
    if meta.type == "multi_picklist":
        if op not in {"eq", "ne"}:
            raise BadQuery(f"{meta.label} takes eq, ne, in, contains or empty.", field=meta.name)
        matched = _has_option(column, value)
        return matched if op == "eq" else or_(~matched, column.is_(None))
    if meta.type == "record_link":
        if op not in {"eq", "ne"}:
            raise BadQuery(f"{meta.label} takes eq, ne, in or empty.", field=meta.name)
        matched = _link_eq(meta, table, value)
        # A link left empty does not equal the value either (like every other ``ne``).
        return matched if op == "eq" else or_(~matched, column.is_(None))
    if value is None:
        return column.is_(None) if op == "eq" else column.is_not(None)
    if op == "eq":
        return column == value
    if op == "ne":
        return or_(column != value, column.is_(None))
    if meta.type in {"boolean", "lookup", "picklist"}:
        raise BadQuery(f"{meta.label} takes eq, ne, in or empty.", field=meta.name)
    return {
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[op]


def _has_option(column: Any, option: str) -> ColumnElement[bool]:
    """Multi-picklists are stored as ';a;b;': match one whole option, '%' and '_' literal."""
    return column.like(f"%;{like_escape(option)};%", escape="\\")


def _link_eq(meta: FieldMeta, table: Any, value: Any) -> ColumnElement[bool]:
    return and_(table.c[f"{meta.name}__object"] == value.object, table.c[meta.name] == value.id)


def _many_condition(
    meta: FieldMeta, table: Any, op: str, raw: Any, context: ValueContext, junction: Any
) -> ColumnElement[bool]:
    from sqlalchemy import exists, select

    linked = select(junction.c.record_id).where(junction.c.record_id == table.c.id)
    if op == "empty":
        wanted = _typed(FieldMeta("empty", "boolean", "empty"), raw, context)
        present = exists(linked)
        return ~present if wanted in (None, True) else present
    if op not in {"eq", "in", "ne"}:
        raise BadQuery(f"{meta.label} takes eq, ne, in or empty.", field=meta.name)
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    ids = [_typed(meta, item, context) for item in items if str(item).strip()]
    if not ids or len(ids) > MAX_IN:
        raise BadQuery(f"Filter on {meta.label}: give 1 to {MAX_IN} record ids.", field=meta.name)
    found = exists(linked.where(junction.c.target_id.in_(ids)))
    return ~found if op == "ne" else found


# --------------------------------------------------------------------------- keyset


def order_clauses(columns: list[tuple[Col, bool]], dialect: str) -> list[Any]:
    clauses = []
    for column, descending in columns:
        clause = column.desc() if descending else column.asc()
        if dialect == "postgresql":  # SQLite already sorts NULL first ascending
            clause = clause.nulls_last() if descending else clause.nulls_first()
        clauses.append(clause)
    return clauses


def after_condition(columns: list[tuple[Col, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``columns`` (NULL smallest)."""
    alternatives = []
    for index, (column, descending) in enumerate(columns):
        value = values[index]
        # Bind each value with its column's type: a bare Python bool would turn
        # ``column < True`` into a SQL expression SQLAlchemy refuses to build.
        equal_prefix = [
            (c.is_(None) if v is None else c == literal(v, c.type))
            for (c, _), v in zip(columns[:index], values[:index], strict=True)
        ]
        if value is None:
            beyond = false() if descending else column.is_not(None)
        elif descending:
            beyond = or_(column < literal(value, column.type), column.is_(None))
        else:
            beyond = column > literal(value, column.type)
        alternatives.append(and_(*equal_prefix, beyond) if equal_prefix else beyond)
    return or_(*alternatives) if alternatives else true()


def _encode_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"D": str(value)}
    if isinstance(value, datetime):
        return {"T": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    return value


#: A cursor is a few sort values; anything longer is forged (and costly to decode).
MAX_CURSOR = 2048
#: The longest text a cursor may carry for a sort column (text columns hold 2,048 at most).
MAX_CURSOR_TEXT = 2048
_INTEGER_TYPES = frozenset({"integer", "lookup", "record_link"})
_DECIMAL_TYPES = frozenset({"decimal", "currency", "percent"})
_BAD_CURSOR = "The cursor does not belong to this list; start again from the first page."


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if not isinstance(text, str) or len(text) > 64:
            raise ValueError("bad cursor value")
        if tag == "D":
            return Decimal(text)
        if tag == "T":
            return datetime.fromisoformat(text)
        if tag == "d":
            return date.fromisoformat(text)
    if isinstance(value, dict | list | float):
        raise ValueError("bad cursor value")
    return value


def _checked_value(item: FieldMeta, value: Any) -> Any:
    """``value`` if it can be a stored value of ``item``'s column, else ValueError.

    A cursor comes back from the client: a forged one must not reach the database with
    a value of the wrong type (PostgreSQL refuses it: a 500) or one whose conversion is
    costly (a decimal of 10**300000 scaled to the column's integer).
    """
    if value is None:
        return None
    kind = item.type
    if kind in _INTEGER_TYPES:
        if type(value) is not int or not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
            raise ValueError("not a whole number of the column")
        return value
    if kind in _DECIMAL_TYPES:
        if not isinstance(value, Decimal):
            raise ValueError("not a decimal")
        probe = FieldMeta(item.name, "decimal", item.label, scale=item.scale)
        if parse(probe, value) != value:  # finite, within the scale and the precision
            raise ValueError("not a stored decimal")
        return value
    if kind == "date":
        if type(value) is not date:
            raise ValueError("not a date")
        return value
    if kind == "datetime":
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("not a datetime")
        return value.astimezone(UTC)  # here, not when bound: it may overflow (year 1)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("not a boolean")
        return value
    if not isinstance(value, str) or len(value) > MAX_CURSOR_TEXT or "\x00" in value:
        raise ValueError("not a text")
    value.encode("utf-8")  # a lone surrogate cannot be sent to the database
    return value


def encode_cursor(signature: str, values: list[Any]) -> str:
    payload = json.dumps([signature, [_encode_value(v) for v in values]], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, signature: str, items: list[FieldMeta]) -> list[Any]:
    """The sort values of ``cursor``, each checked against its column's field ``items``."""
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError("cursor too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        found, values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if found != signature or not isinstance(values, list) or len(values) != len(items):
            raise ValueError("cursor of another query")
        return [
            _checked_value(item, _decode_value(value))
            for item, value in zip(items, values, strict=True)
        ]
    except (ArithmeticError, RecursionError, ValueError, TypeError, FieldValueError):
        # json.JSONDecodeError, UnicodeError and decimal's errors are among these.
        raise BadQuery(_BAD_CURSOR, field="cursor") from None


def sort_signature(meta: ObjectMeta, keys: list[SortKey]) -> str:
    return meta.name + ":" + ",".join(("-" if k.descending else "") + k.field for k in keys)
