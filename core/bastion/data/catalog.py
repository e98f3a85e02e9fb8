"""The definitions every process works from: read from the database, cached per revision.

A definition change bumps ``data_revision``; each request reads that one number and
reloads the catalog when it moved, so every server process sees a new field or object
on its next request without a restart.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import g, has_app_context
from sqlalchemy import Table, select

from bastion.db import db
from bastion.plugins.contributions import COMPUTED_TYPES, ValidationRule

#: Every object's standard fields, in the order lists and forms show them.
STANDARD_FIELDS = ("id", "owner", "created_at", "created_by", "updated_at", "updated_by", "version")
#: Types stored outside the record's row (junction table) or not stored (formula).
NOT_IN_ROW = frozenset({"many_to_many", "formula"})
#: Types that can be compared with ranges (gt, lt, ...).
ORDERED_TYPES = frozenset(
    {"integer", "decimal", "currency", "percent", "date", "datetime", "auto_number", "text"}
)


class UnknownObject(LookupError):
    """No such object, or one the caller may not know about."""


@dataclass(frozen=True)
class FieldMeta:
    name: str
    type: str
    label: str
    help_text: str = ""
    required: bool = False
    unique: bool = False
    indexed: bool = False
    searchable: bool = False
    encrypted: bool = False
    #: An encrypted field's exact-match lookup (bastion.data.blind_index).
    blind_index: bool = False
    personal_data: bool = False
    #: Set by the declaring plugin or the platform only: users' writes are refused
    #: (``bastion.data.records``); roles see it as read-only whatever they grant.
    read_only: bool = False
    default: Any = None
    options: tuple[str, ...] = ()
    target: str | None = None
    on_delete: str = "restrict"
    max_length: int | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    pattern: str | None = None
    formula: str | None = None
    formula_type: str = "text"
    scale: int = 2
    currency: str = "EUR"
    format: str = "{0}"
    section: str = ""
    position: int = 0
    plugin: str | None = None
    #: One of id, owner, created_at, ... that every object has.
    standard: bool = False
    #: Removed by an administrator or its plugin: hidden, column kept until purged.
    removed: bool = False
    #: Purged: its data is gone (the column too, where the database could drop it).
    purged: bool = False

    @property
    def custom(self) -> bool:
        return self.plugin is None and not self.standard

    @property
    def computed(self) -> bool:
        return self.type in COMPUTED_TYPES

    @property
    def writable(self) -> bool:
        """Whether a caller may ever set it (roles may still restrict it further)."""
        return not self.computed and (not self.standard or self.name == "owner")

    @property
    def value_type(self) -> str:
        """The type of the value: a formula's result type, else the field's own."""
        return self.formula_type if self.type == "formula" else self.type

    @property
    def in_row(self) -> bool:
        return self.type not in NOT_IN_ROW

    @property
    def filterable(self) -> bool:
        return self.type != "formula" and not self.encrypted

    @property
    def sortable(self) -> bool:
        return self.type not in {"formula", "many_to_many", "multi_picklist", "long_text"} and (
            not self.encrypted
        )


def _standard_fields() -> dict[str, FieldMeta]:
    return {
        "id": FieldMeta("id", "integer", "ID", standard=True, position=-7),
        "owner": FieldMeta(
            "owner", "lookup", "Owner", target="users", standard=True, indexed=True, position=-6
        ),
        "created_at": FieldMeta("created_at", "datetime", "Created", standard=True, position=-5),
        "created_by": FieldMeta(
            "created_by", "lookup", "Created by", target="users", standard=True, position=-4
        ),
        "updated_at": FieldMeta("updated_at", "datetime", "Last modified", standard=True),
        "updated_by": FieldMeta(
            "updated_by", "lookup", "Last modified by", target="users", standard=True
        ),
        "version": FieldMeta("version", "integer", "Version", standard=True),
    }


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    label: str
    label_plural: str
    icon: str = ""
    description: str = ""
    plugin: str | None = None
    name_field: str | None = None
    #: Cross-field rules from the declaring plugin's code, and those administrators added.
    declared_rules: tuple[ValidationRule, ...] = ()
    admin_rules: tuple[ValidationRule, ...] = ()
    duplicate_keys: tuple[tuple[str, ...], ...] = ()
    sensitive: bool = False
    retired: bool = False
    #: Listed in the top navigation (ObjectDefinition.navigation).
    navigation: bool = True
    #: Only system services write its records (ObjectDefinition.system_only).
    system_only: bool = False
    #: Every field including standard and removed ones, by API name.
    all_fields: dict[str, FieldMeta] = field(default_factory=dict)

    @property
    def custom(self) -> bool:
        return self.plugin is None

    @property
    def rules(self) -> tuple[ValidationRule, ...]:
        """Every rule a record must pass: the code's, then the administrators'."""
        return self.declared_rules + self.admin_rules

    @property
    def table_name(self) -> str:
        return f"obj_{self.name}"

    # Cached: the record service reads these for every value of every row, and a
    # catalog's objects never change (a definition change builds a new catalog).
    @functools.cached_property
    def fields(self) -> dict[str, FieldMeta]:
        """Fields in use (standard ones included), in display order."""
        return {name: meta for name, meta in self.all_fields.items() if not meta.removed}

    @functools.cached_property
    def declared_fields(self) -> dict[str, FieldMeta]:
        """Fields in use other than the standard ones, in display order."""
        return {n: m for n, m in self.all_fields.items() if not m.removed and not m.standard}

    def field(self, name: str) -> FieldMeta:
        meta = self.all_fields.get(name)
        if meta is None or meta.removed:
            raise KeyError(name)
        return meta

    def record_name(self, values: dict[str, Any]) -> str:
        if self.name_field and values.get(self.name_field) not in (None, ""):
            return str(values[self.name_field])
        return f"{self.label} #{values.get('id')}"


def junction_table_name(object_name: str, field_name: str) -> str:
    return f"m2m_{object_name}_{field_name}"


class Catalog:
    """All objects at one definition revision, with their SQLAlchemy tables."""

    def __init__(self, revision: int, objects: dict[str, ObjectMeta]):
        self.revision = revision
        self.objects = objects
        from bastion.data.storage import build_tables

        self.metadata, self.tables, self.junctions = build_tables(objects)

    def get(self, name: str) -> ObjectMeta:
        meta = self.objects.get(name)
        if meta is None or meta.retired:
            raise UnknownObject(name)
        return meta

    def active(self) -> list[ObjectMeta]:
        return [meta for meta in self.objects.values() if not meta.retired]

    def table(self, name: str) -> Table:
        return self.tables[name]

    def junction(self, object_name: str, field_name: str) -> Table:
        return self.junctions[(object_name, field_name)]

    def referencing(self, target: str) -> list[tuple[ObjectMeta, FieldMeta]]:
        """(object, field) pairs whose lookup or many-to-many points at ``target``."""
        found = []
        for meta in self.objects.values():
            for item in meta.fields.values():
                if item.target == target and not item.standard:
                    found.append((meta, item))
        return found


def _rules(text: str | None) -> tuple[ValidationRule, ...]:
    return tuple(ValidationRule(**rule) for rule in json.loads(text or "[]"))


def _decimal(text: str | None) -> Decimal | None:
    return None if text in (None, "") else Decimal(text)


def field_meta_from_row(row: Any) -> FieldMeta:
    return FieldMeta(
        name=row.name,
        type=row.type,
        label=row.label,
        help_text=row.help_text or "",
        required=row.required,
        unique=row.unique,
        indexed=row.indexed,
        searchable=row.searchable,
        encrypted=row.encrypted,
        blind_index=row.blind_index,
        personal_data=row.personal_data,
        read_only=bool(row.read_only),
        default=json.loads(row.default or "null"),
        options=tuple(json.loads(row.options or "[]")),
        target=row.target,
        on_delete=row.on_delete,
        max_length=row.max_length,
        min_value=_decimal(row.min_value),
        max_value=_decimal(row.max_value),
        pattern=row.pattern,
        formula=row.formula,
        formula_type=row.formula_type,
        scale=row.scale,
        currency=row.currency,
        format=row.format,
        section=row.section or "",
        position=row.position,
        plugin=row.plugin,
        removed=row.status != "active",
        purged=row.status == "purged",
    )


def load_catalog(revision: int) -> Catalog:
    from bastion.data.models import FieldRow, ObjectRow

    objects: dict[str, ObjectMeta] = {}
    # Fresh from the database even when the session holds older copies of these rows
    # (objects are not expired on commit): this catalog is shared by the whole process.
    fresh = {"populate_existing": True}
    rows = db.session.scalars(
        select(ObjectRow).order_by(ObjectRow.name).execution_options(**fresh)
    ).all()
    field_rows = db.session.scalars(
        select(FieldRow)
        .order_by(FieldRow.object_name, FieldRow.position, FieldRow.id)
        .execution_options(**fresh)
    ).all()
    by_object: dict[str, list[FieldMeta]] = {}
    for row in field_rows:
        by_object.setdefault(row.object_name, []).append(field_meta_from_row(row))
    for row in rows:
        standard = _standard_fields()
        fields: dict[str, FieldMeta] = {"id": standard.pop("id"), "owner": standard.pop("owner")}
        for item in by_object.get(row.name, []):
            fields[item.name] = item
        fields.update(standard)
        objects[row.name] = ObjectMeta(
            name=row.name,
            label=row.label,
            label_plural=row.label_plural,
            icon=row.icon or "",
            description=row.description or "",
            plugin=row.plugin,
            name_field=row.name_field,
            declared_rules=_rules(row.rules),
            admin_rules=_rules(row.admin_rules),
            duplicate_keys=tuple(tuple(group) for group in json.loads(row.duplicate_keys or "[]")),
            sensitive=row.sensitive,
            retired=row.retired,
            navigation=row.navigation is not False,
            system_only=bool(row.system_only),
            all_fields=fields,
        )
    return Catalog(revision, objects)


_lock = threading.Lock()
_cached: dict[str, Catalog] = {}


def stored_revision() -> int:
    from bastion.data.models import DataRevision

    value = db.session.scalar(select(DataRevision.revision).where(DataRevision.id == 1))
    return int(value or 0)


def current_catalog() -> Catalog:
    """The catalog at the stored revision, cached per process.

    The revision is read once per application context (a request, a command, one
    indexer pass), so a loop over thousands of records does not ask again per record.
    """
    if has_app_context():
        found = g.get("_bastion_catalog")
        if found is not None:
            return found
    revision = stored_revision()
    key = str(db.engine.url)
    with _lock:
        cached = _cached.get(key)
    if cached is None or cached.revision != revision:
        cached = load_catalog(revision)
        with _lock:
            current = _cached.get(key)
            if current is None or current.revision <= revision:
                _cached[key] = cached
    if has_app_context():
        g._bastion_catalog = cached
    return cached


def forget_catalog() -> None:
    """Drop this context's copy after a definition change, so it sees its own change."""
    if has_app_context():
        g.pop("_bastion_catalog", None)
