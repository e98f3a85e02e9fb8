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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, false, func, insert, select, update

from bastion import authz
from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta, UnknownObject, current_catalog
from bastion.data.errors import (
    BadQuery,
    Conflict,
    Forbidden,
    NotFound,
    RecordError,
    ValidationFailed,
)
from bastion.data.events import RecordChange, core_listeners
from bastion.data.formulas import evaluate, referenced_names
from bastion.data.models import Sequence
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
        # A formula over a hidden field would reveal it: hide the formula too.
        for name, item in meta.fields.items():
            refs = referenced_names(item.formula) if item.formula else set()
            if item.type == "formula" and any(access.get(ref) == "hidden" for ref in refs):
                access[name] = "hidden"
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

    def _scope(self, meta: ObjectMeta, table: Table, action: str = "read") -> Any:
        if self.system:
            return None
        owners = authz.reachable_owner_ids(self.user, meta.name, action)
        if owners is None:
            return None
        if not owners:
            return false()
        return table.c.owner.in_(sorted(owners))

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
        table = self.catalog.table(meta.name)
        statement = select(table).where(table.c.id == record_id)
        scope = self._scope(meta, table)
        if scope is not None:
            statement = statement.where(scope)
        row = db.session.execute(statement).mappings().first()
        if row is None:
            raise NotFound(f"{meta.label} {record_id} does not exist or is not visible to you.")
        return self._records(meta, [row], fields)[0]

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
        for key in keys:
            item = self.readable_field(meta, key.field)
            if not item.sortable or not item.in_row:
                raise BadQuery(f"Lists cannot be sorted by {item.label}.", field=key.field)
            columns.append((table.c[item.name], key.descending))
        if not any(column.name == "id" for column, _ in columns):
            columns.append((table.c.id, keys[-1].descending if keys else False))
        signature = sort_signature(meta, keys)
        if cursor:
            values = decode_cursor(cursor, signature, len(columns))
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
        scope = self._scope(meta, table)
        if scope is not None:
            statement = statement.where(scope)
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
            scope = self._scope(target, target_table)
            if scope is not None:
                inner = inner.where(scope)
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
        for name, item in meta.fields.items():
            if item.type == "formula" and item.formula:
                values[name] = _formula_value(item, values)
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
            scope = self._scope(meta, table)
            if scope is not None:
                statement = statement.where(scope)
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
        except Exception:
            self._fail()
            raise
        return (
            self.get(object_name, record_id)
            if self.can(object_name, "read")
            else Record(object_name, record_id, 1, {"id": record_id})
        )

    def _create(self, meta: ObjectMeta, raw: Mapping[str, Any], *, check_duplicates: bool) -> int:
        typed, errors = self._parse_values(meta, raw, creating=True)
        owner = typed.get("owner")
        if owner is None and not self.system:
            typed["owner"] = owner = self.user.id
        if "owner" in typed and not self._reaches(meta, "create", owner):
            errors.setdefault("owner", "You may not create records for that owner.")
        for name, item in meta.declared_fields.items():
            if name not in typed and item.default is not None and item.writable:
                with contextlib.suppress(FieldValueError):  # checked when it was defined
                    typed[name] = parse(item, item.default, self.context)
        for name, item in meta.declared_fields.items():
            if item.required and is_empty(typed.get(name)) and name not in errors:
                errors[name] = f"{item.label} is required."
        self._check_references(meta, typed, errors)
        self._check_rules(meta, typed, errors)
        change = RecordChange(meta.name, "create", None, self.user, values=typed)
        self._run_changing(change, errors)
        if errors:
            raise ValidationFailed(errors)
        if check_duplicates:
            from bastion.data.duplicates import raise_if_duplicates

            raise_if_duplicates(self, meta, typed)
        prepared = self._prepare(meta, change.values)
        now = utcnow()
        actor = None if self.system or self.user is None else self.user.id
        row = {
            **prepared.row,
            "owner": change.values.get("owner"),
            "created_at": now,
            "created_by": actor,
            "updated_at": now,
            "updated_by": actor,
            "version": 1,
        }
        table = self.catalog.table(meta.name)
        record_id = db.session.execute(insert(table).values(row).returning(table.c.id)).scalar_one()
        self._after_insert(meta, table, record_id, prepared)
        after = self._load_typed(meta, record_id)
        change.record_id = record_id
        change.after = after
        change.changed = tuple(n for n in after if not is_empty(after.get(n)))
        self._emit(change)
        return record_id

    def _after_insert(
        self, meta: ObjectMeta, table: Table, record_id: int, prepared: _Prepared
    ) -> None:
        extra: dict[str, Any] = {}
        for name, value in prepared.encrypted.items():
            extra[name] = _encrypt(meta, meta.fields[name], record_id, value)
        for name, item in meta.declared_fields.items():
            if item.type == "auto_number":
                extra[name] = self._next_number(meta, item)
        if extra:
            db.session.execute(update(table).where(table.c.id == record_id).values(extra))
        self._write_many(meta, record_id, prepared.many)

    def _next_number(self, meta: ObjectMeta, item: FieldMeta) -> str:
        # One conditional UPDATE takes the row lock, so concurrent creates get distinct numbers.
        updated = db.session.execute(
            update(Sequence)
            .where(Sequence.object_name == meta.name, Sequence.field_name == item.name)
            .values(next_value=Sequence.next_value + 1)
            .returning(Sequence.next_value)
        ).scalar()
        if updated is None:
            table = self.catalog.table(meta.name)
            count = db.session.scalar(select(func.count()).select_from(table)) or 0
            db.session.add(
                Sequence(object_name=meta.name, field_name=item.name, next_value=count + 1)
            )
            db.session.flush()
            updated = count + 1
        number = updated - 1
        return _format_number(item.format, number)

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
        except Exception:
            self._fail()
            raise
        return self.get(object_name, record_id)

    def _load_row(self, meta: ObjectMeta, record_id: int, action: str) -> Mapping[str, Any]:
        table = self.catalog.table(meta.name)
        statement = select(table).where(table.c.id == record_id)
        scope = self._scope(meta, table)
        if scope is not None:
            statement = statement.where(scope)
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
        for source, item in self.catalog.referencing(meta.name):
            if item.type == "many_to_many":
                if into is not None:
                    self._repoint_many(source, item, ids, into)
                continue  # junction rows go with the record (ON DELETE CASCADE)
            if item.type != "lookup" or item.encrypted:
                continue
            table = self.catalog.table(source.name)
            column = table.c[item.name]
            if into is None and item.on_delete == "restrict" and not item.removed:
                count = db.session.scalar(
                    select(func.count()).select_from(table).where(column.in_(ids))
                )
                if count:
                    raise Conflict(
                        f"{count} {source.label_plural.lower()} refer to this "
                        f"{meta.label.lower()} in {item.label}; reassign or delete them first."
                    )
            db.session.execute(
                update(table)
                .where(column.in_(ids))
                .values({item.name: into, "version": table.c.version + 1, "updated_at": utcnow()})
            )
        for source in self.catalog.objects.values():
            for item in source.fields.values():
                if item.type != "record_link":
                    continue
                table = self.catalog.table(source.name)
                match = (table.c[f"{item.name}__object"] == meta.name) & table.c[item.name].in_(ids)
                values: dict[str, Any] = {"version": table.c.version + 1}
                if into is None:
                    values.update({item.name: None, f"{item.name}__object": None})
                else:
                    values[item.name] = into
                db.session.execute(update(table).where(match).values(values))

    def _repoint_many(self, source: ObjectMeta, item: FieldMeta, ids: list[int], into: int) -> None:
        junction = self.catalog.junction(source.name, item.name)
        rows = db.session.execute(
            select(junction.c.record_id).where(junction.c.target_id.in_(ids)).distinct()
        ).scalars()
        linked = set(rows)
        already = set(
            db.session.execute(
                select(junction.c.record_id).where(junction.c.target_id == into)
            ).scalars()
        )
        db.session.execute(delete(junction).where(junction.c.target_id.in_(ids)))
        fresh = [{"record_id": r, "target_id": into} for r in sorted(linked - already)]
        if fresh:
            db.session.execute(insert(junction), fresh)

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
        losers = sorted({int(i) for i in loser_ids} - {winner_id})
        if not losers:
            raise ValidationFailed({"": "Choose at least one other record to merge."})
        if len(losers) > 10:
            raise ValidationFailed({"": "Merge at most 10 records at a time."})
        try:
            with self.atomic():
                for loser in losers:
                    self._load_row(meta, loser, "delete")
                before_losers = {loser: self._load_typed(meta, loser) for loser in losers}
                self._load_row(meta, winner_id, "edit")
                self._release_references(meta, losers, into=winner_id)
                table = self.catalog.table(meta.name)
                # Unique values move to the winner only once the losers are gone.
                db.session.execute(delete(table).where(table.c.id.in_(losers)))
                self._update(meta, winner_id, values, version)
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
        except RecordError:
            raise
        return self.get(object_name, winner_id)

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
                    parsed = parse(FieldMeta("owner", "lookup", "Owner", target="users"), value)
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
    ) -> None:
        """Lookups must point at records that exist and that the user may read."""
        for name, value in typed.items():
            if name in errors or is_empty(value):
                continue
            item = meta.fields[name]
            if before is not None and _same(before.get(name), value):
                continue
            if name == "owner":
                if not _user_exists(value):
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
            table = self.catalog.table(target.name)
            statement = select(table.c.id).where(table.c.id.in_(ids))
            scope = self._scope(target, table)
            if scope is not None:
                statement = statement.where(scope)
            found = set(db.session.execute(statement).scalars())
            missing = [i for i in ids if i not in found]
            if missing:
                errors[name] = (
                    f"{item.label}: no {target.label.lower()} {missing[0]} that you can see."
                )

    def _check_rules(
        self, meta: ObjectMeta, values: dict[str, Any], errors: dict[str, str]
    ) -> None:
        for rule in meta.rules:
            complete = dict(values)
            for name, item in meta.fields.items():
                if item.type == "formula" and item.formula:
                    complete[name] = _formula_value(item, complete)
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

    def _emit(self, change: RecordChange) -> None:
        for listener in core_listeners():
            listener(change)
        from bastion.runtime import platform

        platform().hook("record_changed", change=change)

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


def _same(left: Any, right: Any) -> bool:
    if is_empty(left) and is_empty(right):
        return True
    return left == right


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


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))
