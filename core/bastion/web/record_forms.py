"""Record forms: a widget per field type, and the submitted form read back into values.

The form shows what the user may change (editable widgets) and what they may only read
(read-only text); hidden fields are left out entirely, and only editable fields are
ever read back from a submission, whatever else is posted. Values travel as form text:
the record service parses them, so a form, a JSON body and a CSV cell give the same
messages. An edit sends only the fields whose text changed, so re-saving a datetime
shown to the minute does not drop its seconds and a field nobody touched is left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import url_for
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.records import Record, RecordService
from bastion.data.values import FieldValueError, Money, RecordLink, is_empty, parse
from bastion.db import db
from bastion.web.params import bounded_int
from bastion.web.record_display import Display, zone_of

#: The widget of each field type (computed types are shown read-only).
WIDGETS = {
    "text": "text",
    "long_text": "textarea",
    "email": "email",
    "phone": "tel",
    "url": "url",
    "integer": "number",
    "decimal": "number",
    "percent": "percent",
    "currency": "currency",
    "date": "date",
    "datetime": "datetime",
    "boolean": "checkbox",
    "picklist": "select",
    "multi_picklist": "checkboxes",
    "lookup": "lookup",
    "many_to_many": "many",
    "record_link": "record_link",
}
#: Standard fields the form never shows (the detail page does).
NOT_IN_FORMS = frozenset({"id", "version", "created_at", "created_by", "updated_at", "updated_by"})
MAX_OWNER_CHOICES = 500
#: Widgets a browser leaves out of a submission when nothing is chosen.
UNSENT_WHEN_EMPTY = frozenset({"boolean", "multi_picklist", "many_to_many"})
DEFAULT_SECTION = "Details"

FormValue = str | list[str] | dict[str, str]


@dataclass
class Widget:
    field: FieldMeta
    kind: str
    value: Any = ""
    error: str = ""
    readonly: bool = False
    display: Markup | None = None
    step: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    #: Records a lookup or many-to-many currently points at: (id, name).
    chosen: list[tuple[str, str]] = field(default_factory=list)
    lookup_url: str = ""
    #: A hint under the input, such as the time zone of a date and time.
    note: str = ""
    #: Starts every element id, so two forms on one page never share ids.
    prefix: str = "f-"

    @property
    def input_id(self) -> str:
        return f"{self.prefix}{self.field.name}"

    @property
    def name(self) -> str:
        return self.field.name


@dataclass
class Section:
    title: str
    widgets: list[Widget]


# --------------------------------------------------------------------------- fields


def form_fields(
    service: RecordService, meta: ObjectMeta, *, creating: bool
) -> tuple[list[FieldMeta], list[FieldMeta]]:
    """(editable, read-only) fields of the form, in display order; hidden ones absent."""
    access = service.field_access(meta)
    editable, readonly = [], []
    for name, item in meta.fields.items():
        level = access.get(name, "hidden")
        if name in NOT_IN_FORMS or level == "hidden":
            continue
        if level == "edit":
            editable.append(item)
        elif not creating or item.read_only:  # a computed field has nothing to show yet
            readonly.append(item)  # a plugin's read-only field shows its default
    return editable, readonly


# --------------------------------------------------------------------------- form text


def initial_text(item: FieldMeta, value: Any, zone_name: str) -> FormValue:
    """A typed value as the text its widget shows."""
    if item.type == "currency":
        if isinstance(value, Money):
            return {"amount": str(value.amount), "currency": value.currency}
        return {"amount": "", "currency": item.currency}
    if item.type in {"multi_picklist", "many_to_many"}:
        return [str(v) for v in value or []]
    if is_empty(value):
        return "false" if item.type == "boolean" else ""
    if item.type == "boolean":
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(zone_of(zone_name)).strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, RecordLink):
        return f"{value.object}:{value.id}"
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def submitted_text(item: FieldMeta, form: MultiDict) -> FormValue:
    """What the user sent for ``item`` (absent checkboxes mean false)."""
    name = item.name
    if item.type == "currency":
        return {
            "amount": form.get(name, "").strip(),
            "currency": form.get(f"{name}__currency", "").strip().upper() or item.currency,
        }
    if item.type == "multi_picklist":
        chosen = set(form.getlist(name))
        return [option for option in item.options if option in chosen]
    if item.type == "many_to_many":
        ids = {v.strip() for v in form.getlist(name) if v.strip()}
        return sorted(ids, key=lambda v: (len(v), v))
    if item.type == "boolean":
        return "true" if form.get(name) in {"true", "on", "1"} else "false"
    if item.type == "record_link":
        target, ident = form.get(f"{name}__object", "").strip(), form.get(name, "").strip()
        return f"{target}:{ident}" if target and ident else ""
    return form.get(name, "")


def service_value(item: FieldMeta, text: FormValue) -> Any:
    """Form text as the record service reads it (it parses and validates)."""
    if isinstance(text, dict):
        amount = text.get("amount", "")
        return f"{amount} {text.get('currency', '')}".strip() if amount else ""
    return text


def _blank(text: FormValue) -> bool:
    if isinstance(text, dict):
        return not text.get("amount")
    return is_empty(text)


def _same(left: FormValue, right: FormValue) -> bool:
    if isinstance(left, list) and isinstance(right, list):
        return sorted(left) == sorted(right)
    if isinstance(left, str) and isinstance(right, str):
        return left.strip() == right.strip()
    if isinstance(left, dict) and isinstance(right, dict):
        if _blank(left) and _blank(right):
            return True
        return left.get("amount", "").strip() == right.get("amount", "").strip() and (
            left.get("currency", "").upper() == right.get("currency", "").upper()
        )
    return left == right


def read_form(
    fields: Iterable[FieldMeta],
    form: MultiDict,
    *,
    initial: Mapping[str, FormValue] | None = None,
) -> tuple[dict[str, Any], dict[str, FormValue]]:
    """(values for the service, the text as submitted) for ``fields``.

    Creating (no ``initial``): every filled-in field, so empty ones get their defaults.
    Editing: only fields whose text differs from what the form showed.
    """
    values: dict[str, Any] = {}
    texts: dict[str, FormValue] = {}
    for item in fields:
        text = submitted_text(item, form)
        texts[item.name] = text
        if initial is not None and item.name not in form and item.type not in UNSENT_WHEN_EMPTY:
            texts[item.name] = initial.get(item.name, "")
            continue  # not part of this submission: leave it as it is
        if initial is None:
            if not _blank(text) or item.type == "boolean":
                values[item.name] = service_value(item, text)
        elif not _same(text, initial.get(item.name, "")):
            values[item.name] = service_value(item, text)
    return values, texts


def record_texts(
    fields: Iterable[FieldMeta], record: Record | None, zone_name: str
) -> dict[str, FormValue]:
    """The form text of each field of a stored record (or of defaults for a new one)."""
    texts = {}
    for item in fields:
        if record is not None:
            texts[item.name] = initial_text(item, record.get(item.name), zone_name)
        else:
            texts[item.name] = initial_text(item, None, zone_name)
    return texts


def default_texts(
    service: RecordService, fields: Iterable[FieldMeta], prefill: Mapping[str, str]
) -> dict[str, FormValue]:
    """A new record's form: declared defaults, then values passed in the address."""
    zone_name = service.context.time_zone
    texts: dict[str, FormValue] = {}
    for item in fields:
        value = None
        if item.default is not None:
            with contextlib.suppress(FieldValueError):  # checked when it was defined
                value = parse(item, item.default, service.context)
        if item.name == "owner" and service.user is not None:
            value = service.user.id
        texts[item.name] = initial_text(item, value, zone_name)
        raw = prefill.get(item.name)
        if raw:
            if item.type == "currency":
                texts[item.name] = {"amount": raw, "currency": item.currency}
            elif item.type in {"multi_picklist", "many_to_many"}:
                texts[item.name] = [part for part in raw.split(",") if part]
            else:
                texts[item.name] = raw
    return texts


# --------------------------------------------------------------------------- widgets


def build_sections(
    service: RecordService,
    meta: ObjectMeta,
    display: Display,
    *,
    editable: list[FieldMeta],
    readonly: list[FieldMeta],
    texts: Mapping[str, FormValue],
    errors: Mapping[str, str],
    record: Record | None = None,
) -> list[Section]:
    """Widgets grouped by the fields' sections, in the object's field order."""
    readonly_names = {item.name for item in readonly}
    chosen = {item.name for item in editable} | readonly_names
    sections: dict[str, Section] = {}
    for name, item in meta.fields.items():
        if name not in chosen:
            continue
        if name in readonly_names:
            value = record.get(name) if record is not None else _default(service, item)
            widget = Widget(item, "readonly", readonly=True, display=display.value(item, value))
        else:
            widget = build_widget(service, display, item, texts.get(name, ""), errors.get(name, ""))
        title = "Owner" if name == "owner" else (item.section or DEFAULT_SECTION)
        sections.setdefault(title, Section(title, [])).widgets.append(widget)
    ordered = [s for t, s in sections.items() if t != "Owner"]
    if "Owner" in sections:
        ordered.append(sections["Owner"])
    return ordered


def _default(service: RecordService, item: FieldMeta) -> Any:
    """The value a new record's field starts with (shown where users cannot set it)."""
    if item.default is None:
        return None
    try:
        return parse(item, item.default, service.context)
    except FieldValueError:
        return None


def build_widget(
    service: RecordService, display: Display, item: FieldMeta, text: FormValue, error: str = ""
) -> Widget:
    """One editable field's widget showing ``text``."""
    if item.name == "owner":
        widget = Widget(item, "owner", value=text, error=error)
        widget.options = owner_choices(text if isinstance(text, str) else "")
        if widget.options is None:
            widget.kind = "number"
        return widget
    kind = WIDGETS.get(item.type, "text")
    widget = Widget(item, kind, value=text, error=error)
    if item.type == "datetime":
        widget.note = f"Your time zone: {service.context.time_zone}"
    if item.type in {"integer"}:
        widget.step = "1"
    elif item.type in {"decimal", "percent", "currency"}:
        widget.step = format(Decimal(1).scaleb(-item.scale), "f")
    if item.type in {"picklist", "multi_picklist"}:
        widget.options = [(option, option) for option in item.options]
    if item.type in {"lookup", "many_to_many"} and item.target:
        if service.can(item.target, "read"):
            widget.lookup_url = url_for("records.lookup", object=item.target)
        ids = text if isinstance(text, list) else [text] if text else []
        for ident in ids:
            number = bounded_int(str(ident), minimum=1)  # from the address: maybe "²", 10**30
            name = display.name(item.target, number) if number is not None else ""
            widget.chosen.append((str(ident), name or f"#{ident}"))
    if item.type == "record_link":
        widget.options = [
            (meta.name, meta.label)
            for meta in sorted(service.catalog.active(), key=lambda m: m.label)
            if service.can(meta.name, "read")
        ]
        target, _, ident = str(text).partition(":")
        number = bounded_int(ident, minimum=1)
        if target and number is not None:
            name = display.name(target, number)
            widget.chosen = [(ident, name or f"#{ident}")]
            widget.value = {"object": target, "id": ident}
        else:
            widget.value = {"object": "", "id": ""}
    return widget


def owner_choices(current: str) -> list[tuple[str, str]] | None:
    """Active users to give a record to; None when there are too many for a list."""
    from bastion.models import User

    users = list(
        db.session.scalars(
            select(User)
            .where(User.active)
            .order_by(User.name, User.email)
            .limit(MAX_OWNER_CHOICES + 1)
        )
    )
    if len(users) > MAX_OWNER_CHOICES:
        return None
    choices = [(str(user.id), user.display_name) for user in users]
    if current and current not in {value for value, _ in choices}:
        choices.insert(0, (current, f"#{current}"))
    return choices


def field_errors(errors: Mapping[str, str], shown: Iterable[str]) -> list[str]:
    """Messages that belong to no field on the form (record rules, other fields)."""
    names = set(shown)
    return [message for key, message in errors.items() if key not in names]
