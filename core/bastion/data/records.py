"""The record service: the one door for every read and write of business records.

Pages, the REST API, import, export, search, reports and plugins all call it. In one
place it applies the acting user's object permission, record scope and field-level
security (``bastion.authz``); parses and validates values; encrypts encrypted fields;
refuses stale writes (optimistic concurrency on ``version``); and emits record events
for the audit trail, the search index and plugins. Nothing else touches ``obj_*``
tables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, delete, false, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from bastion import audit, authz
from bastion.data import storage
from bastion.data.audit_buffer import record_on_commit
from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta, UnknownObject, current_catalog
from bastion.data.errors import (
    BadQuery,
    Conflict,
    DuplicatesFound,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from bastion.data.events import RecordChange, core_listeners
from bastion.data.formulas import evaluate, formula_order, referenced_names
from bastion.data.models import SearchOutbox, Sequence
from bastion.data.query import (
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
from bastion.data.values import (
    FieldValueError,
    RecordLink,
    ValueContext,
    check,
    from_storage,
    is_empty,
    parse,
    to_storage,
)
from bastion.db import db
from bastion.models import utcnow

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Rows per multi-row INSERT in create_many.
BATCH_SIZE = 500
#: How an ``owner`` value is read (built once: it is read for every row of an import).
OWNER_FIELD = FieldMeta("owner", "lookup", "Owner", target="users")
ATOMIC_KEY = "bastion_atomic_depth"


@dataclass
class Record:
    """A record as one user may see it: only readable fields are in ``values``."""

    object: str
    id: int
    version: int
    values: dict[str, Any]
    #: Names of lookup targets' records, by field, where the reader may see them.
    names: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


@dataclass
class Page:
    records: list[Record]
    next_cursor: str | None


@dataclass
class _KnownReferences:
    """Active user ids and visible record ids (by object) that a batch's values name."""

    users: set[int]
    visible: dict[str, set[int]] = field(default_factory=dict)


@dataclass
class _Prepared:
    row: dict[str, Any]
    encrypted: dict[str, Any]
    many: dict[str, list[int]]
    typed: dict[str, Any]


class RecordService:
    """Reads and writes as ``user``; ``system=True`` (CLI, jobs) bypasses authorization."""

    def __init__(
        self,
        user: Any,
        *,
        system: bool = False,
        context: ValueContext | None = None,
        catalog: Catalog | None = None,
    ):
        if user is None and not system:
            raise Forbidden("Nobody is signed in.")
        self.user = user
        self.system = system
        self.catalog = catalog or current_catalog()
        self.context = context or _context_for(user)
        self._access: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------ metadata

    def object(self, name: str) -> ObjectMeta:
        try:
            return self.catalog.get(name)
        except UnknownObject:
            raise NotFound(f"There is no object {name!r}.") from None

    def can(self, object_name: str, action: str) -> bool:
        if self.system:
            return True
        return authz.object_decision(self.user, object_name, action).allowed

    def require(self, object_name: str, action: str) -> ObjectMeta:
        meta = self.object(object_name)
        if self.system:
            return meta
        decision = authz.object_decision(self.user, object_name, action)
        if not decision.allowed:
            raise Forbidden(f"You may not {action} {meta.label_plural.lower()}.")
        return meta

    def field_access(self, meta: ObjectMeta) -> dict[str, str]:
        """Field name -> "edit", "read" or "hidden" for this user (computed once)."""
        found = self._access.get(meta.name)
        if found is not None:
            return found
        access: dict[str, str] = {}
        for name, item in meta.fields.items():
            if self.system:
                level = "edit"
            elif item.standard:
                level = "read"
            else:
                level = authz.field_access(self.user, meta.name, name)
            if not item.writable and level == "edit":
                level = "read"
            if name == "owner" and not self.system:
                level = "edit" if self._may_write(meta) else "read"
            access[name] = level
        # A formula over a hidden field would reveal it: hide the formula too, and any
        # formula reading that formula (repeat until nothing more is hidden).
        changed = True
        while changed:
            changed = False
            for name, item in meta.fields.items():
                if item.type != "formula" or not item.formula or access.get(name) == "hidden":
                    continue
                if any(access.get(ref) == "hidden" for ref in referenced_names(item.formula)):
                    access[name] = "hidden"
                    changed = True
        self._access[meta.name] = access
        return access

    def _may_write(self, meta: ObjectMeta) -> bool:
        return self.can(meta.name, "edit") or self.can(meta.name, "create")

    def readable(self, meta: ObjectMeta) -> list[FieldMeta]:
        access = self.field_access(meta)
        return [item for name, item in meta.fields.items() if access.get(name) != "hidden"]

    def editable(self, meta: ObjectMeta) -> list[FieldMeta]:
        access = self.field_access(meta)
        return [item for name, item in meta.fields.items() if access.get(name) == "edit"]

    def readable_field(self, meta: ObjectMeta, name: str) -> FieldMeta:
        """A field the user may read; unknown, removed and hidden fields look the same."""
        item = meta.fields.get(name)
        if item is None or self.field_access(meta).get(name) == "hidden":
            raise BadQuery(f"{meta.label} has no field {name!r}.", field=name)
        return item

    # ------------------------------------------------------------------ scope

    def _scope(self, meta: ObjectMeta, table: Table) -> Any:
        """The condition limiting ``table`` to the records the user may read, or None."""
        if self.system:
            return None
        owners = authz.reachable_owner_ids(self.user, meta.name, "read")
        if owners is None:
            return None
        if not owners:
            return false()
        return table.c.owner.in_(sorted(owners))

    def _in_scope(self, meta: ObjectMeta, table: Table, statement: Any) -> Any:
        """``statement`` limited to the records of ``table`` the user may read."""
        scope = self._scope(meta, table)
        return statement if scope is None else statement.where(scope)

    def _reaches(self, meta: ObjectMeta, action: str, owner_id: int | None) -> bool:
        if self.system:
            return True
        return authz.record_decision(self.user, meta.name, action, owner_id).allowed

    # ------------------------------------------------------------------ reading

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
        filters: Iterable[Filter] = (),
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

    def count(self, object_name: str, *, filters: Iterable[Filter] = ()) -> int:
        meta = self.require(object_name, "read")
        table = self.catalog.table(meta.name)
        inner = self._filtered(meta, table, filters).with_only_columns(table.c.id)
        return int(db.session.scalar(select(func.count()).select_from(inner.subquery())) or 0)

    def iterate(
        self, object_name: str, *, filters: Iterable[Filter] = (), batch: int = 500, **kwargs: Any
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

    def _filtered(self, meta: ObjectMeta, table: Table, filters: Iterable[Filter]) -> Any:
        statement = select(table)
        statement = self._in_scope(meta, table, statement)
        for item in filters:
            statement = statement.where(self._condition(meta, table, item, depth=0))
        return statement

    def _condition(self, meta: ObjectMeta, table: Table, item: Filter, depth: int) -> Any:
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
                    values[name] = from_storage(item, row[name], extra)
        _add_formulas(meta, values)
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

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Group several writes into one transaction: all of them commit, or none."""
        info = db.session.info
        info[ATOMIC_KEY] = info.get(ATOMIC_KEY, 0) + 1
        try:
            yield
        except BaseException:
            info[ATOMIC_KEY] -= 1
            if info[ATOMIC_KEY] == 0:
                db.session.rollback()
            raise
        info[ATOMIC_KEY] -= 1
        if info[ATOMIC_KEY] == 0:
            db.session.commit()

    def _finish(self) -> None:
        if db.session.info.get(ATOMIC_KEY, 0) == 0:
            db.session.commit()

    def _fail(self) -> None:
        if db.session.info.get(ATOMIC_KEY, 0) == 0:
            db.session.rollback()

    # ------------------------------------------------------------------ writing

    def create(
        self, object_name: str, values: Mapping[str, Any], *, check_duplicates: bool = False
    ) -> Record:
        """Create a record owned by the user (or the ``owner`` given, within their scope)."""
        meta = self.require(object_name, "create")
        if not isinstance(values, Mapping):
            raise ValidationFailed({"": "A record is described by field names and values."})
        try:
            record_id = self._create(meta, values, check_duplicates=check_duplicates)
            self._finish()
        except IntegrityError as exc:  # a unique value taken by a concurrent write
            self._fail()
            raise _unique_violation(meta, exc) from None
        except Exception:
            self._fail()
            raise
        return (
            self.get(object_name, record_id)
            if self.can(object_name, "read")
            else Record(object_name, record_id, 1, {"id": record_id})
        )

    def _create(self, meta: ObjectMeta, raw: Mapping[str, Any], *, check_duplicates: bool) -> int:
        typed, errors = self._parse_new(meta, raw)
        change = self._validate_new(meta, typed, errors, check_duplicates=check_duplicates)
        return self._insert_new(meta, [change])[0]

    def create_many(
        self,
        object_name: str,
        rows: Sequence_[Mapping[str, Any]],
        *,
        check_duplicates: bool = False,
        return_errors: bool = False,
    ) -> list[Any]:
        """Create many records (imports): the ids of the new records, in order.

        Every row is authorized, parsed, checked (references, rules, ``record_changing``
        hooks) and announced (events, audit, search outbox) exactly as :meth:`create`
        does; only the queries are shared: one per target object for the lookups of a
        batch, one multi-row INSERT, one read-back. A bad row raises its
        ``ValidationFailed`` and nothing is written, unless ``return_errors``: then bad
        rows are skipped and their exception stands in their place in the answer.
        """
        meta = self.require(object_name, "create")
        results: list[Any] = []
        try:
            for start in range(0, len(rows), BATCH_SIZE):
                results.extend(
                    self._create_batch(
                        meta, rows[start : start + BATCH_SIZE], check_duplicates, return_errors
                    )
                )
            self._finish()
        except Exception:
            self._fail()
            raise
        return results

    def _create_batch(
        self,
        meta: ObjectMeta,
        rows: Sequence_[Mapping[str, Any]],
        check_duplicates: bool,
        return_errors: bool,
    ) -> list[Any]:
        reach: dict[Any, bool] = {}
        parsed: list[tuple[dict[str, Any], dict[str, str]] | None] = []
        for raw in rows:
            if isinstance(raw, Mapping):
                parsed.append(self._parse_new(meta, raw, reach))
            else:
                parsed.append(None)
        known = self._known_references(meta, [typed for typed, _ in filter(None, parsed)])
        results: list[Any] = []
        changes: list[RecordChange] = []
        for item in parsed:
            try:
                if item is None:
                    raise ValidationFailed({"": "A record is described by field names and values."})
                change = self._validate_new(
                    meta, *item, check_duplicates=check_duplicates, known=known
                )
            except (ValidationFailed, DuplicatesFound) as exc:
                if not return_errors:
                    raise
                results.append(exc)
                continue
            results.append(change)
            changes.append(change)
        ids = iter(self._insert_new(meta, changes))
        return [next(ids) if isinstance(r, RecordChange) else r for r in results]

    def _parse_new(
        self, meta: ObjectMeta, raw: Mapping[str, Any], reach: dict[Any, bool] | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        typed, errors = self._parse_values(meta, raw, creating=True)
        owner = typed.get("owner")
        if owner is None and not self.system:
            typed["owner"] = owner = self.user.id
        if "owner" in typed:
            # Same answer for the same owner within a batch: ask once.
            allowed = reach.get(owner) if reach is not None else None
            if allowed is None:
                allowed = self._reaches(meta, "create", owner)
                if reach is not None:
                    reach[owner] = allowed
            if not allowed:
                errors.setdefault("owner", "You may not create records for that owner.")
        for name, item in meta.declared_fields.items():
            if name not in typed and item.default is not None and item.writable:
                with contextlib.suppress(FieldValueError):  # checked when it was defined
                    typed[name] = parse(item, item.default, self.context)
        for name, item in meta.declared_fields.items():
            if item.required and is_empty(typed.get(name)) and name not in errors:
                errors[name] = f"{item.label} is required."
        return typed, errors

    def _validate_new(
        self,
        meta: ObjectMeta,
        typed: dict[str, Any],
        errors: dict[str, str],
        *,
        check_duplicates: bool,
        known: _KnownReferences | None = None,
    ) -> RecordChange:
        self._check_references(meta, typed, errors, known=known)
        self._check_unique(meta, typed, errors)
        self._check_rules(meta, typed, errors)
        change = RecordChange(meta.name, "create", None, self.user, values=typed)
        self._run_changing(change, errors)
        if errors:
            raise ValidationFailed(errors)
        if check_duplicates:
            from bastion.data.duplicates import raise_if_duplicates

            raise_if_duplicates(self, meta, typed)
        return change

    def _insert_new(self, meta: ObjectMeta, changes: list[RecordChange]) -> list[int]:
        """Insert validated creations (one statement), then announce each one."""
        if not changes:
            return []
        now = utcnow()
        actor = None if self.system or self.user is None else self.user.id
        prepared = [self._prepare(meta, change.values) for change in changes]
        rows = []
        for change, item in zip(changes, prepared, strict=True):
            rows.append(
                {
                    **item.row,
                    "owner": change.values.get("owner"),
                    "created_at": now,
                    "created_by": actor,
                    "updated_at": now,
                    "updated_by": actor,
                    "version": 1,
                }
            )
        table = self.catalog.table(meta.name)
        if len(rows) == 1:
            statement = insert(table).values(rows[0]).returning(table.c.id)
            ids = [db.session.execute(statement).scalar_one()]
        else:
            # A multi-row INSERT needs the same columns in every row; absent means NULL.
            columns = {name for row in rows for name in row}
            rows = [{name: row.get(name) for name in columns} for row in rows]
            statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            ids = list(db.session.execute(statement, rows).scalars())
        self._after_insert(meta, table, ids, prepared)
        after = self._load_typed_many(meta, ids)
        for change, record_id in zip(changes, ids, strict=True):
            change.record_id = record_id
            change.after = after[record_id]
            change.changed = tuple(n for n in change.after if not is_empty(change.after.get(n)))
        if len(changes) == 1:
            self._emit(changes[0])
        else:
            self._emit_many(changes)
        return ids

    def _after_insert(
        self, meta: ObjectMeta, table: Table, ids: list[int], prepared: list[_Prepared]
    ) -> None:
        extras: list[dict[str, Any]] = [{} for _ in ids]
        for extra, record_id, item in zip(extras, ids, prepared, strict=True):
            for name, value in item.encrypted.items():
                extra[name] = _encrypt(meta, meta.fields[name], record_id, value)
        for name, item in meta.declared_fields.items():
            if item.type == "auto_number":
                numbers = self._next_numbers(meta, item, len(ids))
                for extra, number in zip(extras, numbers, strict=True):
                    extra[name] = number
        columns = sorted({name for extra in extras for name in extra})
        if columns:
            statement = (
                update(table)
                .where(table.c.id == bindparam("record_id"))
                .values({name: bindparam(name) for name in columns})
            )
            params = [
                {"record_id": record_id, **{name: extra.get(name) for name in columns}}
                for record_id, extra in zip(ids, extras, strict=True)
            ]
            db.session.execute(statement, params)
        for record_id, item in zip(ids, prepared, strict=True):
            self._write_many(meta, record_id, item.many)

    def _next_numbers(self, meta: ObjectMeta, item: FieldMeta, count: int) -> list[str]:
        """``count`` consecutive numbers of an auto-number field (rows already inserted)."""
        where = (Sequence.object_name == meta.name, Sequence.field_name == item.name)
        if db.session.scalar(select(Sequence.next_value).where(*where)) is None:
            # First use: start after the records that exist. Two processes may get here
            # at once; ON CONFLICT lets exactly one seed win and the other carry on.
            table = self.catalog.table(meta.name)
            existing = (db.session.scalar(select(func.count()).select_from(table)) or 0) - count
            dialect = db.session.get_bind().dialect.name
            insert_row = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(
                Sequence
            ).values(object_name=meta.name, field_name=item.name, next_value=existing + 1)
            db.session.execute(insert_row.on_conflict_do_nothing())
        # One conditional UPDATE takes the row lock, so concurrent creates get distinct numbers.
        updated = db.session.execute(
            update(Sequence)
            .where(*where)
            .values(next_value=Sequence.next_value + count)
            .returning(Sequence.next_value)
        ).scalar_one()
        return [_format_number(item.format, n) for n in range(updated - count, updated)]

    def update(
        self,
        object_name: str,
        record_id: int,
        changes: Mapping[str, Any],
        *,
        version: Any,
    ) -> Record:
        """Change some fields of a record read at ``version``; Conflict when stale."""
        meta = self.require(object_name, "edit")
        try:
            self._update(meta, record_id, changes, version)
            self._finish()
        except IntegrityError as exc:
            self._fail()
            raise _unique_violation(meta, exc) from None
        except Exception:
            self._fail()
            raise
        return self.get(object_name, record_id)

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

    def _update(
        self, meta: ObjectMeta, record_id: int, raw: Mapping[str, Any], version: Any
    ) -> bool:
        if type(version) is not int:
            raise ValidationFailed({"version": "Send the version you read, as a whole number."})
        if not isinstance(raw, Mapping):
            raise ValidationFailed({"": "Changes are field names and values."})
        row = self._load_row(meta, record_id, "edit")
        if row["version"] != version:
            raise Conflict(
                f"This {meta.label.lower()} was changed by someone else since you read it "
                f"(version {version}, now {row['version']}). Reload it and apply your change "
                "again.",
                field="version",
            )
        typed, errors = self._parse_values(meta, raw, creating=False)
        new_owner = typed.get("owner", row["owner"])
        if new_owner != row["owner"] and not self._reaches(meta, "edit", new_owner):
            errors.setdefault("owner", "You may not give records to that owner.")
        before = self._load_typed(meta, record_id)
        for name in list(typed):
            item = meta.fields[name]
            if item.required and is_empty(typed[name]):
                errors.setdefault(name, f"{item.label} is required.")
        self._check_references(meta, typed, errors, before=before)
        self._check_unique(meta, typed, errors, exclude_id=record_id)
        merged = {**before, **typed}
        self._check_rules(meta, merged, errors)
        change = RecordChange(
            meta.name, "update", record_id, self.user, before=before, values=typed
        )
        self._run_changing(change, errors)
        if errors:
            raise ValidationFailed(errors)
        changed = {n: v for n, v in change.values.items() if not _same(before.get(n), v)}
        if not changed:
            return False
        prepared = self._prepare(meta, changed)
        values = dict(prepared.row)
        for name, value in prepared.encrypted.items():
            values[name] = _encrypt(meta, meta.fields[name], record_id, value)
        if "owner" in changed:
            values["owner"] = changed["owner"]
        values.update(
            updated_at=utcnow(),
            updated_by=None if self.system or self.user is None else self.user.id,
            version=version + 1,
        )
        table = self.catalog.table(meta.name)
        result = db.session.execute(
            update(table).where(table.c.id == record_id, table.c.version == version).values(values)
        )
        if result.rowcount != 1:
            raise Conflict(
                f"This {meta.label.lower()} was changed by someone else a moment ago. Reload it "
                "and apply your change again.",
                field="version",
            )
        self._write_many(meta, record_id, prepared.many, replace=True)
        after = self._load_typed(meta, record_id)
        change.after = after
        change.changed = tuple(n for n in after if not _same(before.get(n), after.get(n)))
        self._emit(change)
        return True

    def delete(self, object_name: str, record_id: int, *, version: Any = None) -> None:
        """Delete a record; lookups pointing at it are cleared or block it (``on_delete``)."""
        meta = self.require(object_name, "delete")
        try:
            self._delete(meta, record_id, version)
            self._finish()
        except Exception:
            self._fail()
            raise

    def _delete(self, meta: ObjectMeta, record_id: int, version: Any) -> None:
        row = self._load_row(meta, record_id, "delete")
        if version is not None and (type(version) is not int or row["version"] != version):
            raise Conflict(
                f"This {meta.label.lower()} was changed since you read it; reload it first.",
                field="version",
            )
        before = self._load_typed(meta, record_id)
        change = RecordChange(meta.name, "delete", record_id, self.user, before=before)
        errors: dict[str, str] = {}
        self._run_changing(change, errors)
        if errors:
            raise ValidationFailed(errors)
        self._release_references(meta, [record_id])
        table = self.catalog.table(meta.name)
        statement = delete(table).where(table.c.id == record_id)
        if version is not None:
            statement = statement.where(table.c.version == version)
        if db.session.execute(statement).rowcount != 1:
            raise Conflict(f"This {meta.label.lower()} was changed a moment ago; reload it.")
        change.changed = tuple(before)
        self._emit(change)

    def _release_references(
        self, meta: ObjectMeta, ids: list[int], into: int | None = None
    ) -> None:
        """Before records go: re-point (merge) or clear lookups to them, or refuse."""
        for source, item in _references_to(self.catalog, meta.name):
            if item.type == "many_to_many":
                if into is not None:
                    self._repoint_many(meta, source, item, ids, into)
                continue  # junction rows go with the record (ON DELETE CASCADE)
            if item.type != "lookup" or item.encrypted:
                continue
            table = self.catalog.table(source.name)
            column = table.c[item.name]
            if into is None and item.on_delete == "restrict" and not item.removed:
                self._refuse_referenced(meta, source, item, column.in_(ids))
            pointing = column.in_(ids)
            if into is not None and source.name == meta.name:
                # The survivor must not become its own parent: its link is cleared (its
                # version moves once, in merge()).
                pointing = pointing & (table.c.id != into)
                db.session.execute(
                    update(table)
                    .where(table.c.id == into, column.in_(ids))
                    .values({item.name: None})
                )
            released = db.session.execute(
                update(table)
                .where(pointing)
                .values({item.name: into, "version": table.c.version + 1, "updated_at": utcnow()})
                .returning(table.c.id)
            )
            self._references_released(meta, ids, source, item, list(released.scalars()), into)
        for source in self.catalog.objects.values():
            for item in source.all_fields.values():
                if item.type != "record_link" or item.purged or item.encrypted:
                    continue
                table = self.catalog.table(source.name)
                match = (table.c[f"{item.name}__object"] == meta.name) & table.c[item.name].in_(ids)
                values: dict[str, Any] = {"version": table.c.version + 1}
                if into is None:
                    values.update({item.name: None, f"{item.name}__object": None})
                else:
                    values[item.name] = into
                    if source.name == meta.name:  # the survivor does not link to itself
                        cleared = {item.name: None, f"{item.name}__object": None}
                        db.session.execute(
                            update(table).where(match & (table.c.id == into)).values(cleared)
                        )
                        match = match & (table.c.id != into)
                released = db.session.execute(
                    update(table).where(match).values(values).returning(table.c.id)
                )
                self._references_released(meta, ids, source, item, list(released.scalars()), into)

    def _refuse_referenced(
        self, meta: ObjectMeta, source: ObjectMeta, item: FieldMeta, pointing: Any
    ) -> None:
        """Conflict when records refer through a restricting lookup to those going.

        The number said is of the referring records the user may see: a count of all of
        them would tell how many records exist beyond the user's scope.
        """
        table = self.catalog.table(source.name)
        counting = select(func.count()).select_from(table).where(pointing)
        total = db.session.scalar(counting) or 0
        if not total:
            return
        visible = total
        if not self.system:
            visible = 0
            seen = self.can(source.name, "read") and self.field_access(source).get(item.name)
            if seen and seen != "hidden":
                visible = db.session.scalar(self._in_scope(source, table, counting)) or 0
        what = f"this {meta.label.lower()}"
        if visible == total:
            raise Conflict(
                f"{total} {source.label_plural.lower()} refer to {what} in {item.label}; "
                "reassign or delete them first."
            )
        if visible:
            raise Conflict(
                f"{visible} {source.label_plural.lower()} refer to {what} in {item.label}, "
                "and other records you cannot see also refer to it; reassign or delete the "
                "ones you see, and ask someone who can see the others."
            )
        raise Conflict(
            f"Other records you cannot see refer to {what}, so it cannot be deleted; ask "
            "someone who can see them to reassign or delete them."
        )

    def _references_released(
        self,
        meta: ObjectMeta,
        ids: list[int],
        source: ObjectMeta,
        item: FieldMeta,
        changed: list[int],
        into: int | None,
    ) -> None:
        """Audit and re-index the records whose reference a delete or merge changed:
        their rows were updated in bulk, without a record event each."""
        if not changed:
            return
        changes: dict[str, Any] = {
            "field": item.name,
            "target": meta.name,
            "target_ids": list(ids),
            "count": len(changed),
        }
        if into is None:
            changes["cleared"] = True
        else:
            changes["moved_to"] = into
        record_on_commit(  # like the record events' entries: only if this commits
            db.session(),
            "record.references_released",
            actor=audit.current_actor(),
            object_type=source.name,
            changes=changes,
        )
        if any(field.searchable for field in source.fields.values()):
            rows = [
                {"object_name": source.name, "record_id": i, "action": "index"} for i in changed
            ]
            db.session.execute(insert(SearchOutbox), rows)

    def _repoint_many(
        self, meta: ObjectMeta, source: ObjectMeta, item: FieldMeta, ids: list[int], into: int
    ) -> None:
        junction = self.catalog.junction(source.name, item.name)
        rows = db.session.execute(
            select(junction.c.record_id).where(junction.c.target_id.in_(ids)).distinct()
        ).scalars()
        linked = set(rows)
        if source.name == item.target:
            linked.discard(into)  # no link from the survivor to itself
        already = set(
            db.session.execute(
                select(junction.c.record_id).where(junction.c.target_id == into)
            ).scalars()
        )
        db.session.execute(delete(junction).where(junction.c.target_id.in_(ids)))
        fresh = [{"record_id": r, "target_id": into} for r in sorted(linked - already)]
        if fresh:
            db.session.execute(insert(junction), fresh)
        self._references_released(meta, ids, source, item, sorted(linked), into)

    def merge(
        self,
        object_name: str,
        winner_id: int,
        loser_ids: Iterable[int],
        *,
        values: Mapping[str, Any],
        version: Any,
    ) -> Record:
        """Merge records into ``winner_id``: chosen values on it, references re-pointed,
        the others deleted, all in one transaction."""
        meta = self.require(object_name, "edit")
        self.require(object_name, "delete")
        if not _is_id(winner_id) or isinstance(loser_ids, str | bytes | Mapping):
            raise ValidationFailed({"ids": "Record ids are whole numbers."})
        loser_list = list(loser_ids)
        if not all(_is_id(i) for i in loser_list):
            raise ValidationFailed({"ids": "Record ids are whole numbers."})
        losers = sorted(set(loser_list) - {winner_id})
        if not losers:
            raise ValidationFailed({"ids": "Choose at least one other record to merge."})
        if len(losers) > 10:
            raise ValidationFailed({"ids": "Merge at most 10 records at a time."})
        if type(version) is not int:
            raise ValidationFailed({"version": "Send the version you read, as a whole number."})
        if not isinstance(values, Mapping):
            raise ValidationFailed({"": "Values are field names and values."})
        with self.atomic():
            for loser in losers:
                self._load_row(meta, loser, "delete")
            winner = self._load_row(meta, winner_id, "edit")
            if winner["version"] != version:  # refuse before touching anything
                raise Conflict(
                    f"This {meta.label.lower()} was changed by someone else since you read it "
                    f"(version {version}, now {winner['version']}). Reload it and merge again.",
                    field="version",
                )
            before_losers = {loser: self._load_typed(meta, loser) for loser in losers}
            chosen = self._merge_values(meta, winner_id, losers, values)
            self._release_references(meta, losers, into=winner_id)
            table = self.catalog.table(meta.name)
            # Unique values move to the winner only once the losers are gone.
            db.session.execute(delete(table).where(table.c.id.in_(losers)))
            if not self._update(meta, winner_id, chosen, version):
                # Nothing of its own changed, but it absorbed the others: a new version,
                # so an edit read before the merge is refused.
                db.session.execute(
                    update(table)
                    .where(table.c.id == winner_id)
                    .values(version=table.c.version + 1, updated_at=utcnow())
                )
            change = RecordChange(
                meta.name,
                "merge",
                winner_id,
                self.user,
                after=self._load_typed(meta, winner_id),
                merged_ids=tuple(losers),
            )
            change.before = {"merged": {str(k): _jsonable(v) for k, v in before_losers.items()}}
            self._emit(change)
        return self.get(object_name, winner_id)

    def _merge_values(
        self, meta: ObjectMeta, winner_id: int, losers: list[int], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The chosen values, without references to the merged records themselves: the
        survivor cannot be its own parent, nor point at a record about to go."""
        gone = {winner_id, *losers}
        chosen = dict(values)
        for name, raw in values.items():
            item = meta.fields.get(name) if isinstance(name, str) else None
            if item is None or (item.target != meta.name and item.type != "record_link"):
                continue
            try:
                value = parse(item, raw, self.context)
            except FieldValueError:
                continue  # the update reports it
            if item.type == "lookup" and value in gone:
                chosen[name] = None
            elif item.type == "many_to_many" and set(value) & gone:
                chosen[name] = [i for i in value if i not in gone]
            elif isinstance(value, RecordLink) and value.object == meta.name and value.id in gone:
                chosen[name] = None
        return chosen

    # ------------------------------------------------------------------ values

    def _parse_values(
        self, meta: ObjectMeta, raw: Mapping[str, Any], *, creating: bool
    ) -> tuple[dict[str, Any], dict[str, str]]:
        access = self.field_access(meta)
        typed: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, value in raw.items():
            if name in {"id", "version"}:
                continue
            item = meta.fields.get(name) if isinstance(name, str) else None
            level = access.get(name) if item is not None else None
            if item is None or level == "hidden":
                errors[str(name)] = f"{meta.label} has no field {name!r}."
                continue
            if level != "edit":
                errors[name] = f"{item.label} cannot be changed."
                continue
            try:
                if name == "owner":
                    parsed = parse(OWNER_FIELD, value)
                    if parsed is None and not self.system:
                        raise FieldValueError("Every record needs an owner.")
                else:
                    parsed = parse(item, value, self.context)
                    check(item, parsed)
                typed[name] = parsed
            except FieldValueError as exc:
                errors[name] = str(exc)
        if creating and "owner" in raw and self.system and typed.get("owner") is None:
            typed.pop("owner", None)
        return typed, errors

    def _check_references(
        self,
        meta: ObjectMeta,
        typed: dict[str, Any],
        errors: dict[str, str],
        before: dict[str, Any] | None = None,
        known: _KnownReferences | None = None,
    ) -> None:
        """Lookups must point at records that exist and that the user may read.

        ``known`` holds what a batch fetched at once (:meth:`_known_references`).
        """
        for name, value in typed.items():
            if name in errors or is_empty(value):
                continue
            item = meta.fields[name]
            if before is not None and _same(before.get(name), value):
                continue
            if name == "owner":
                exists = value in known.users if known is not None else _user_exists(value)
                if not exists:
                    errors[name] = "The owner must be an active user."
                continue
            if item.type == "record_link":
                target_name, ids = value.object, [value.id]
            elif item.type in {"lookup", "many_to_many"}:
                target_name, ids = item.target or "", value if isinstance(value, list) else [value]
            else:
                continue
            try:
                target = self.object(target_name)
            except NotFound:
                errors[name] = f"{item.label} points at an unknown object."
                continue
            if not self.system and not self.can(target.name, "read"):
                errors[name] = f"You may not link {target.label_plural.lower()}."
                continue
            found = known.visible.get(target.name) if known is not None else None
            if found is None:
                found = self._visible_ids(target, ids)
            missing = [i for i in ids if i not in found]
            if missing:
                errors[name] = (
                    f"{item.label}: no {target.label.lower()} {missing[0]} that you can see."
                )

    def _visible_ids(self, target: ObjectMeta, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` that are records of ``target`` within the user's scope."""
        wanted = sorted(set(ids))
        table = self.catalog.table(target.name)
        found: set[int] = set()
        for start in range(0, len(wanted), MAX_LIMIT):
            statement = select(table.c.id).where(table.c.id.in_(wanted[start : start + MAX_LIMIT]))
            found.update(db.session.execute(self._in_scope(target, table, statement)).scalars())
        return found

    def _known_references(
        self, meta: ObjectMeta, typed_rows: list[dict[str, Any]]
    ) -> _KnownReferences:
        """The owners and linked records of a batch, one query per target object."""
        from bastion.models import User

        owners: set[int] = set()
        wanted: dict[str, set[int]] = {}
        for typed in typed_rows:
            for name, value in typed.items():
                item = meta.fields.get(name)
                if item is None or is_empty(value):
                    continue
                if name == "owner":
                    owners.add(value)
                elif item.type == "record_link" and isinstance(value, RecordLink):
                    wanted.setdefault(value.object, set()).add(value.id)
                elif item.type == "lookup" and isinstance(value, int):
                    wanted.setdefault(item.target or "", set()).add(value)
                elif item.type == "many_to_many" and isinstance(value, list):
                    wanted.setdefault(item.target or "", set()).update(value)
        known = _KnownReferences(users=set())
        listed = sorted(owners)
        for start in range(0, len(listed), MAX_LIMIT):
            chunk = listed[start : start + MAX_LIMIT]
            known.users.update(
                db.session.scalars(select(User.id).where(User.id.in_(chunk), User.active))
            )
        for target_name, ids in wanted.items():
            readable = self.system or self.can(target_name, "read")
            if target_name in self.catalog.objects and readable:
                known.visible[target_name] = self._visible_ids(self.object(target_name), ids)
        return known

    def _check_unique(
        self,
        meta: ObjectMeta,
        typed: Mapping[str, Any],
        errors: dict[str, str],
        exclude_id: int | None = None,
    ) -> None:
        """Unique fields: refuse a value another record holds (whoever may see it)."""
        table = self.catalog.table(meta.name)
        for name, value in typed.items():
            item = meta.fields.get(name)
            if item is None or not item.unique or name in errors or is_empty(value):
                continue
            if not item.in_row or item.encrypted:
                continue
            stored = to_storage(item, value).get(name)
            statement = select(table.c.id).where(table.c[name] == stored).limit(1)
            if exclude_id is not None:
                statement = statement.where(table.c.id != exclude_id)
            if db.session.execute(statement).first() is not None:
                errors[name] = f"{item.label} {value} is already used by another record."

    def _check_rules(
        self, meta: ObjectMeta, values: dict[str, Any], errors: dict[str, str]
    ) -> None:
        for rule in meta.rules:
            complete = dict(values)
            _add_formulas(meta, complete)
            if not evaluate(rule.check, complete):
                key = rule.field if rule.field in meta.fields else ""
                errors.setdefault(key, rule.message)

    def _run_changing(self, change: RecordChange, errors: dict[str, str]) -> None:
        from bastion.runtime import platform

        for plugin, result in platform().hook("record_changing", change=change):
            if isinstance(result, Mapping):
                for key, message in result.items():
                    errors.setdefault(str(key), str(message))
            else:
                log.warning("Plugin %s returned %s from record_changing.", plugin, type(result))

    def _emit_many(self, changes: list[RecordChange]) -> None:
        """Announce a batch: a core listener with a ``many`` variant gets it at once
        (one INSERT for the search outbox), the others and plugins one change at a time."""
        from bastion.runtime import platform

        for listener in core_listeners():
            many = getattr(listener, "many", None)
            if many is not None:
                many(changes)
            else:
                for change in changes:
                    listener(change)
        for change in changes:
            platform().hook("record_changed", change=change)

    def _emit(self, change: RecordChange) -> None:
        self._emit_many([change])

    def _prepare(self, meta: ObjectMeta, typed: Mapping[str, Any]) -> _Prepared:
        row: dict[str, Any] = {}
        encrypted: dict[str, Any] = {}
        many: dict[str, list[int]] = {}
        for name, value in typed.items():
            item = meta.fields[name]
            if item.standard:
                continue
            if item.type == "many_to_many":
                many[name] = list(value or [])
            elif item.encrypted:
                encrypted[name] = value
                row[name] = None
            else:
                row.update(to_storage(item, value))
        return _Prepared(row, encrypted, many, dict(typed))

    def _write_many(
        self, meta: ObjectMeta, record_id: int, many: dict[str, list[int]], *, replace: bool = False
    ) -> None:
        for name, ids in many.items():
            junction = self.catalog.junction(meta.name, name)
            if replace:
                db.session.execute(delete(junction).where(junction.c.record_id == record_id))
            if ids:
                db.session.execute(
                    insert(junction), [{"record_id": record_id, "target_id": i} for i in ids]
                )


# --------------------------------------------------------------------------- helpers


def _context_for(user: Any) -> ValueContext:
    from flask import has_app_context

    region, currency = "", "EUR"
    if has_app_context():
        from bastion.runtime import platform

        settings = platform().settings
        region, currency = settings.phone_region, settings.default_currency
    zone = getattr(user, "time_zone", None) or "UTC"
    return ValueContext(time_zone=zone, phone_region=region, default_currency=currency)


def _unique_violation(meta: ObjectMeta, exc: IntegrityError) -> ValidationFailed:
    """The database refused a duplicate that passed our check (a concurrent write)."""
    # Name the field exactly, never by substring ("code" is inside "code_2"): PostgreSQL
    # gives the index's name, SQLite says "UNIQUE constraint failed: obj_x.col[, ...]".
    orig = getattr(exc, "orig", exc)
    constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
    columns: set[str] = set()
    found = re.search(r"UNIQUE constraint failed: (.+)$", str(orig), re.MULTILINE)
    if found:
        columns = {part.strip() for part in found.group(1).split(",")}
    for name, item in meta.fields.items():
        if not item.unique:
            continue
        if (constraint and constraint in storage.field_index_names(meta.name, name)) or (
            f"{meta.table_name}.{name}" in columns
        ):
            return ValidationFailed({name: f"{item.label}: that value is already used."})
    log.warning("Write refused by a database constraint on %s.", meta.name)
    return ValidationFailed({"": "The database refused the change; nothing was saved."})


def _same(left: Any, right: Any) -> bool:
    if is_empty(left) and is_empty(right):
        return True
    return left == right


def _add_formulas(meta: ObjectMeta, values: dict[str, Any]) -> None:
    """Every formula's value, a formula's inputs first (a formula may read another)."""
    formulas = {n: f for n, f in meta.fields.items() if f.type == "formula" and f.formula}
    for name in formulas:
        values[name] = None  # on a cycle: no value
    for name in formula_order(tuple((n, f.formula or "") for n, f in formulas.items())):
        values[name] = _formula_value(formulas[name], values)


def _formula_value(item: FieldMeta, values: dict[str, Any]) -> Any:
    value = evaluate(item.formula or "", values)
    if isinstance(value, str) and item.formula_type == "text":
        return value.strip() or None
    return value


def _format_number(pattern: str, number: int) -> str:
    def pad(match: re.Match[str]) -> str:
        return str(number).zfill(len(match.group(0)) - 2)

    return re.sub(r"\{0+\}", pad, pattern, count=1)


def _user_exists(user_id: int) -> bool:
    from bastion.models import User

    return db.session.scalar(select(User.id).where(User.id == user_id, User.active)) is not None


def _encrypt(meta: ObjectMeta, item: FieldMeta, record_id: int, value: Any) -> str | None:
    if is_empty(value):
        return None
    from bastion.data.values import to_text
    from bastion.mfa import cipher

    return cipher().encrypt(to_text(item, value), context=f"{meta.name}.{item.name}:{record_id}")


def _decrypt(
    meta: ObjectMeta, item: FieldMeta, record_id: int, token: str | None, context: ValueContext
) -> Any:
    if token is None:
        return None
    from bastion.mfa import cipher

    plain = cipher().decrypt(token, context=f"{meta.name}.{item.name}:{record_id}")
    return parse(item, plain, ValueContext(time_zone="UTC"))


def _references_to(catalog: Catalog, target: str) -> Iterator[tuple[ObjectMeta, FieldMeta]]:
    """Lookups and many-to-many fields pointing at ``target``, removed ones included:
    a removed field keeps its column (and foreign key) until it is purged."""
    for meta in catalog.objects.values():
        for item in meta.all_fields.values():
            if item.target == target and not item.standard and not item.purged:
                yield meta, item


def _is_id(value: Any) -> bool:
    return type(value) is int and value > 0


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
