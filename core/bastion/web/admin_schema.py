"""Administration of the data model: objects, their fields and validation rules, without code.

Every change goes through :mod:`bastion.data.definitions`, the same functions the meta
API uses, so a form and a JSON body are checked alike and a refused change leaves the
definitions and the tables as they were. Each change is its own POST (CSRF-protected),
needs ``admin.schema``, is audited without any record values, and is seen by every
server process on its next request (the catalog revision). Purging a field's data needs
a recent re-authentication and a typed confirmation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from bastion import audit
from bastion.access import requires
from bastion.data import definitions
from bastion.data.catalog import FieldMeta, ObjectMeta, UnknownObject, current_catalog
from bastion.data.definitions import (
    ADMIN_EDITABLE_CUSTOM,
    ADMIN_EDITABLE_DECLARED,
    ENCRYPTABLE,
    DefinitionError,
)
from bastion.data.requests import forget_request_service
from bastion.plugins.contributions import FORMULA_TYPES, STANDARD_FIELD_NAMES
from bastion.plugins.registry import CORE
from bastion.reauth import recent_auth_required
from bastion.runtime import platform

bp = Blueprint("admin_schema", __name__, url_prefix="/admin/objects")
PERMISSION = "admin.schema"

#: Field types in the order the "Type" select offers them, with what people call them.
TYPE_CHOICES: tuple[tuple[str, str], ...] = (
    ("text", "Text"),
    ("long_text", "Long text"),
    ("email", "Email address"),
    ("phone", "Phone number"),
    ("url", "Web address"),
    ("integer", "Whole number"),
    ("decimal", "Decimal number"),
    ("currency", "Currency amount"),
    ("percent", "Percent"),
    ("date", "Date"),
    ("datetime", "Date and time"),
    ("boolean", "Yes / no"),
    ("picklist", "Picklist (one choice)"),
    ("multi_picklist", "Multi-select picklist"),
    ("lookup", "Lookup (link to one record)"),
    ("many_to_many", "Many-to-many (links to several records)"),
    ("auto_number", "Auto-number"),
    ("formula", "Formula (computed)"),
    ("record_link", "Link to a record of any object"),
)
TYPE_LABELS = dict(TYPE_CHOICES)
#: The settings each type takes besides the common ones, in the order the form shows them.
TYPE_INPUTS = definitions.TYPE_SETTINGS
#: Types without a default value: links, computed values.
NO_DEFAULT = frozenset({"lookup", "many_to_many", "record_link", "formula", "auto_number"})
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("required", "Required", "Every record must have a value."),
    ("unique", "Unique", "No two records may have the same value."),
    ("indexed", "Indexed", "Faster filters and sorting on large lists."),
    ("searchable", "Searchable", "Found by the global search."),
    ("encrypted", "Encrypted", "Stored encrypted; cannot be unique, indexed or searchable."),
    (
        "blind_index",
        "Blind index",
        "Encrypted text, email, phone, web address or whole number: find records by the "
        "exact value (filters, import keys) without decrypting.",
    ),
    ("personal_data", "Personal data", "Included in personal-data exports and erasure."),
)
FLAG_NAMES = tuple(name for name, _label, _hint in FLAGS)
COMMON_INPUTS = frozenset({"name", "label", "type", "help_text", "section", "default", "position"})
ON_DELETE_CHOICES = (
    ("restrict", "Refuse to delete a record that is linked"),
    ("clear", "Clear the link"),
)
_API_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")


# --------------------------------------------------------------------------- helpers


def api_name(text: str, limit: int = 50) -> str:
    """A snake_case API name suggested from a label ("Project tasks" -> "project_tasks")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if name and not name[0].isalpha():
        name = f"x_{name}"
    return name[:limit].rstrip("_")


def _meta_or_404(name: str) -> ObjectMeta:
    try:
        return current_catalog().get(name)
    except UnknownObject:
        abort(404)


def _field_or_404(meta: ObjectMeta, field_name: str, *, removed: bool | None = None) -> FieldMeta:
    item = meta.all_fields.get(field_name)
    if item is None or item.purged or item.standard:
        abort(404)
    if removed is not None and item.removed != removed:
        abort(404)
    return item


def owner_label(plugin: str | None) -> str:
    if plugin is None:
        return "Custom"
    if plugin == CORE:
        return "Base"
    found = platform().registry.plugins.get(plugin)
    return found.label if found is not None else plugin


def field_source(item: FieldMeta) -> str:
    if item.standard:
        return "Standard"
    return "Custom" if item.plugin is None else f"Plugin: {owner_label(item.plugin)}"


def _text(value: Any) -> str:
    """A setting as the form shows it, so a submitted form compares equal when unchanged."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _after_change(action: str, object_name: str, changes: Mapping[str, Any]) -> None:
    # Definitions only: labels and settings, never a record's values.
    audit.record(f"schema.{action}", object_type=object_name, changes=dict(changes))
    forget_request_service()


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: {"before": _text(before.get(key)), "after": _text(value)}
        for key, value in after.items()
        if _text(before.get(key)) != _text(value)
    }


# --------------------------------------------------------------------------- objects


def _object_rows() -> list[dict[str, Any]]:
    catalog = current_catalog()
    rows = []
    for meta in sorted(catalog.objects.values(), key=lambda m: m.label_plural.lower()):
        rows.append(
            {
                "meta": meta,
                "owner": owner_label(meta.plugin),
                "fields": len(meta.declared_fields),
            }
        )
    return rows


def _render_objects(form: Mapping[str, Any] | None = None, errors: dict[str, str] | None = None):
    status = 422 if errors else 200
    return render_template(
        "admin/objects.html",
        rows=_object_rows(),
        form=form or {"name_field_label": "Name", "name_field_required": True},
        errors=errors or {},
    ), status


@bp.get("")
@requires(PERMISSION)
def objects():
    return _render_objects()


@bp.post("")
@requires(PERMISSION)
def create_object():
    form = request.form
    values: dict[str, Any] = {
        key: form.get(key, "").strip()
        for key in ("label", "label_plural", "name", "icon", "description", "name_field_label")
    }
    values["name_field_name"] = form.get("name_field_name", "").strip()
    values["name_field_required"] = form.get("name_field_required") == "on"
    errors: dict[str, str] = {}
    if not values["label"]:
        errors["label"] = "Enter a label for one record, such as “Project”."
    name = values["name"] or api_name(values["label_plural"] or values["label"], 40)
    field_label = values["name_field_label"]
    field_name = values["name_field_name"] or api_name(field_label)
    if not field_label:
        errors["name_field_label"] = "The name field needs a label, such as “Name”."
    if (field_label or field_name) and (problem := _api_name_problem(field_name)) is not None:
        errors["name_field_name"] = problem
    if len(values["icon"]) > 40:
        errors["icon"] = "An icon name has at most 40 characters."
    if errors:
        return _render_objects(values, errors)
    spec = {
        "name": name,
        "label": values["label"],
        "label_plural": values["label_plural"],
        "icon": values["icon"],
        "description": values["description"],
        "name_field": field_name,
        "fields": [
            {
                "name": field_name,
                "label": field_label,
                "type": "text",
                "required": values["name_field_required"],
            }
        ],
    }
    try:
        meta = definitions.create_object(spec)
    except DefinitionError as exc:
        key = exc.field if exc.field in {"name", "label", "label_plural"} else ""
        return _render_objects(values | {"name": name}, {key: str(exc)})
    _after_change(
        "object_create",
        meta.name,
        {
            "label": meta.label,
            "label_plural": meta.label_plural,
            "name_field": field_name,
            "fields": [field_name],
        },
    )
    flash(f"{meta.label_plural} created. Add their fields below.", "success")
    return redirect(url_for("admin_schema.object_page", name=meta.name))


def _api_name_problem(name: str) -> str | None:
    if not name:
        return "Enter an API name in snake_case, such as “loyalty_tier”."
    if not _API_NAME.match(name) or "__" in name or len(name) > 50:
        return (
            "An API name is snake_case (lower-case letters, digits and single underscores, "
            "starting with a letter), at most 50 characters."
        )
    if name in STANDARD_FIELD_NAMES:
        return f"“{name}” is a standard field every object already has; choose another API name."
    return None


def _field_rows(meta: ObjectMeta) -> list[dict[str, Any]]:
    rows = []
    for item in meta.all_fields.values():
        if item.purged:
            continue
        flags = [label for name, label, _hint in FLAGS if getattr(item, name)]
        rows.append(
            {
                "item": item,
                "type": _type_description(item),
                "flags": flags,
                "source": field_source(item),
                "editable": not item.standard and not item.removed,
                "removable": item.custom and not item.removed and item.name != meta.name_field,
            }
        )
    return rows


def _type_description(item: FieldMeta) -> str:
    # The table shows the short name: "Lookup", not "Lookup (link to one record)".
    label = TYPE_LABELS.get(item.type, item.type).split(" (")[0]
    if item.type in {"lookup", "many_to_many"} and item.target:
        target = current_catalog().objects.get(item.target)
        return f"{label} → {target.label if target else item.target}"
    if item.type == "formula":
        return f"{label}: {TYPE_LABELS.get(item.formula_type, item.formula_type).lower()}"
    return label


def _render_object(
    meta: ObjectMeta,
    *,
    status: int = 200,
    settings_form: Mapping[str, Any] | None = None,
    settings_errors: dict[str, str] | None = None,
    rule_form: Mapping[str, Any] | None = None,
    rule_errors: dict[str, str] | None = None,
    rule_key: str | None = None,
):
    settings = settings_form or {
        "label": meta.label,
        "label_plural": meta.label_plural,
        "icon": meta.icon,
        "description": meta.description,
        "name_field": meta.name_field or "",
        "sensitive": meta.sensitive,
    }
    rows = _field_rows(meta)
    return render_template(
        "admin/objects_detail.html",
        meta=meta,
        owner=owner_label(meta.plugin),
        rows=rows,
        removed=[row for row in rows if row["item"].removed],
        settings=settings,
        settings_errors=settings_errors or {},
        name_choices=list(meta.declared_fields.values()),
        rule_form=rule_form or {},
        rule_errors=rule_errors or {},
        rule_key=rule_key,
        rule_fields=list(meta.declared_fields.values()),
    ), status


@bp.get("/<name>")
@requires(PERMISSION)
def object_page(name: str):
    return _render_object(_meta_or_404(name))


@bp.post("/<name>")
@requires(PERMISSION)
def update_object(name: str):
    meta = _meta_or_404(name)
    form = request.form
    submitted: dict[str, Any] = {
        "label": form.get("label", "").strip(),
        "label_plural": form.get("label_plural", "").strip(),
        "sensitive": form.get("sensitive") == "on",
    }
    if meta.custom:
        # A plugin's object keeps its icon, description and name field from its code.
        submitted |= {
            "icon": form.get("icon", "").strip(),
            "description": form.get("description", "").strip(),
            "name_field": form.get("name_field", "") or None,
        }
    current = {
        "label": meta.label,
        "label_plural": meta.label_plural,
        "sensitive": meta.sensitive,
        "icon": meta.icon,
        "description": meta.description,
        "name_field": meta.name_field,
    }
    changes = {k: v for k, v in submitted.items() if _text(current.get(k)) != _text(v)}
    errors: dict[str, str] = {}
    if len(submitted.get("icon") or "") > 40:
        errors["icon"] = "An icon name has at most 40 characters."
    for key in ("label", "label_plural"):
        if not submitted[key]:
            errors[key] = "Enter a label; it cannot be empty."
    if not errors and changes:
        try:
            definitions.update_object(name, changes)
        except DefinitionError as exc:
            errors[exc.field if exc.field in submitted else ""] = str(exc)
    if errors:
        return _render_object(
            meta, status=422, settings_form=current | submitted, settings_errors=errors
        )
    if changes:
        _after_change("object_update", name, _diff(current, changes))
        flash("Saved the object's settings.", "success")
    else:
        flash("Nothing changed.", "success")
    return redirect(url_for("admin_schema.object_page", name=name))


# --------------------------------------------------------------------------- rules


def _rules_as_dicts(meta: ObjectMeta) -> list[dict[str, Any]]:
    return [
        {"name": r.name, "check": r.check, "message": r.message, "field": r.field}
        for r in meta.admin_rules
    ]


def _read_rule(meta: ObjectMeta, others: list[dict[str, Any]]) -> tuple[dict, dict[str, str]]:
    form = request.form
    rule = {
        "name": form.get("rule_name", "").strip(),
        "check": form.get("check", "").strip(),
        "message": form.get("message", "").strip(),
        "field": form.get("field", "") or None,
    }
    errors: dict[str, str] = {}
    if not _RULE_NAME.match(rule["name"]):
        errors["rule_name"] = "A rule's name is snake_case, such as “close_after_start”."
    elif any(other["name"] == rule["name"] for other in others) or any(
        declared.name == rule["name"] for declared in meta.declared_rules
    ):
        errors["rule_name"] = f"There is already a rule named “{rule['name']}”."
    if not rule["check"]:
        errors["check"] = "Enter the condition a valid record meets, such as “amount > 0”."
    if not rule["message"]:
        errors["message"] = "Enter the message people see when a record breaks the rule."
    if rule["field"] is not None and rule["field"] not in meta.declared_fields:
        errors["field"] = f"{meta.label} has no field “{rule['field']}”."
    return rule, errors


def _save_rules(
    meta: ObjectMeta,
    rules: list[dict[str, Any]],
    rule: dict[str, Any] | None,
    errors: dict[str, str],
    key: str,
    action: str,
    audit_changes: dict[str, Any],
):
    if not errors:
        try:
            definitions.update_object(meta.name, {"rules": rules})
        except DefinitionError as exc:
            # The only check left to the definitions is the formula's: it is the "check".
            errors["check" if exc.field == "rules" else ""] = str(exc)
    if errors:
        form = {**(rule or {}), "rule_name": (rule or {}).get("name", "")}
        return _render_object(meta, status=422, rule_form=form, rule_errors=errors, rule_key=key)
    _after_change(action, meta.name, audit_changes)
    flash("Saved the validation rules.", "success")
    return redirect(url_for("admin_schema.object_page", name=meta.name, _anchor="rules"))


@bp.post("/<name>/rules")
@requires(PERMISSION)
def add_rule(name: str):
    meta = _meta_or_404(name)
    rules = _rules_as_dicts(meta)
    rule, errors = _read_rule(meta, rules)
    return _save_rules(meta, [*rules, rule], rule, errors, "new", "rule_add", {"rule": rule})


def _rule_index(meta: ObjectMeta, rule_name: str) -> int:
    for index, rule in enumerate(meta.admin_rules):
        if rule.name == rule_name:
            return index
    abort(404)


@bp.post("/<name>/rules/<rule_name>")
@requires(PERMISSION)
def update_rule(name: str, rule_name: str):
    meta = _meta_or_404(name)
    index = _rule_index(meta, rule_name)
    rules = _rules_as_dicts(meta)
    before = rules.pop(index)
    rule, errors = _read_rule(meta, rules)
    rules.insert(index, rule)
    return _save_rules(
        meta, rules, rule, errors, rule_name, "rule_update", {"rule": _diff(before, rule)}
    )


@bp.post("/<name>/rules/<rule_name>/delete")
@requires(PERMISSION)
def delete_rule(name: str, rule_name: str):
    meta = _meta_or_404(name)
    index = _rule_index(meta, rule_name)
    rules = _rules_as_dicts(meta)
    removed = rules.pop(index)
    return _save_rules(meta, rules, None, {}, rule_name, "rule_delete", {"rule": removed})


# --------------------------------------------------------------------------- fields: forms


def _target_choices() -> list[ObjectMeta]:
    return sorted(current_catalog().active(), key=lambda m: m.label.lower())


def _form_context(meta: ObjectMeta) -> dict[str, Any]:
    return {
        "meta": meta,
        "type_choices": TYPE_CHOICES,
        "type_labels": TYPE_LABELS,
        "type_inputs": TYPE_INPUTS,
        "no_default": NO_DEFAULT,
        "flags": FLAGS,
        "targets": _target_choices(),
        "on_delete_choices": ON_DELETE_CHOICES,
        "formula_types": sorted(FORMULA_TYPES),
        "encryptable": ENCRYPTABLE,
    }


def _whole_number(
    raw: str, key: str, label: str, errors: dict[str, str], low: int, high: int
) -> int | None:
    if not raw:
        return None
    if not re.fullmatch(r"\d{1,9}", raw) or not low <= int(raw) <= high:
        errors[key] = f"{label} must be a whole number from {low} to {high}."
        return None
    return int(raw)


def read_field_form(
    form: MultiDict, field_type: str, editable: frozenset[str] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(spec for the definitions, values to show again, errors by input name).

    ``editable`` None reads a new field; otherwise only the settings that may change.
    The checks here are those the form can name an input for; the rest is the
    definitions' (a DefinitionError names its key).
    """
    allowed = (
        COMMON_INPUTS | set(FLAG_NAMES) | set(TYPE_INPUTS.get(field_type, ()))
        if editable is None
        else editable
    )
    shown: dict[str, Any] = {key: form.get(key, "").strip() for key in form if key in allowed}
    spec: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def want(key: str) -> bool:
        return key in allowed and (
            key in COMMON_INPUTS or key in FLAG_NAMES or key in TYPE_INPUTS.get(field_type, ())
        )

    if editable is None:
        spec["type"] = field_type
        shown["name"] = shown.get("name") or api_name(shown.get("label", ""))
        if (problem := _api_name_problem(shown["name"])) is not None:
            errors["name"] = problem
        spec["name"] = shown["name"]
    if want("label"):
        spec["label"] = shown.get("label", "")
        if not spec["label"]:
            errors["label"] = "Enter a label: what people see beside the value."
    for key, limit in (("help_text", 2000), ("section", 60)):
        if want(key):
            spec[key] = shown.get(key, "")
            if len(spec[key]) > limit:
                errors[key] = f"At most {limit} characters."
    for key in FLAG_NAMES:
        if want(key):
            spec[key] = shown[key] = form.get(key) == "on"
    if want("default") and field_type not in NO_DEFAULT:
        spec["default"] = shown.get("default") or None
    if want("position"):
        position = _whole_number(shown.get("position", ""), "position", "Position", errors, 0, 9999)
        if position is not None:
            spec["position"] = position
    if want("options"):
        options = [line.strip() for line in shown.get("options", "").splitlines() if line.strip()]
        if not options:
            errors["options"] = "Enter the choices, one per line."
        spec["options"] = options
    if want("target"):
        spec["target"] = shown.get("target", "")
        if not spec["target"]:
            errors["target"] = "Choose the object the field points to."
    if want("on_delete"):
        spec["on_delete"] = shown.get("on_delete") or "restrict"
    if want("max_length"):
        spec["max_length"] = _whole_number(
            shown.get("max_length", ""),
            "max_length",
            "Maximum length",
            errors,
            1,
            definitions.MAX_LENGTH_LIMIT,
        )
    if want("scale"):
        scale = _whole_number(shown.get("scale", ""), "scale", "Decimal places", errors, 0, 8)
        spec["scale"] = 2 if scale is None else scale
    for key in ("min_value", "max_value"):
        if want(key):
            spec[key] = shown.get(key) or None
    if want("pattern"):
        pattern = shown.get("pattern") or None
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors["pattern"] = f"This is not a valid regular expression: {exc}."
        spec["pattern"] = pattern
    if want("currency"):
        spec["currency"] = shown["currency"] = (shown.get("currency") or "EUR").upper()
        if not re.fullmatch(r"[A-Z]{3}", spec["currency"]):
            errors["currency"] = "Enter a three-letter ISO 4217 code, such as EUR or USD."
    if want("format"):
        spec["format"] = shown.get("format") or "{0}"
        if not re.search(r"\{0+\}", spec["format"]) or len(spec["format"]) > 60:
            errors["format"] = "The format needs a {0000} placeholder, such as “INV-{00000}”."
    if want("formula"):
        spec["formula"] = shown.get("formula") or None
        if not spec["formula"]:
            errors["formula"] = "Enter the formula, such as “amount * 2”."
    if want("formula_type"):
        spec["formula_type"] = shown.get("formula_type") or "text"
    return spec, shown, errors


def _place_error(exc: DefinitionError, inputs: set[str]) -> dict[str, str]:
    """An error from the definitions beside its input, or above the form."""
    return {exc.field if exc.field in inputs else "": str(exc)}


def _shown_inputs(field_type: str, editable: frozenset[str] | None) -> set[str]:
    inputs = COMMON_INPUTS | set(FLAG_NAMES) | set(TYPE_INPUTS.get(field_type, ()))
    return inputs if editable is None else inputs & set(editable)


# --------------------------------------------------------------------------- fields: pages


def _render_new_field(meta: ObjectMeta, form: Mapping[str, Any], errors: dict[str, str]):
    return render_template(
        "admin/fields_form.html",
        item=None,
        form=form,
        errors=errors,
        field_type=form.get("type", ""),
        editable=None,
        **_form_context(meta),
    ), (422 if errors else 200)


@bp.get("/<name>/fields/new")
@requires(PERMISSION)
def new_field(name: str):
    meta = _meta_or_404(name)
    field_type = request.args.get("type", "")
    form = {"type": field_type if field_type in TYPE_LABELS else ""}
    return _render_new_field(meta, form, {})


@bp.get("/<name>/fields/inputs")
@requires(PERMISSION)
def field_type_inputs(name: str):
    """The settings of the chosen type, swapped into the form by htmx."""
    meta = _meta_or_404(name)
    field_type = request.args.get("type", "")
    if field_type not in TYPE_LABELS:
        field_type = ""
    return render_template(
        "admin/fields_type_inputs.html",
        item=None,
        form={"type": field_type},
        errors={},
        field_type=field_type,
        editable=None,
        **_form_context(meta),
    )


@bp.post("/<name>/fields")
@requires(PERMISSION)
def add_field(name: str):
    meta = _meta_or_404(name)
    field_type = request.form.get("type", "")
    if field_type not in TYPE_LABELS:
        return _render_new_field(
            meta, dict(request.form), {"type": "Choose the type of the field first."}
        )
    spec, shown, errors = read_field_form(request.form, field_type, None)
    shown["type"] = field_type
    if request.form.get("step") == "type":
        # Without JavaScript, "Show the settings" posts the form back with the new type.
        return _render_new_field(meta, shown, {})
    if not errors:
        try:
            created = definitions.add_field(name, spec)
        except DefinitionError as exc:
            errors = _place_error(exc, _shown_inputs(field_type, None))
    if errors:
        return _render_new_field(meta, shown, errors)
    settings = definitions.definition_as_json(created)
    for key in ("name", "read_only", "standard", "custom", "plugin"):
        settings.pop(key, None)
    _after_change("field_add", name, {"field": created.name, **settings})
    flash(f"Added the field {created.label} ({created.name}).", "success")
    return redirect(url_for("admin_schema.object_page", name=name))


def _editable(item: FieldMeta) -> frozenset[str]:
    keys = ADMIN_EDITABLE_CUSTOM if item.custom else ADMIN_EDITABLE_DECLARED
    return frozenset(keys | {"position"})


def _current_form(item: FieldMeta) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": item.name,
        "label": item.label,
        "type": item.type,
        "help_text": item.help_text,
        "section": item.section,
        "position": str(item.position),
        "default": _text(item.default),
        "options": _text(item.options),
        "target": item.target or "",
        "on_delete": item.on_delete,
        "max_length": _text(item.max_length),
        "min_value": _text(item.min_value),
        "max_value": _text(item.max_value),
        "pattern": item.pattern or "",
        "formula": item.formula or "",
        "formula_type": item.formula_type,
        "scale": str(item.scale),
        "currency": item.currency,
        "format": item.format,
    }
    for key in FLAG_NAMES:
        form[key] = getattr(item, key)
    return form


def _render_edit_field(
    meta: ObjectMeta, item: FieldMeta, form: Mapping[str, Any], errors: dict[str, str]
):
    return render_template(
        "admin/fields_form.html",
        item=item,
        form=form,
        errors=errors,
        field_type=item.type,
        editable=_editable(item),
        source=field_source(item),
        **_form_context(meta),
    ), (422 if errors else 200)


@bp.get("/<name>/fields/<field_name>/edit")
@requires(PERMISSION)
def edit_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=False)
    return _render_edit_field(meta, item, _current_form(item), {})


@bp.post("/<name>/fields/<field_name>/edit")
@requires(PERMISSION)
def update_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=False)
    editable = _editable(item)
    spec, shown, errors = read_field_form(request.form, item.type, editable)
    current = _current_form(item)
    changes = {k: v for k, v in spec.items() if _text(current.get(k)) != _text(v)}
    if not errors and changes:
        try:
            definitions.update_field(name, field_name, changes)
        except DefinitionError as exc:
            errors = _place_error(exc, _shown_inputs(item.type, editable))
    if errors:
        return _render_edit_field(meta, item, current | shown, errors)
    if changes:
        _after_change("field_update", name, {"field": field_name, **_diff(current, changes)})
        flash(f"Saved the field {spec.get('label') or item.label}.", "success")
    else:
        flash("Nothing changed.", "success")
    return redirect(url_for("admin_schema.object_page", name=name))


@bp.get("/<name>/fields/<field_name>/remove")
@requires(PERMISSION)
def confirm_remove_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=False)
    return render_template("admin/fields_remove.html", meta=meta, item=item)


@bp.post("/<name>/fields/<field_name>/remove")
@requires(PERMISSION)
def remove_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=False)
    try:
        definitions.remove_field(name, field_name)
    except DefinitionError as exc:
        flash(str(exc), "error")
        return render_template("admin/fields_remove.html", meta=meta, item=item), 422
    _after_change("field_remove", name, {"field": field_name})
    flash(
        f"Removed the field {item.label}. Its data is kept until you purge it; "
        "restore it to bring it back.",
        "success",
    )
    return redirect(url_for("admin_schema.object_page", name=name, _anchor="removed"))


@bp.post("/<name>/fields/<field_name>/restore")
@requires(PERMISSION)
def restore_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=True)
    try:
        definitions.restore_field(name, field_name)
    except DefinitionError as exc:
        flash(str(exc), "error")
        return _render_object(meta, status=422)
    _after_change("field_restore", name, {"field": field_name})
    flash(f"Restored the field {item.label} with its data.", "success")
    return redirect(url_for("admin_schema.object_page", name=name))


def _render_purge(meta: ObjectMeta, item: FieldMeta, error: str = ""):
    return render_template("admin/fields_purge.html", meta=meta, item=item, error=error), (
        422 if error else 200
    )


@bp.get("/<name>/fields/<field_name>/purge")
@requires(PERMISSION)
@recent_auth_required
def confirm_purge_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    return _render_purge(meta, _field_or_404(meta, field_name, removed=True))


@bp.post("/<name>/fields/<field_name>/purge")
@requires(PERMISSION)
@recent_auth_required
def purge_field(name: str, field_name: str):
    meta = _meta_or_404(name)
    item = _field_or_404(meta, field_name, removed=True)
    if request.form.get("confirm", "").strip() != item.name:
        return _render_purge(
            meta, item, f"Type the field's API name, {item.name}, to confirm the purge."
        )
    try:
        definitions.purge_field(name, field_name)
    except DefinitionError as exc:
        return _render_purge(meta, item, str(exc))
    _after_change("field_purge", name, {"field": field_name, "type": item.type})
    flash(f"Purged the field {item.label}: its data is erased.", "success")
    return redirect(url_for("admin_schema.object_page", name=name))
