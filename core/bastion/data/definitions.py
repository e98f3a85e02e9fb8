"""Changing definitions: plugin declarations synced at start-up, administrators' edits.

Every change runs in one transaction that first bumps ``data_revision`` (which also
serializes concurrent changes: the row is locked until commit), then writes the
definition rows, then the DDL. Both SQLite and PostgreSQL roll DDL back with the
transaction, so a failed change leaves schema and definitions as they were.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from bastion.data import blind_index, storage
from bastion.data.catalog import (
    STANDARD_FIELDS,
    Catalog,
    FieldMeta,
    ObjectMeta,
    field_meta_from_row,
    forget_catalog,
    load_catalog,
)
from bastion.data.errors import Undecryptable
from bastion.data.formulas import FormulaError, check_formula, formula_cycle
from bastion.data.models import DataRevision, FieldRow, ObjectRow
from bastion.data.values import FieldValueError, ValueContext, check, parse, pattern_problem
from bastion.db import db
from bastion.models import utcnow
from bastion.plugins.contributions import (
    FIELD_TYPES,
    ContributionError,
    FieldDefinition,
    ObjectDefinition,
    ValidationRule,
)

log = logging.getLogger(__name__)

#: Types that can be stored encrypted (lookups, computed and list types cannot).
ENCRYPTABLE = frozenset(
    {"text", "long_text", "email", "phone", "url", "integer", "decimal", "date"}
)
#: Settings a plugin's field keeps from its code; administrators may change the rest.
ADMIN_EDITABLE_DECLARED = frozenset({"label", "help_text", "section", "position"})
ADMIN_EDITABLE_CUSTOM = ADMIN_EDITABLE_DECLARED | {
    "required",
    "unique",
    "indexed",
    "searchable",
    "blind_index",
    # Turned on or off with the values migrated online (bastion.keys.fields).
    "encrypted",
    "personal_data",
    "default",
    "options",
    "max_length",
    "min_value",
    "max_value",
    "pattern",
    "formula",
    "on_delete",
}
#: Settings that decide how a field's existing values are stored and read back, with the
#: stored types they matter for (None: every type). A plugin's new version cannot change
#: them, as existing values would be misread or orphaned: it must migrate its data itself.
STORAGE_SETTINGS: dict[str, frozenset[str] | None] = {
    "type": None,
    "encrypted": None,  # ciphertext or plain values in the column
    "target": frozenset({"lookup", "many_to_many"}),  # the foreign key, the junction table
    "scale": frozenset({"decimal", "currency", "percent"}),  # amounts are scaled integers
    "currency": frozenset({"currency"}),  # the code of amounts stored without one
}
#: Settings that only describe a field: changing them never touches stored values.
DESCRIPTIVE = ("label", "help_text", "section")
SPEC_KEYS = frozenset(f.name for f in dataclasses.fields(FieldDefinition))
OBJECT_SPEC_KEYS = frozenset(
    {"name", "label", "label_plural", "icon", "description", "name_field", "fields", "rules"}
)
# "mfa" too: encryption contexts are "<object>.<field>:<id>", and MFA's own contexts
# ("mfa.pending:<id>") must not be one an object's field could produce.
RESERVED_OBJECTS = frozenset({"meta", "search", "openapi", "users", "teams", "me", "tokens", "mfa"})
#: The longest max_length an administrator may set (the admin form's limit too): both
#: databases then store it alike (PostgreSQL refuses a varchar above 10,485,760).
MAX_LENGTH_LIMIT = 100_000
_TEXTUAL = ("max_length", "pattern")
_RANGE = ("min_value", "max_value")
#: The settings each type takes besides the common ones (in the order the admin form
#: shows them); the others are refused rather than stored and ignored, so a caller
#: learns their setting has no effect.
TYPE_SETTINGS: dict[str, tuple[str, ...]] = {
    "text": _TEXTUAL,
    "long_text": _TEXTUAL,
    "email": _TEXTUAL,
    "phone": _TEXTUAL,
    "url": _TEXTUAL,
    "integer": _RANGE,
    "decimal": ("scale", *_RANGE),
    "percent": ("scale", *_RANGE),
    "currency": ("scale", "currency", *_RANGE),
    "picklist": ("options",),
    "multi_picklist": ("options",),
    "lookup": ("target", "on_delete"),
    "many_to_many": ("target",),
    "auto_number": ("format",),
    "formula": ("formula", "formula_type"),
}
TYPED_SETTINGS = frozenset().union(*TYPE_SETTINGS.values())
#: Text settings of a field: None clears the optional ones, and help and section.
_TEXT_SETTINGS = ("help_text", "section", "target", "formula", "formula_type", "currency", "format")
_CLEARED_TO_EMPTY = frozenset({"help_text", "section"})


class DefinitionError(ValueError):
    """A definition change that cannot be made; the message says why and what to do."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DeclarationError(DefinitionError):
    """A plugin declares something that cannot be stored; ``plugin`` names it."""

    def __init__(self, message: str, field: str | None, plugin: str):
        super().__init__(message, field)
        self.plugin = plugin


# --------------------------------------------------------------------------- helpers


def _bump_revision() -> None:
    """Take the definitions lock (the revision row) and announce a change."""
    db.session.execute(
        update(DataRevision).where(DataRevision.id == 1).values(revision=DataRevision.revision + 1)
    )


def _fresh_catalog() -> Catalog:
    from bastion.data.catalog import stored_revision

    return load_catalog(stored_revision())


def _row_values(item: FieldDefinition) -> dict[str, Any]:
    return {
        "type": item.type,
        "label": item.label,
        "help_text": item.help_text,
        "required": item.required,
        "unique": item.unique,
        "indexed": item.indexed,
        "searchable": item.searchable,
        "encrypted": item.encrypted,
        "blind_index": item.blind_index,
        "personal_data": item.personal_data,
        "read_only": item.read_only,
        "default": json.dumps(item.default),
        "options": json.dumps(list(item.options)),
        "target": item.target,
        "on_delete": item.on_delete,
        "max_length": item.max_length,
        "min_value": None if item.min_value is None else str(item.min_value),
        "max_value": None if item.max_value is None else str(item.max_value),
        "pattern": item.pattern,
        "formula": item.formula,
        "formula_type": item.formula_type,
        "scale": item.scale,
        "currency": item.currency,
        "format": item.format,
        "section": item.section,
    }


def _rules_json(rules: tuple[ValidationRule, ...]) -> str:
    return json.dumps([dataclasses.asdict(rule) for rule in rules])


def _check_field(
    item: FieldDefinition,
    field_names: set[str],
    objects: set[str],
    formulas: Mapping[str, str] | None = None,
) -> None:
    """Consistency a FieldDefinition cannot check alone: targets, formulas, defaults.

    ``formulas``: the object's other formula fields (name -> formula), to refuse a cycle.
    """
    if item.type in {"lookup", "many_to_many"} and item.target not in objects:
        raise DefinitionError(
            f"{item.label}: there is no object {item.target!r} to point to.", "target"
        )
    if item.encrypted and item.type not in ENCRYPTABLE:
        raise DefinitionError(
            f"{item.label}: a {item.type} field cannot be encrypted.", "encrypted"
        )
    if item.encrypted and (item.unique or item.indexed or item.searchable):
        raise DefinitionError(
            f"{item.label}: an encrypted field cannot be unique, indexed or searchable, "
            "because its stored value is ciphertext (a blind_index finds exact matches).",
            "encrypted",
        )
    refusal = blind_index.problem(item)
    if refusal:
        raise DefinitionError(refusal, "blind_index")
    if item.type == "formula" and item.formula:
        try:
            check_formula(item.formula, field_names | set(STANDARD_FIELDS))
        except FormulaError as exc:
            raise DefinitionError(f"{item.label}: {exc}", "formula") from None
        others = {**(formulas or {}), item.name: item.formula}
        if formula_cycle(item.name, others.items()):
            raise DefinitionError(
                f"{item.label}: the formula reads its own value, directly or through "
                "other formulas.",
                "formula",
            )
    if item.default is not None:
        meta = FieldMeta(**{k: getattr(item, k) for k in _META_KEYS if hasattr(item, k)})
        try:
            check(meta, parse(meta, item.default, ValueContext()))
        except FieldValueError as exc:
            raise DefinitionError(f"Default value: {exc}", "default") from None


def _formulas(meta: ObjectMeta) -> dict[str, str]:
    return {n: f.formula for n, f in meta.fields.items() if f.type == "formula" and f.formula}


_META_KEYS = tuple(f.name for f in dataclasses.fields(FieldMeta))


def field_from_spec(spec: Mapping[str, Any]) -> FieldDefinition:
    """A FieldDefinition from an API body or admin form; DefinitionError names the key."""
    if not isinstance(spec, Mapping):
        raise DefinitionError("A field is described by a JSON object.")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise DefinitionError(
            f"Unknown field settings: {', '.join(sorted(unknown))}.", sorted(unknown)[0]
        )
    for key in ("name", "label", "type"):
        if not isinstance(spec.get(key), str) or not spec.get(key, "").strip():
            raise DefinitionError(f"A field needs a {key}.", key)
    if spec["type"] not in FIELD_TYPES:
        raise DefinitionError(
            f"Unknown field type {spec['type']!r}; use one of {', '.join(sorted(FIELD_TYPES))}.",
            "type",
        )
    values = dict(spec)
    _check_texts(values)
    if "options" in values:
        options = values["options"]
        if options is None:
            options = ()
        # A string is refused, not split: "a,b" or "zzz" is surely not the list meant.
        if not isinstance(options, list | tuple) or not all(isinstance(o, str) for o in options):
            raise DefinitionError('Options are a list of texts, such as ["New", "Won"].', "options")
        if len(set(options)) != len(options) or any(";" in o for o in options):
            raise DefinitionError("Options must be distinct and may not contain ';'.", "options")
        values["options"] = tuple(o.strip() for o in options)
    for key in ("min_value", "max_value"):
        if values.get(key) not in (None, ""):
            try:
                values[key] = Decimal(str(values[key]))
            except InvalidOperation:
                raise DefinitionError(f"{key} must be a number.", key) from None
            if not values[key].is_finite():  # NaN cannot be compared, nor Infinity reached
                raise DefinitionError(f"{key} must be a number.", key)
        else:
            values[key] = None
    for key in (
        "required",
        "unique",
        "indexed",
        "searchable",
        "encrypted",
        "blind_index",
        "personal_data",
        "read_only",
    ):
        if key in values and not isinstance(values[key], bool):
            raise DefinitionError(f"{key} must be true or false.", key)
    low, high = values["min_value"], values["max_value"]
    if low is not None and high is not None and low > high:
        raise DefinitionError("min_value cannot be greater than max_value.", "min_value")
    for key in ("max_length", "scale"):
        if key in values and values[key] is not None and type(values[key]) is not int:
            raise DefinitionError(f"{key} must be a whole number.", key)
    max_length = values.get("max_length")
    if max_length is not None and not 1 <= max_length <= MAX_LENGTH_LIMIT:
        raise DefinitionError(
            f"max_length is a whole number from 1 to {MAX_LENGTH_LIMIT:,}.", "max_length"
        )
    if values.get("pattern") == "":
        values["pattern"] = None
    if values.get("pattern") is not None:
        pattern = values["pattern"]
        problem = pattern_problem(pattern) if isinstance(pattern, str) else "A pattern is text."
        if problem:
            raise DefinitionError(problem, "pattern")
    if "label" in values:
        values["label"] = values["label"].strip()[:100]
    try:
        return FieldDefinition(**values)
    except ContributionError as exc:
        raise DefinitionError(str(exc), exc.setting) from None
    except TypeError as exc:
        raise DefinitionError(f"The field is not described correctly: {exc}.") from None


def _check_texts(values: dict[str, Any]) -> None:
    """Text settings must be text: ``5`` or ``["x"]`` would be stored as "5" or "['x']"."""
    for key in _TEXT_SETTINGS:
        if key not in values:
            continue
        if values[key] is None and key in _CLEARED_TO_EMPTY:
            values[key] = ""  # null clears help and section, as an empty text does
        elif values[key] is not None and not isinstance(values[key], str):
            raise DefinitionError(f"{key} must be text.", key)


def _check_object_texts(settings: Mapping[str, Any]) -> None:
    for key in ("icon", "description"):
        if settings.get(key) is not None and not isinstance(settings[key], str):
            raise DefinitionError(f"{key} must be text.", key)


def _is_set(value: Any) -> bool:
    """A setting given a value (an empty one, as forms send, means "not set")."""
    return value not in (None, "", [], ())


def check_applicable(field_type: str, settings: Mapping[str, Any]) -> None:
    """Refuse a setting the field's type does not use (it would be stored and ignored)."""
    takes = TYPE_SETTINGS.get(field_type, ())
    for key in sorted(settings):
        if key in TYPED_SETTINGS and key not in takes and _is_set(settings[key]):
            used = f"; it takes {', '.join(sorted(takes))}" if takes else ""
            raise DefinitionError(f"{key} does not apply to a {field_type} field{used}.", key)


# --------------------------------------------------------------------------- storage names


class _StorageNames:
    """Table and index names taken, to refuse a definition whose storage would collide.

    Generated names are not unique by construction (``ix_orders_line_total`` serves
    both orders.line_total and orders_line.total, ``m2m_a_b_c`` both a.b_c and a_b.c),
    and both databases keep tables and indexes in one namespace. So every name a new
    object or field could ever need (an index once it is made unique, say) is checked
    against those of the catalog and of the database.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    @functools.cached_property
    def present(self) -> set[str]:
        return storage.existing_names(db.session.connection())

    @functools.cached_property
    def holders(self) -> dict[str, str]:
        """Who holds each name, gathered on the first claim: a start-up that adds no
        object or field (the usual one) never reads the database's names."""
        holders: dict[str, str] = {}
        for meta in self.catalog.objects.values():
            for name in storage.object_storage_names(meta.name):
                holders.setdefault(name, f"the object {meta.name}")
            for item in meta.all_fields.values():
                if not (item.standard or item.purged):
                    holder = f"the field {meta.name}.{item.name}"
                    for name in storage.field_storage_names(meta.name, item.name, item.type):
                        holders.setdefault(name, holder)
        return holders

    def claim_object(self, name: str) -> None:
        names = storage.object_storage_names(name)
        self._claim(names, f"the object {name}", f"The object {name!r}")

    def claim_field(self, object_name: str, item: FieldDefinition) -> None:
        names = storage.field_storage_names(object_name, item.name, item.type)
        holder = f"the field {object_name}.{item.name}"
        self._claim(names, holder, f"The field {item.name!r} of {object_name}")

    def _claim(self, names: set[str], holder: str, subject: str) -> None:
        for name in sorted(names):
            taken_by = self.holders.get(name)
            if taken_by is None and name in self.present:
                taken_by = "an existing table or index of the database"
            if taken_by not in (None, holder):
                raise DefinitionError(
                    f"{subject} cannot be stored: the name {name} it needs is already taken "
                    f"by {taken_by}; choose another name.",
                    "name",
                )
        for name in names:
            self.holders.setdefault(name, holder)


def _reconcile_indexes(meta: ObjectMeta, table: Table) -> None:
    """Drop the generated indexes the definitions no longer call for; create the missing."""
    connection = db.session.connection()
    stale, missing = storage.index_drift(connection, meta, table)
    for name in stale:
        storage.drop_index(connection, name)
    for index in missing:
        try:
            connection.execute(storage.CreateIndex(index))
        except SQLAlchemyError as exc:  # e.g. duplicates refuse a unique index
            raise _index_refused(meta, index.name, exc) from None


def _index_refused(meta: ObjectMeta, index_name: str, exc: Exception) -> DefinitionError:
    """Which field (and plugin) the database would not index, and why if it says."""
    for item in meta.all_fields.values():
        if not item.standard and index_name in storage.field_index_names(meta.name, item.name):
            owner = f", declared by the plugin {item.plugin}" if item.plugin else ""
            message = (
                f"The database refused to index {item.label} ({meta.name}.{item.name}){owner}, "
                f"so nothing was changed{_database_hint(exc)}."
            )
            if item.plugin:  # the plugin's declaration asks for it: hold that plugin back
                return DeclarationError(message, item.name, item.plugin)
            return DefinitionError(message, item.name)
    return DefinitionError(
        f"The database refused to index the records of {meta.name}, so nothing was "
        f"changed{_database_hint(exc)}."
    )


# --------------------------------------------------------------------------- plugin sync


@dataclasses.dataclass
class _Sync:
    """What syncing the plugins' declarations will write, gathered before writing any."""

    catalog: Catalog
    objects: dict[str, ObjectRow]
    fields: dict[tuple[str, str], FieldRow]
    names: _StorageNames
    #: Objects a field may point to: the stored ones and those declared now.
    known_objects: set[str]
    pending: list[Any] = dataclasses.field(default_factory=list)
    changes: list[str] = dataclasses.field(default_factory=list)
    #: (object, field) whose raised max_length may need a wider column.
    widen: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, item: Any, change: str) -> None:
        self.pending.append(item)
        self.changes.append(change)


@dataclasses.dataclass(frozen=True)
class _Declaring:
    """One plugin's object being synced, and what its fields are checked against."""

    plugin: str
    object_name: str
    field_names: set[str]
    formulas: dict[str, str]
    objects: set[str]

    def checked(self, name: str, make: Callable[[], FieldDefinition]) -> FieldDefinition:
        """The field ``name`` that ``make`` builds, if the admin path would accept it too."""
        try:
            item = make()
            _check_field(item, self.field_names, self.objects, self.formulas)
        except (ContributionError, DefinitionError) as exc:
            raise self.error(exc, name) from None
        return item

    def error(self, problem: Exception, field_name: str | None = None) -> DeclarationError:
        subject = self.object_name + (f".{field_name}" if field_name else "")
        return DeclarationError(
            f"The plugin {self.plugin} declares {subject} in a way that cannot be stored, so "
            f"its declarations were not synced: {problem} Correct or uninstall the plugin.",
            field_name,
            self.plugin,
        )


def sync_declared(
    declared: Mapping[str, tuple[str, ObjectDefinition]], *, hold: frozenset[str] = frozenset()
) -> list[str]:
    """Bring stored definitions and tables in step with what installed plugins declare.

    Returns a line per change (empty when nothing changed, in which case nothing is
    written and the revision stays). Fields a plugin stops declaring are removed
    (hidden, data kept); a changed storage setting (type, scale, ...) is kept as stored
    with a logged warning. A declaration that cannot be stored (an invalid field, a
    name whose tables or indexes would collide) raises a DefinitionError naming the
    plugin, and nothing is synced; so does an index the data refuses (duplicates).
    Plugins in ``hold`` are left out: their stored definitions stay exactly as they are.
    """
    declared = {name: pair for name, pair in declared.items() if pair[0] not in hold}
    sync = _start_sync(declared)
    for name, (plugin, definition) in declared.items():
        if _owned_elsewhere(sync.objects.get(name), name, plugin):
            continue
        declaring = _declaring(sync, name, plugin, definition)
        _plan_object(sync, declaring, definition)
        _plan_fields(sync, declaring, definition)
    _plan_retirements(sync, declared, hold)
    if not sync.changes and _tables_complete(sync.catalog):
        return []
    _run(lambda: _write_sync(sync))
    return sync.changes


def _start_sync(declared: Mapping[str, Any]) -> _Sync:
    catalog = _fresh_catalog()
    return _Sync(
        catalog=catalog,
        objects={row.name: row for row in db.session.scalars(select(ObjectRow))},
        fields={(row.object_name, row.name): row for row in db.session.scalars(select(FieldRow))},
        names=_StorageNames(catalog),
        known_objects=set(catalog.objects) | set(declared),
    )


def _owned_elsewhere(row: ObjectRow | None, name: str, plugin: str) -> bool:
    if row is None or row.plugin == plugin:
        return False
    owner = row.plugin or "an administrator"
    log.error(
        "Object %s is declared by %s but already belongs to %s; ignored.", name, plugin, owner
    )
    return True


def _declaring(sync: _Sync, name: str, plugin: str, definition: ObjectDefinition) -> _Declaring:
    """The context a plugin's fields are checked in: the object's fields after the sync."""
    meta = sync.catalog.objects.get(name)
    stored = meta.all_fields if meta else {}
    # Formulas administrators added stay beside the plugin's own; a cycle is refused.
    formulas = {n: f for n, f in (_formulas(meta) if meta else {}).items() if stored[n].custom}
    formulas |= {i.name: i.formula for i in definition.fields if i.type == "formula" and i.formula}
    names = set(stored) | {item.name for item in definition.fields}
    return _Declaring(plugin, name, names, formulas, sync.known_objects)


def _plan_object(sync: _Sync, declaring: _Declaring, definition: ObjectDefinition) -> None:
    name = declaring.object_name
    desired = {
        "plugin": declaring.plugin,
        "rules": _rules_json(definition.rules),
        "duplicate_keys": json.dumps([list(g) for g in definition.duplicate_keys]),
        "navigation": definition.navigation,
        "system_only": definition.system_only,
        "retired": False,
    }
    # How the object is presented: an administrator's edit of any of these ("relabelled")
    # outlives the plugin's next start.
    labels = {
        "label": definition.label,
        "label_plural": definition.label_plural,
        "name_field": definition.name_field,
        "icon": definition.icon,
        "description": definition.description,
    }
    row = sync.objects.get(name)
    if row is None:
        try:
            sync.names.claim_object(name)
        except DefinitionError as exc:
            raise declaring.error(exc) from None
        sync.add(ObjectRow(name=name, **desired, **labels), f"object {name} added")
        return
    wanted = desired | ({} if row.relabelled else labels)
    if any(getattr(row, k) != v for k, v in wanted.items()):
        sync.add((row, wanted), f"object {name} updated")


def _plan_fields(sync: _Sync, declaring: _Declaring, definition: ObjectDefinition) -> None:
    name, plugin = declaring.object_name, declaring.plugin
    for position, declared in enumerate(definition.fields):
        frow = sync.fields.get((name, declared.name))
        if frow is not None and frow.plugin != plugin:
            log.error("Field %s.%s belongs to someone else; ignored.", name, declared.name)
            continue
        if frow is not None and frow.status == "purged":
            continue
        item = _declared_field(declaring, declared, frow)
        values = _row_values(item) | {"position": position, "plugin": plugin, "status": "active"}
        if frow is None:
            try:
                sync.names.claim_field(name, item)
            except DefinitionError as exc:
                raise declaring.error(exc, item.name) from None
            sync.add(
                FieldRow(object_name=name, name=item.name, **values),
                f"field {name}.{item.name} added",
            )
            continue
        if frow.relabelled:
            for key in ADMIN_EDITABLE_DECLARED:
                values.pop(key, None)
        if any(getattr(frow, k) != v for k, v in values.items()):
            sync.add((frow, values), f"field {name}.{item.name} updated")
        if (item.max_length or 0) > (frow.max_length or 0):
            sync.widen.append((name, item.name))
    _plan_removals(sync, declaring, {item.name for item in definition.fields})


def _declared_field(
    declaring: _Declaring, declared: FieldDefinition, frow: FieldRow | None
) -> FieldDefinition:
    """The field as it will be stored: storage settings the plugin changed are kept.

    When the kept settings do not fit the plugin's other changes (a type kept as a
    picklist while the new code drops its options, say), the stored field stays as it
    was apart from its label, help text and section.
    """
    kept = _kept_settings(declaring, declared, frow) if frow is not None else {}
    if frow is None or not kept:
        return declaring.checked(declared.name, lambda: declared)
    try:
        return declaring.checked(declared.name, lambda: dataclasses.replace(declared, **kept))
    except DefinitionError as exc:
        log.warning(
            "Plugin %s: the other changes to %s.%s do not fit its stored settings (%s); only "
            "its label, help text and section are applied.",
            declaring.plugin,
            declaring.object_name,
            declared.name,
            exc,
        )
    return declaring.checked(declared.name, lambda: _stored_with_labels(frow, declared))


def _kept_settings(
    declaring: _Declaring, declared: FieldDefinition, frow: FieldRow
) -> dict[str, Any]:
    """Storage settings the plugin's new code changed, with their stored values."""
    kept: dict[str, Any] = {}
    for key, types in STORAGE_SETTINGS.items():
        stored, wanted = getattr(frow, key), getattr(declared, key)
        if stored == wanted or (types is not None and frow.type not in types):
            continue
        log.warning(
            "Plugin %s changed the %s of %s.%s from %r to %r; a plugin must migrate its "
            "data itself. The stored %s is kept.",
            declaring.plugin,
            key,
            declaring.object_name,
            declared.name,
            stored,
            wanted,
            key,
        )
        kept[key] = stored
    return kept


def _stored_with_labels(frow: FieldRow, declared: FieldDefinition) -> FieldDefinition:
    meta = field_meta_from_row(frow)
    spec = {key: getattr(meta, key) for key in SPEC_KEYS}
    return field_from_spec(spec | {key: getattr(declared, key) for key in DESCRIPTIVE})


def _plan_removals(sync: _Sync, declaring: _Declaring, declared_names: set[str]) -> None:
    for (object_name, field_name), frow in sync.fields.items():
        if (
            object_name == declaring.object_name
            and frow.plugin == declaring.plugin
            and field_name not in declared_names
            and frow.status == "active"
        ):
            sync.add(
                (frow, {"status": "removed", "removed_at": utcnow()}),
                f"field {object_name}.{field_name} removed (data kept)",
            )


def _plan_retirements(sync: _Sync, declared: Mapping[str, Any], hold: frozenset[str]) -> None:
    for name, row in sync.objects.items():
        if row.plugin in hold:
            continue
        if row.plugin is not None and name not in declared and not row.retired:
            sync.add((row, {"retired": True}), f"object {name} retired (data kept)")


def _write_sync(sync: _Sync) -> None:
    # Objects before their fields: the two tables have no ORM relationship to order them.
    for phase in (ObjectRow, FieldRow):
        for item in sync.pending:
            if isinstance(item, tuple):
                target, values = item
                for key, value in values.items():
                    setattr(target, key, value)
            elif isinstance(item, phase):
                db.session.add(item)
        db.session.flush()
    catalog = _fresh_catalog()
    for meta in sync.catalog.objects.values():  # a plugin's new version may add or drop one
        if meta.name in catalog.objects:
            _follow_blind_indexes(meta, catalog)
    _apply_storage(catalog)
    for object_name, field_name in sync.widen:
        meta = catalog.objects[object_name]
        storage.widen_text_column(db.session.connection(), meta, meta.all_fields[field_name])


def _tables_complete(catalog: Catalog) -> bool:
    """Whether every stored object has its table, columns and indexes, and no stale one."""
    connection = db.session.connection()
    present = storage.existing_tables(connection)
    for meta in catalog.objects.values():
        if meta.table_name not in present:
            return False
        table = catalog.table(meta.name)
        columns = storage.existing_columns(connection, meta.table_name)
        if any(c.name not in columns for c in table.columns):
            return False
        # A new version may back a field with a new index, or drop one.
        stale, missing = storage.index_drift(connection, meta, table)
        if stale or missing:
            return False
    return all(t.name in present for t in catalog.junctions.values())


def _follow_blind_indexes(before: ObjectMeta, catalog: Catalog) -> None:
    """Fill the digests of a blind index just turned on; drop the column of one turned off.

    The shadow column and its index of a new index exist already (``_apply_storage`` or
    ``add_field_storage``); existing values get their digests here, in batches, in the
    definition change's transaction, so lookups never see a half-built index.
    """
    after = catalog.objects[before.name]
    added, dropped = blind_index.changed_fields(before, after)
    connection = db.session.connection()
    table = catalog.table(after.name)
    for item in added:
        storage.add_blind_index_storage(connection, after, item)
        try:
            count = blind_index.fill(connection, after, item, table)
        except Undecryptable as exc:
            raise DefinitionError(
                f"{exc.message} Its blind index was not built.", "blind_index"
            ) from None
        log.info("Blind index of %s.%s built over %d values.", after.name, item.name, count)
    for item in dropped:
        storage.drop_blind_index_storage(connection, after, item.name)


def _apply_storage(catalog: Catalog) -> None:
    """Create missing tables; add missing columns and junction tables; reconcile indexes."""
    connection = db.session.connection()
    present = storage.existing_tables(connection)
    missing = [
        catalog.table(m.name) for m in catalog.objects.values() if m.table_name not in present
    ]
    missing += [t for t in catalog.junctions.values() if t.name not in present]
    if missing:
        catalog.metadata.create_all(connection, tables=missing)
    created = {table.name for table in missing}
    for meta in catalog.objects.values():
        if meta.table_name in created:
            continue
        columns = storage.existing_columns(connection, meta.table_name)
        for item in meta.all_fields.values():
            if not (item.standard or item.purged or not item.in_row) and item.name not in columns:
                storage.add_field_storage(connection, meta, item, catalog.tables)
        _reconcile_indexes(meta, catalog.table(meta.name))


# --------------------------------------------------------------------------- administrators


def _object_row(name: str) -> ObjectRow:
    row = db.session.get(ObjectRow, name)
    if row is None or row.retired:
        raise DefinitionError(f"There is no object {name!r}.")
    return row


def _field_row(object_name: str, field_name: str) -> FieldRow:
    row = db.session.scalar(
        select(FieldRow).where(FieldRow.object_name == object_name, FieldRow.name == field_name)
    )
    if row is None or row.status == "purged":
        raise DefinitionError(f"{object_name} has no field {field_name!r}.")
    return row


def _run(change: Any) -> Any:
    """Run a definition change in one transaction; roll everything back on any error."""
    try:
        _bump_revision()
        result = change()
        db.session.commit()
    except DefinitionError:
        db.session.rollback()
        raise
    except Exception as exc:  # DDL refused by the database, e.g. duplicates for unique
        db.session.rollback()
        log.warning("Definition change failed: %s", type(exc).__name__)
        raise DefinitionError(
            f"The database refused the change, so nothing was changed{_database_hint(exc)}."
        ) from None
    forget_catalog()
    return result


def _database_hint(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).lower()
    if "unique" in text or "duplicate" in text:
        return ": existing records have the same value twice, so it cannot be unique"
    return ""


def add_field(object_name: str, spec: Mapping[str, Any]) -> FieldMeta:
    """Add a custom field to any object; returns its definition."""
    item = field_from_spec(spec)
    check_applicable(item.type, spec)
    _refuse_read_only(item)

    def change() -> FieldMeta:
        _object_row(object_name)
        catalog = _fresh_catalog()
        meta = catalog.get(object_name)
        if item.name in meta.all_fields:
            existing = meta.all_fields[item.name]
            if existing.purged:
                raise DefinitionError(
                    f"{meta.label} had a field {item.name!r} that was purged; its name cannot "
                    "be used again — choose another name.",
                    "name",
                )
            state = " (removed; restore or purge it first)" if existing.removed else ""
            raise DefinitionError(f"{meta.label} already has a field {item.name!r}{state}.", "name")
        _check_field(item, set(meta.all_fields), set(catalog.objects), _formulas(meta))
        _StorageNames(catalog).claim_field(object_name, item)
        position = max((f.position for f in meta.all_fields.values()), default=0) + 1
        row = FieldRow(
            object_name=object_name,
            name=item.name,
            plugin=None,
            status="active",
            position=position,
            **_row_values(item),
        )
        db.session.add(row)
        db.session.flush()
        fresh = _fresh_catalog()
        storage.add_field_storage(
            db.session.connection(), fresh.get(object_name), field_meta_from_row(row), fresh.tables
        )
        return field_meta_from_row(row)

    return _run(change)


def _refuse_read_only(item: FieldDefinition) -> None:
    """Only a plugin's code can fill a read-only field; an administrator's would stay empty."""
    if item.read_only:
        raise DefinitionError(
            f"{item.label}: only a plugin's field can be read-only. To keep users from "
            "changing a field, make it read-only in their roles' field access.",
            "read_only",
        )


def create_object(spec: Mapping[str, Any]) -> ObjectMeta:
    """Create a custom object with its fields (lookups may point at itself)."""
    if not isinstance(spec, Mapping):
        raise DefinitionError("An object is described by a JSON object.")
    unknown = set(spec) - OBJECT_SPEC_KEYS
    if unknown:
        raise DefinitionError(
            f"Unknown object settings: {', '.join(sorted(unknown))}.", sorted(unknown)[0]
        )
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{1,39}", name) or "__" in name:
        raise DefinitionError(
            "An object's API name is plural snake_case of 2 to 40 characters, such as 'projects'.",
            "name",
        )
    if name in RESERVED_OBJECTS:
        raise DefinitionError(f"{name!r} is reserved; choose another API name.", "name")
    label = str(spec.get("label") or "").strip()
    plural = str(spec.get("label_plural") or "").strip() or (label + "s" if label else "")
    if not label:
        raise DefinitionError("An object needs a label.", "label")
    raw_fields = spec.get("fields") or []
    if not isinstance(raw_fields, list):
        raise DefinitionError("fields is a list of field descriptions.", "fields")
    items = [field_from_spec(raw) for raw in raw_fields]
    for raw, item in zip(raw_fields, items, strict=True):
        check_applicable(item.type, raw)
        _refuse_read_only(item)
    rules = _rules_from(spec.get("rules") or [])
    _check_object_texts(spec)
    try:
        definition = ObjectDefinition(
            name=name,
            label=label[:100],
            label_plural=plural[:100],
            fields=tuple(items),
            icon=str(spec.get("icon") or ""),
            name_field=spec.get("name_field") or (items[0].name if items else None),
            description=str(spec.get("description") or ""),
            rules=rules,
        )
    except ContributionError as exc:
        raise DefinitionError(str(exc), exc.setting or "fields") from None

    def change() -> ObjectMeta:
        if db.session.get(ObjectRow, name) is not None:
            raise DefinitionError(f"An object named {name!r} already exists.", "name")
        catalog = _fresh_catalog()
        taken = _StorageNames(catalog)
        taken.claim_object(name)
        names = {item.name for item in items}
        formulas = {i.name: i.formula for i in items if i.type == "formula" and i.formula}
        for item in items:
            _check_field(item, names, set(catalog.objects) | {name}, formulas)
            taken.claim_field(name, item)
        db.session.add(
            ObjectRow(
                name=name,
                label=definition.label,
                label_plural=definition.label_plural,
                icon=definition.icon,
                description=definition.description,
                plugin=None,
                name_field=definition.name_field,
                rules="[]",
                admin_rules=_rules_json(definition.rules),
                duplicate_keys="[]",
                sensitive=False,
                retired=False,
                relabelled=False,
            )
        )
        db.session.flush()
        for position, item in enumerate(items):
            db.session.add(
                FieldRow(
                    object_name=name,
                    name=item.name,
                    plugin=None,
                    status="active",
                    position=position,
                    **_row_values(item),
                )
            )
        db.session.flush()
        fresh = _fresh_catalog()
        _apply_storage(fresh)
        return fresh.get(name)

    return _run(change)


def _rules_from(raw: Any) -> tuple[ValidationRule, ...]:
    if not isinstance(raw, list):
        raise DefinitionError("rules is a list of {name, check, message, field}.", "rules")
    rules = []
    for item in raw:
        if not isinstance(item, Mapping) or set(item) - {"name", "check", "message", "field"}:
            raise DefinitionError("Each rule has name, check, message and optionally field.")
        try:
            rules.append(ValidationRule(**item))
        except (ContributionError, TypeError) as exc:
            raise DefinitionError(str(exc), "rules") from None
    return tuple(rules)


PRESENTATION_KEYS = frozenset({"label", "label_plural", "icon", "description", "name_field"})


def update_object(object_name: str, changes: Mapping[str, Any]) -> ObjectMeta:
    """Relabel an object, change its name field, description, icon or rules."""
    allowed = {"label", "label_plural", "icon", "description", "name_field", "rules", "sensitive"}
    unknown = set(changes) - allowed
    if unknown:
        raise DefinitionError(
            f"These cannot be changed: {', '.join(sorted(unknown))}.", sorted(unknown)[0]
        )
    _check_object_texts(changes)

    def change() -> ObjectMeta:
        row = _object_row(object_name)
        meta = _fresh_catalog().get(object_name)
        if set(changes) & PRESENTATION_KEYS:
            row.relabelled = True  # kept over the plugin's declaration from now on
        for key, value in changes.items():
            if key in {"label", "label_plural"}:
                if not isinstance(value, str) or not value.strip():
                    raise DefinitionError(f"{key} cannot be empty.", key)
                setattr(row, key, value.strip()[:100])
            elif key == "name_field":
                if value is not None and (
                    not isinstance(value, str) or value not in meta.declared_fields
                ):
                    raise DefinitionError(f"{meta.label} has no field {value!r}.", key)
                row.name_field = value
            elif key == "rules":  # the administrators' rules; the code's stay as declared
                rules = _rules_from(value)
                names = [rule.name for rule in (*meta.declared_rules, *rules)]
                if len(set(names)) != len(names):
                    raise DefinitionError("Each rule of an object needs its own name.", "rules")
                for rule in rules:
                    try:
                        check_formula(rule.check, set(meta.all_fields))
                    except FormulaError as exc:
                        raise DefinitionError(f"Rule {rule.name}: {exc}", "rules") from None
                row.admin_rules = _rules_json(rules)
            elif key == "sensitive":
                if not isinstance(value, bool):
                    raise DefinitionError("sensitive must be true or false.", key)
                row.sensitive = value
            else:
                setattr(row, key, str(value or "")[:2000])
        db.session.flush()
        fresh = _fresh_catalog()
        if "name_field" in changes:  # the name field's sorting indexes follow it
            _reconcile_indexes(fresh.get(object_name), fresh.table(object_name))
        return fresh.get(object_name)

    return _run(change)


def update_field(object_name: str, field_name: str, changes: Mapping[str, Any]) -> FieldMeta:
    """Change a field's settings; a plugin's field only takes label, help, section, order."""

    toggled: list[bool] = []

    def change() -> FieldMeta:
        row = _field_row(object_name, field_name)
        if row.status != "active":
            raise DefinitionError(f"{row.label} is removed; restore it first.")
        allowed = ADMIN_EDITABLE_CUSTOM if row.plugin is None else ADMIN_EDITABLE_DECLARED
        refused = set(changes) - allowed
        if refused:
            owner = "this custom field" if row.plugin is None else f"a field of {row.plugin}"
            raise DefinitionError(
                f"These settings of {owner} cannot be changed: {', '.join(sorted(refused))}.",
                sorted(refused)[0],
            )
        before = field_meta_from_row(row)
        check_applicable(before.type, changes)
        spec = {k: getattr(before, k) for k in SPEC_KEYS if hasattr(before, k)}
        spec.update(changes)
        if "encrypted" in changes and changes["encrypted"] != before.encrypted:
            _encryption_toggle(before, changes, spec)
        item = field_from_spec(spec)
        meta = _fresh_catalog().get(object_name)
        _check_field(item, set(meta.all_fields), set(_fresh_catalog().objects), _formulas(meta))
        values = _row_values(item)
        if "position" in changes:
            if type(changes["position"]) is not int:
                raise DefinitionError("position must be a whole number.", "position")
            values["position"] = changes["position"]
        if row.plugin is not None and ({"label", "help_text"} & set(changes)):
            row.relabelled = True
        for key, value in values.items():
            setattr(row, key, value)
        db.session.flush()
        after = field_meta_from_row(row)
        if after.max_length != before.max_length:
            storage.widen_text_column(db.session.connection(), meta, after)
        if (before.unique, before.indexed) != (after.unique, after.indexed) and after.in_row:
            fresh = _fresh_catalog()
            _reconcile_indexes(fresh.get(object_name), fresh.table(object_name))
        if blind_index.has_index(before) != blind_index.has_index(after):
            _follow_blind_indexes(meta, _fresh_catalog())
        if after.encrypted != before.encrypted:
            from bastion.keys import fields as key_fields

            if after.encrypted:
                key_fields.prepare_column(db.session.connection(), meta.table_name, after.name)
            key_fields.plan(object_name, field_name, encrypt=after.encrypted)
            toggled.append(True)
        return after

    result = _run(change)
    if toggled:
        from bastion.keys import fields as key_fields

        key_fields.start_background()
    return result


def _encryption_toggle(before: FieldMeta, changes: Mapping[str, Any], spec: dict) -> None:
    """Adjust a field turning encrypted (or plain): what ciphertext cannot have goes."""
    from bastion.keys.fields import toggle_problem

    if not isinstance(changes["encrypted"], bool):
        raise DefinitionError("encrypted must be true or false.", "encrypted")
    problem = toggle_problem(before.label, before.type)
    if problem:
        raise DefinitionError(problem, "encrypted")
    if changes["encrypted"]:
        if changes.get("blind_index"):
            raise DefinitionError(
                f"{before.label}: turn the blind index on once the existing values are "
                "encrypted (see `bastion keys status`).",
                "blind_index",
            )
        # Ciphertext cannot be unique, indexed or searchable: those settings go, unless
        # the change asks for them too (then it is refused as a contradiction).
        for key in ("unique", "indexed", "searchable"):
            if key not in changes:
                spec[key] = False
    elif "blind_index" not in changes:
        spec["blind_index"] = False


def remove_field(object_name: str, field_name: str) -> None:
    """Hide a custom field everywhere; its column and data stay until purged."""

    def change() -> None:
        row = _field_row(object_name, field_name)
        if row.plugin is not None:
            raise DefinitionError(
                f"{row.label} belongs to the plugin {row.plugin}; disable the plugin instead."
            )
        if row.status != "active":
            raise DefinitionError(f"{row.label} is already removed.")
        obj = _object_row(object_name)
        if obj.name_field == field_name:
            raise DefinitionError(
                f"{row.label} names the records of {obj.label_plural}; choose another name "
                "field first."
            )
        row.status = "removed"
        row.removed_at = utcnow()

    _run(change)


def restore_field(object_name: str, field_name: str) -> None:
    def change() -> None:
        row = _field_row(object_name, field_name)
        if row.status != "removed":
            raise DefinitionError(f"{row.label} is not removed.")
        row.status = "active"
        row.removed_at = None

    _run(change)


def purge_field(object_name: str, field_name: str) -> None:
    """Erase a removed field's data for good (its column too where the database can)."""

    def change() -> None:
        row = _field_row(object_name, field_name)
        if row.status != "removed":
            raise DefinitionError(f"Remove {row.label} before purging it.")
        catalog = _fresh_catalog()
        meta = catalog.objects[object_name]
        storage.purge_field_storage(db.session.connection(), meta, meta.all_fields[field_name])
        row.status = "purged"

    _run(change)


def definition_as_json(meta: FieldMeta) -> dict[str, Any]:
    """A field's definition for the meta API and the admin pages."""
    data = {
        "name": meta.name,
        "label": meta.label,
        "type": meta.type,
        "help_text": meta.help_text,
        "required": meta.required,
        "unique": meta.unique,
        "indexed": meta.indexed,
        "searchable": meta.searchable,
        "encrypted": meta.encrypted,
        "blind_index": meta.blind_index,
        "personal_data": meta.personal_data,
        "read_only": meta.read_only or not meta.writable,
        "standard": meta.standard,
        "custom": meta.custom,
        "plugin": meta.plugin,
        "section": meta.section,
    }
    if meta.default is not None:
        data["default"] = meta.default
    if meta.options:
        data["options"] = list(meta.options)
    if meta.target:
        data["target"] = meta.target
    if meta.type == "lookup" and not meta.standard:
        data["on_delete"] = meta.on_delete
    if meta.max_length is not None:
        data["max_length"] = meta.max_length
    if meta.min_value is not None:
        data["min_value"] = str(meta.min_value)
    if meta.max_value is not None:
        data["max_value"] = str(meta.max_value)
    if meta.pattern:
        data["pattern"] = meta.pattern
    if meta.type == "formula":
        data["formula"] = meta.formula
        data["formula_type"] = meta.formula_type
    if meta.type in {"decimal", "currency", "percent"}:
        data["scale"] = meta.scale
    if meta.type == "currency":
        data["currency"] = meta.currency
    if meta.type == "auto_number":
        data["format"] = meta.format
    return data
