"""Reading records: get, query (filters, sort, cursor pages), count, iterate, names.

Rows are typed and decrypted here, formulas computed, and only the fields the user may
read handed out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Table, func, or_, select

from bastion.data import blind_index
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery, Forbidden, NotFound, Undecryptable
from bastion.data.formulas import evaluate_as, formula_order
from bastion.data.query import (
    AnyOf,
    Filter,
    SortKey,
    after_condition,
    condition,
    decode_cursor,
    encode_cursor,
    order_clauses,
    parse_sort,
    sort_signature,
)
from bastion.data.records.model import DEFAULT_LIMIT, MAX_LIMIT, Page, Record
from bastion.data.values import ValueContext, from_storage, parse
from bastion.db import db
from bastion.keys.fields import TOGGLEABLE, read_plain

log = logging.getLogger("bastion.data.records")


class ReadingMixin:
    """Reads within the user's scope, typed and decrypted, hidden fields left out."""

    def get(
        self, object_name: str, record_id: int, *, fields: Iterable[str] | None = None
    ) -> Record:
        """One record; NotFound when it does not exist or lies outside the user's scope."""
        meta = self.require(object_name, "read")
        return self._records(meta, [self._load_row(meta, record_id, "read")], fields)[0]

    def query(
        self,
        object_name: str,
        *,
        filters: Iterable[Filter | AnyOf] = (),
        sort: str | list[SortKey] | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        fields: Iterable[str] | None = None,
        ids: Iterable[int] | None = None,
    ) -> Page:
        """A page of records matching every filter, in order, after ``cursor``."""
        meta = self.require(object_name, "read")
        table = self.catalog.table(meta.name)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}.", field="limit")
        keys = parse_sort(sort) if isinstance(sort, str) or sort is None else list(sort)
        if not keys:
            keys = self.default_sort(meta)
        statement = self._filtered(meta, table, filters)
        if ids is not None:
            statement = statement.where(table.c.id.in_(sorted(set(ids))[:MAX_LIMIT]))
        columns = []
        items = []  # the field of each sort column: a cursor's values are checked against it
        for key in keys:
            item = self.readable_field(meta, key.field)
            if not item.sortable or not item.in_row:
                raise BadQuery(f"Lists cannot be sorted by {item.label}.", field=key.field)
            columns.append((table.c[item.name], key.descending))
            items.append(item)
        if not any(column.name == "id" for column, _ in columns):
            columns.append((table.c.id, keys[-1].descending if keys else False))
            items.append(meta.all_fields["id"])
        signature = sort_signature(meta, keys)
        if cursor:
            values = decode_cursor(cursor, signature, items)
            statement = statement.where(after_condition(columns, values))
        dialect = db.session.get_bind().dialect.name
        statement = statement.order_by(*order_clauses(columns, dialect)).limit(limit + 1)
        rows = db.session.execute(statement).mappings().all()
        more = len(rows) > limit
        rows = rows[:limit]
        records = self._records(meta, rows, fields)
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = encode_cursor(signature, [last[c.name] for c, _ in columns])
        return Page(records, next_cursor)

    def count(self, object_name: str, *, filters: Iterable[Filter | AnyOf] = ()) -> int:
        meta = self.require(object_name, "read")
        table = self.catalog.table(meta.name)
        inner = self._filtered(meta, table, filters).with_only_columns(table.c.id)
        return int(db.session.scalar(select(func.count()).select_from(inner.subquery())) or 0)

    def iterate(
        self,
        object_name: str,
        *,
        filters: Iterable[Filter | AnyOf] = (),
        batch: int = 500,
        **kwargs: Any,
    ) -> Iterator[Record]:
        """Every matching record, page by page (exports)."""
        cursor = None
        while True:
            page = self.query(
                object_name, filters=filters, limit=batch, cursor=cursor, sort="id", **kwargs
            )
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def default_sort(self, meta: ObjectMeta) -> list[SortKey]:
        name = meta.name_field
        item = meta.fields.get(name or "")
        usable = item is not None and item.sortable and item.in_row
        if usable and self.field_access(meta).get(item.name) != "hidden":  # type: ignore[union-attr]
            return [SortKey(item.name)]  # type: ignore[union-attr]
        return [SortKey("id", descending=True)]

    def _filtered(self, meta: ObjectMeta, table: Table, filters: Iterable[Filter | AnyOf]) -> Any:
        statement = select(table)
        statement = self._in_scope(meta, table, statement)
        for item in filters:
            statement = statement.where(self._condition(meta, table, item, depth=0))
        return statement

    def _condition(self, meta: ObjectMeta, table: Table, item: Filter | AnyOf, depth: int) -> Any:
        if isinstance(item, AnyOf):  # each alternative is checked like a filter of its own
            if not item.filters:
                raise BadQuery("An either-or filter needs at least one alternative.")
            return or_(*(self._condition(meta, table, one, depth) for one in item.filters))
        head, _, rest = item.path.partition(".")
        target_field = self.readable_field(meta, head)
        if rest:
            if target_field.type != "lookup" or target_field.standard or depth >= 2:
                raise BadQuery(
                    f"{target_field.label} is not a lookup to filter through.", field=item.path
                )
            target = self.object(target_field.target or "")
            if not self.can(target.name, "read"):
                raise BadQuery(f"{target_field.label} cannot be filtered through.", field=item.path)
            target_table = self.catalog.table(target.name)
            inner = select(target_table.c.id).where(
                self._condition(target, target_table, Filter(rest, item.op, item.value), depth + 1)
            )
            inner = self._in_scope(target, target_table, inner)
            return table.c[target_field.name].in_(inner)
        if target_field.encrypted:  # ciphertext compares with nothing: digests may
            return blind_index.condition(
                meta, target_field, table, item.op, item.value, self.context
            )
        junction = None
        if target_field.type == "many_to_many":
            junction = self.catalog.junction(meta.name, target_field.name)
        return condition(target_field, table, item.op, item.value, self.context, junction)

    def _records(
        self, meta: ObjectMeta, rows: list[Mapping[str, Any]], wanted: Iterable[str] | None
    ) -> list[Record]:
        readable = self.readable(meta)
        if wanted is not None:
            wanted_names = set(wanted) | {"id", "version"}
            for name in wanted_names:
                self.readable_field(meta, name)
            readable = [item for item in readable if item.name in wanted_names]
        many = self._many_values(meta, [row["id"] for row in rows], readable)
        records = []
        for row in rows:
            values = self._typed_row(meta, row, many)
            shown = {item.name: values.get(item.name) for item in readable}
            records.append(Record(meta.name, row["id"], row["version"], shown))
        return records

    def _typed_row(
        self, meta: ObjectMeta, row: Mapping[str, Any], many: dict[str, dict[int, list[int]]]
    ) -> dict[str, Any]:
        """Every stored value typed and decrypted, plus formulas (before field security)."""
        values: dict[str, Any] = {}
        for name, item in meta.fields.items():
            if item.standard:
                values[name] = from_storage(item, row[name])
            elif item.type == "many_to_many":
                values[name] = many.get(name, {}).get(row["id"], [])
            elif item.in_row:
                if item.encrypted:
                    values[name] = _decrypt(meta, item, row["id"], row[name], self.context)
                else:
                    extra = row.get(f"{name}__currency") if item.type == "currency" else None
                    if item.type == "record_link":
                        extra = row.get(f"{name}__object")
                    stored = row[name]
                    if item.type in TOGGLEABLE:  # still a ciphertext while turning plain
                        stored = read_plain(meta.name, name, row["id"], stored)
                    values[name] = from_storage(item, stored, extra)
        add_formulas(meta, values)
        return values

    def _many_values(
        self, meta: ObjectMeta, ids: list[int], readable: list[FieldMeta]
    ) -> dict[str, dict[int, list[int]]]:
        result: dict[str, dict[int, list[int]]] = {}
        if not ids:
            return result
        for item in readable:
            if item.type != "many_to_many":
                continue
            junction = self.catalog.junction(meta.name, item.name)
            found: dict[int, list[int]] = {}
            rows = db.session.execute(
                select(junction.c.record_id, junction.c.target_id)
                .where(junction.c.record_id.in_(ids))
                .order_by(junction.c.target_id)
            )
            for record_id, target_id in rows:
                found.setdefault(record_id, []).append(target_id)
            result[item.name] = found
        return result

    def names(self, object_name: str, ids: Iterable[int]) -> dict[int, str]:
        """Display names of the records among ``ids`` the user may read (others absent)."""
        wanted = sorted({i for i in ids if isinstance(i, int)})
        if not wanted or (not self.system and not self.can(object_name, "read")):
            return {}
        try:
            meta = self.object(object_name)
        except NotFound:
            return {}
        table = self.catalog.table(meta.name)
        names: dict[int, str] = {}
        for start in range(0, len(wanted), MAX_LIMIT):
            statement = select(table).where(table.c.id.in_(wanted[start : start + MAX_LIMIT]))
            statement = self._in_scope(meta, table, statement)
            for row in db.session.execute(statement).mappings():
                values = self._typed_row(meta, row, {})
                if meta.name_field and self.field_access(meta).get(meta.name_field) == "hidden":
                    names[row["id"]] = f"{meta.label} #{row['id']}"
                else:
                    names[row["id"]] = meta.record_name(values)
        return names

    def _load_row(self, meta: ObjectMeta, record_id: int, action: str) -> Mapping[str, Any]:
        table = self.catalog.table(meta.name)
        statement = select(table).where(table.c.id == record_id)
        statement = self._in_scope(meta, table, statement)
        row = db.session.execute(statement).mappings().first()
        if row is None:
            raise NotFound(f"{meta.label} {record_id} does not exist or is not visible to you.")
        if action != "read" and not self._reaches(meta, action, row["owner"]):
            raise Forbidden(f"You may see this {meta.label.lower()} but not {action} it.")
        return row

    def _load_typed(self, meta: ObjectMeta, record_id: int) -> dict[str, Any]:
        table = self.catalog.table(meta.name)
        row = db.session.execute(select(table).where(table.c.id == record_id)).mappings().one()
        every = list(meta.fields.values())
        return self._typed_row(meta, row, self._many_values(meta, [record_id], every))

    def _load_typed_many(self, meta: ObjectMeta, ids: list[int]) -> dict[int, dict[str, Any]]:
        if len(ids) == 1:
            return {ids[0]: self._load_typed(meta, ids[0])}
        table = self.catalog.table(meta.name)
        rows = db.session.execute(select(table).where(table.c.id.in_(ids))).mappings().all()
        many = self._many_values(meta, ids, list(meta.fields.values()))
        return {row["id"]: self._typed_row(meta, row, many) for row in rows}


def add_formulas(meta: ObjectMeta, values: dict[str, Any]) -> None:
    """Every formula's value, a formula's inputs first (a formula may read another)."""
    formulas = {n: f for n, f in meta.fields.items() if f.type == "formula" and f.formula}
    for name in formulas:
        values[name] = None  # on a cycle: no value
    for name in formula_order(tuple((n, f.formula or "") for n, f in formulas.items())):
        values[name] = _formula_value(formulas[name], values)


def _formula_value(item: FieldMeta, values: dict[str, Any]) -> Any:
    # Of the declared type, as the API schema and the pages promise, or empty.
    return evaluate_as(item.formula or "", values, item.formula_type, item.scale)


def _decrypt(
    meta: ObjectMeta, item: FieldMeta, record_id: int, token: str | None, context: ValueContext
) -> Any:
    if token is None:
        return None
    from bastion.encryption import DecryptionError
    from bastion.keys.fields import read_encrypted

    try:
        # Strict, except while the field's existing values are being encrypted.
        plain = read_encrypted(meta.name, item.name, record_id, token)
    except DecryptionError:
        raise _undecryptable(meta, item, record_id) from None
    return parse(item, plain, ValueContext(time_zone="UTC"))


def _undecryptable(meta: ObjectMeta, item: FieldMeta, record_id: int) -> Undecryptable:
    """Refuse a value that does not decrypt, and record it: it was tampered with or moved."""
    from bastion import audit

    log.warning("%s.%s of record %s does not decrypt.", meta.name, item.name, record_id)
    audit.record(
        "record.decrypt_failed",
        object_type=meta.name,
        object_id=record_id,
        changes={"field": item.name},
        outcome="failure",
    )
    return Undecryptable(
        f"The stored value of {item.label} on {meta.label.lower()} {record_id} cannot be "
        "decrypted: it was altered, or copied from another record or field. Nothing of it "
        "is shown; restore the record from a backup.",
        field=item.name,
    )
