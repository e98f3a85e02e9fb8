"""Validation of values about to be written: parsing and field access, references
(owners and linked records must exist and be visible), unique values, rules, and the
plugins' ``record_changing`` hooks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import NotFound
from bastion.data.events import RecordChange
from bastion.data.formulas import evaluate
from bastion.data.records.hooks import run_record_hook
from bastion.data.records.model import MAX_LIMIT
from bastion.data.records.reading import add_formulas
from bastion.data.values import FieldValueError, RecordLink, check, is_empty, parse, to_storage
from bastion.db import db

log = logging.getLogger("bastion.data.records")

#: How an ``owner`` value is read (built once: it is read for every row of an import).
OWNER_FIELD = FieldMeta("owner", "lookup", "Owner", target="users")


@dataclass
class KnownReferences:
    """Active user ids and visible record ids (by object) that a batch's values name."""

    users: set[int]
    visible: dict[str, set[int]] = field(default_factory=dict)


class ValidationMixin:
    """Checks values before they are written; problems are collected per field."""

    def _parse_values(
        self,
        meta: ObjectMeta,
        raw: Mapping[str, Any],
        *,
        creating: bool,
        before: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The user's values typed, and the problems by field.

        ``before``: the record's current values, when updating (a read-only field may be
        sent back unchanged).
        """
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
                if item.read_only:
                    # Clients send back what they read: the value it has (or, creating,
                    # none or its default) is no attempt to change it.
                    if not self._read_only_unchanged(item, value, creating, before):
                        errors[name] = f"{item.label} is set by Bastion; it cannot be changed."
                    continue
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

    def _read_only_unchanged(
        self, item: FieldMeta, value: Any, creating: bool, before: Mapping[str, Any] | None
    ) -> bool:
        """Whether ``value`` for a read-only field leaves it as it is (or would be)."""
        try:
            parsed = parse(item, value, self.context)
        except FieldValueError:
            return False
        if creating:
            if is_empty(parsed):
                return True
            if item.default is None:
                return False
            try:
                return same(parse(item, item.default, self.context), parsed)
            except FieldValueError:
                return False
        return before is not None and same(before.get(item.name), parsed)

    def _check_references(
        self,
        meta: ObjectMeta,
        typed: dict[str, Any],
        errors: dict[str, str],
        before: dict[str, Any] | None = None,
        known: KnownReferences | None = None,
    ) -> None:
        """Lookups must point at records that exist and that the user may read.

        ``known`` holds what a batch fetched at once (:meth:`_known_references`).
        """
        for name, value in typed.items():
            if name in errors or is_empty(value):
                continue
            item = meta.fields[name]
            if before is not None and same(before.get(name), value):
                continue
            if name == "owner":
                if known is not None:
                    exists = value in known.users
                else:  # the acting user is active: authorization refuses disabled users
                    exists = self._acting_user_id() == value or _user_exists(value)
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

    def _known_references(
        self, meta: ObjectMeta, typed_rows: list[dict[str, Any]]
    ) -> KnownReferences:
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
        known = KnownReferences(users=set())
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
            add_formulas(meta, complete)
            if not evaluate(rule.check, complete):
                key = rule.field if rule.field in meta.fields else ""
                errors.setdefault(key, rule.message)

    def _run_changing(self, change: RecordChange, errors: dict[str, str]) -> None:
        for plugin, result in run_record_hook("record_changing", change, self.catalog):
            if isinstance(result, Mapping):
                for key, message in result.items():
                    errors.setdefault(str(key), str(message))
            else:
                log.warning("Plugin %s returned %s from record_changing.", plugin, type(result))


def same(left: Any, right: Any) -> bool:
    if is_empty(left) and is_empty(right):
        return True
    return left == right


def _user_exists(user_id: int) -> bool:
    from bastion.models import User

    return db.session.scalar(select(User.id).where(User.id == user_id, User.active)) is not None
