"""Writing records: create, create_many, update and delete, and the record events
that announce each write to the core's listeners and to plugins."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError

from bastion.data import blind_index, storage
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import Conflict, DuplicatesFound, NotFound, ValidationFailed
from bastion.data.events import RecordChange, core_listeners
from bastion.data.records.auto_numbers import next_numbers
from bastion.data.records.hooks import run_record_hook
from bastion.data.records.model import Record
from bastion.data.records.validation import KnownReferences, same
from bastion.data.values import FieldValueError, is_empty, parse, to_storage
from bastion.db import db
from bastion.models import utcnow

log = logging.getLogger("bastion.data.records")

#: Rows per multi-row INSERT in create_many.
BATCH_SIZE = 500


@dataclass
class Prepared:
    row: dict[str, Any]
    encrypted: dict[str, Any]
    many: dict[str, list[int]]
    typed: dict[str, Any]


class WritingMixin:
    """Creates, updates and deletes records, and announces each write."""

    def create(
        self, object_name: str, values: Mapping[str, Any], *, check_duplicates: bool = False
    ) -> Record:
        """Create a record owned by the user (or the ``owner`` given, within their scope)."""
        meta = self.require(object_name, "create")
        if not isinstance(values, Mapping):
            raise ValidationFailed({"": "A record is described by field names and values."})
        try:
            with self._writing():
                record_id = self._create(meta, values, check_duplicates=check_duplicates)
        except IntegrityError as exc:  # a unique value taken by a concurrent write
            raise _unique_violation(meta, exc) from None
        if self.can(object_name, "read"):
            with contextlib.suppress(NotFound):
                return self.get(object_name, record_id)
            # A plugin's hook (an assignment rule) gave it to someone outside the
            # creator's scope: the record exists, the creator just cannot read it.
        return Record(object_name, record_id, 1, {"id": record_id})

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
        with self._writing():
            for start in range(0, len(rows), BATCH_SIZE):
                results.extend(
                    self._create_batch(
                        meta, rows[start : start + BATCH_SIZE], check_duplicates, return_errors
                    )
                )
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
            if item.read_only and not self.system:
                continue  # the declaring plugin's hook fills it: checked after the hooks
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
        known: KnownReferences | None = None,
    ) -> RecordChange:
        self._check_references(meta, typed, errors, known=known)
        self._check_unique(meta, typed, errors)
        change = RecordChange(meta.name, "create", None, self.user, values=typed)
        self._run_changing(change, errors)
        # Rules judge the record as it will be stored, hooks' adjustments included.
        self._check_rules(meta, change.values, errors)
        if not self.system:
            for name, item in meta.declared_fields.items():
                if item.read_only and item.required and is_empty(change.values.get(name)):
                    errors.setdefault(name, f"{item.label} is required.")
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
        actor = self._acting_user_id()
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
            ids = _insert_rows(table, rows)
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
        self, meta: ObjectMeta, table: Table, ids: list[int], prepared: list[Prepared]
    ) -> None:
        extras: list[dict[str, Any]] = [{} for _ in ids]
        for extra, record_id, item in zip(extras, ids, prepared, strict=True):
            for name, value in item.encrypted.items():
                extra[name] = _encrypt(meta, meta.fields[name], record_id, value)
        for name, item in meta.declared_fields.items():
            if item.type == "auto_number":
                numbers = next_numbers(self.catalog, meta, item, len(ids))
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
            with self._writing():
                self._update(meta, record_id, changes, version)
        except IntegrityError as exc:
            raise _unique_violation(meta, exc) from None
        return self.get(object_name, record_id)

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
        before = self._load_typed(meta, record_id)
        typed, errors = self._parse_values(meta, raw, creating=False, before=before)
        new_owner = typed.get("owner", row["owner"])
        if new_owner != row["owner"] and not self._reaches(meta, "edit", new_owner):
            errors.setdefault("owner", "You may not give records to that owner.")
        for name in list(typed):
            item = meta.fields[name]
            if item.required and is_empty(typed[name]):
                errors.setdefault(name, f"{item.label} is required.")
        self._check_references(meta, typed, errors, before=before)
        self._check_unique(meta, typed, errors, exclude_id=record_id)
        change = RecordChange(
            meta.name, "update", record_id, self.user, before=before, values=typed
        )
        self._run_changing(change, errors)
        self._check_rules(meta, {**before, **change.values}, errors)
        if errors:
            raise ValidationFailed(errors)
        changed = {n: v for n, v in change.values.items() if not same(before.get(n), v)}
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
            updated_by=self._acting_user_id(),
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
        change.changed = tuple(n for n in after if not same(before.get(n), after.get(n)))
        self._emit(change)
        return True

    def delete(self, object_name: str, record_id: int, *, version: Any = None) -> None:
        """Delete a record; lookups pointing at it are cleared or block it (``on_delete``)."""
        meta = self.require(object_name, "delete")
        with self._writing():
            self._delete(meta, record_id, version)

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

    def _emit_many(self, changes: list[RecordChange]) -> None:
        """Announce a batch: a core listener with a ``many`` variant gets it at once
        (one INSERT for the search outbox), the others and plugins one change at a time."""
        for listener in core_listeners():
            many = getattr(listener, "many", None)
            if many is not None:
                many(changes)
            else:
                for change in changes:
                    listener(change)
        for change in changes:
            run_record_hook("record_changed", change, self.catalog)

    def _emit(self, change: RecordChange) -> None:
        self._emit_many([change])

    def _prepare(self, meta: ObjectMeta, typed: Mapping[str, Any]) -> Prepared:
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
                row.update(blind_index.stored_values(meta, item, value))
            else:
                row.update(to_storage(item, value))
        return Prepared(row, encrypted, many, dict(typed))

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


def _encrypt(meta: ObjectMeta, item: FieldMeta, record_id: int, value: Any) -> str | None:
    if is_empty(value):
        return None
    from bastion.data.values import to_text
    from bastion.mfa import cipher

    return cipher().encrypt(to_text(item, value), context=f"{meta.name}.{item.name}:{record_id}")


def _insert_rows(table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one statement; their ids in the order of ``rows``."""
    if db.session.get_bind().dialect.name == "sqlite":
        # Asking SQLAlchemy to keep the order makes it send one INSERT per row on
        # SQLite. Not needed: the table never reuses ids (AUTOINCREMENT) and the write
        # lock is held, so one multi-row INSERT numbers its rows upwards in their order.
        return sorted(db.session.execute(insert(table).returning(table.c.id), rows).scalars())
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(db.session.execute(statement, rows).scalars())
