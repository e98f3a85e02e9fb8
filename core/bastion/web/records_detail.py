"""Detail pages, create and edit forms, inline edit of one field, delete, and the
activity timeline of any record.

Every read and write goes through the user's RecordService. Forms show only what the
user may see, read back only what they may change, keep the user's input with the
service's messages next to each field when it refuses (422), and carry the version read
so a stale save is a 409 with a reload link instead of overwriting someone's change.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from bastion.access import login_required
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import (
    Conflict,
    DuplicatesFound,
    Forbidden,
    NotFound,
    RecordError,
    ValidationFailed,
)
from bastion.data.query import Filter
from bastion.data.records import Record, RecordService
from bastion.web import read_audit, record_extras
from bastion.web.params import bounded_int
from bastion.web.record_display import Display
from bastion.web.record_forms import (
    DEFAULT_SECTION,
    FormValue,
    Widget,
    build_sections,
    build_widget,
    default_texts,
    field_errors,
    form_fields,
    read_form,
    record_texts,
)
from bastion.web.records_common import bp, list_url, may, object_for, records, wants_fragment

ACTIVITIES = "activities"
#: The activity fields of the quick "log activity" form.
QUICK_ACTIVITY_FIELDS = ("kind", "subject", "due_at", "done")
RELATED_LIMIT = 5
TIMELINE_LIMIT = 20
#: Standard fields shown together at the end of a detail page.
SYSTEM_FIELDS = ("owner", "created_at", "created_by", "updated_at", "updated_by")


@dataclass
class Fact:
    field: FieldMeta
    editable: bool


@dataclass
class RelatedList:
    meta: ObjectMeta
    field: FieldMeta
    title: str
    records: list[Record]
    total: int
    list_url: str
    new_url: str | None = None


@dataclass
class Timeline:
    activities: list[Record] = field(default_factory=list)
    meta: ObjectMeta | None = None
    widgets: list[Widget] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    can_log: bool = False


# --------------------------------------------------------------------------- building


def detail_sections(
    service: RecordService, meta: ObjectMeta, record: Record
) -> list[tuple[str, list[Fact]]]:
    """Readable fields grouped by section, then the record's owner and history."""
    access = service.field_access(meta)
    editing = may(service, meta, record, "edit")
    sections: dict[str, list[Fact]] = {}
    for name, item in meta.fields.items():
        level = access.get(name, "hidden")
        if level == "hidden" or name in {"id", "version"}:
            continue
        title = "Owner and history" if name in SYSTEM_FIELDS else item.section or DEFAULT_SECTION
        sections.setdefault(title, []).append(Fact(item, editing and level == "edit"))
    last = sections.pop("Owner and history", None)
    ordered = list(sections.items())
    if last:
        ordered.append(("Owner and history", last))
    return ordered


def related_lists(
    service: RecordService, meta: ObjectMeta, record: Record, display: Display
) -> list[RelatedList]:
    """For each lookup to this object: its first records, a count and a link to all."""
    found = []
    for source, item in service.catalog.referencing(meta.name):
        if source.retired or not service.can(source.name, "read"):
            continue
        if service.field_access(source).get(item.name, "hidden") == "hidden":
            continue
        filters = [Filter(item.name, "eq", record.id)]
        try:
            page = service.query(source.name, filters=filters, limit=RELATED_LIMIT)
            total = service.count(source.name, filters=filters)
        except RecordError:
            continue  # a field this user cannot filter on: no related list
        display.prime(source, page.records)
        read_audit.listed(source, [r.id for r in page.records], via="related")
        title = source.label_plural
        if item.label.casefold() != meta.label.casefold():
            title = f"{source.label_plural} ({item.label})"
        new_url = None
        if (
            item.type == "lookup"
            and service.can(source.name, "create")
            and service.field_access(source).get(item.name) == "edit"
        ):
            new_url = url_for("records.new", object=source.name, **{item.name: record.id})
        found.append(
            RelatedList(
                source,
                item,
                title,
                page.records,
                total,
                list_url(source.name, [(item.name, str(record.id))]),
                new_url,
            )
        )
    return found


def timeline_for(
    service: RecordService,
    meta: ObjectMeta,
    record: Record,
    display: Display,
    *,
    texts: dict[str, FormValue] | None = None,
    errors: dict[str, str] | None = None,
) -> Timeline | None:
    """Activities linked to this record, newest first, and the quick "log activity" form."""
    catalog = service.catalog
    if meta.name == ACTIVITIES or ACTIVITIES not in catalog.objects:
        return None
    if not service.can(ACTIVITIES, "read"):
        return None
    activities = catalog.get(ACTIVITIES)
    if service.field_access(activities).get("related_to", "hidden") == "hidden":
        return None
    timeline = Timeline(meta=activities)
    try:
        timeline.activities = service.query(
            ACTIVITIES,
            filters=[Filter("related_to", "eq", f"{meta.name}:{record.id}")],
            sort="-created_at",
            limit=TIMELINE_LIMIT,
        ).records
    except RecordError:
        return None
    display.prime(activities, timeline.activities)
    read_audit.listed(activities, [r.id for r in timeline.activities], via="timeline")
    quick = quick_activity_fields(service, activities)
    timeline.can_log = bool(quick) and service.can(ACTIVITIES, "create")
    if timeline.can_log:
        errors = errors or {}
        values = texts or default_texts(service, quick, {})
        for item in quick:
            text, error = values.get(item.name, ""), errors.get(item.name, "")
            widget = build_widget(service, display, item, text, error)
            widget.prefix = "activity-"
            timeline.widgets.append(widget)
        timeline.errors = field_errors(errors, [item.name for item in quick])
    return timeline


def quick_activity_fields(service: RecordService, activities: ObjectMeta) -> list[FieldMeta]:
    access = service.field_access(activities)
    if access.get("related_to") != "edit":
        return []
    return [
        activities.fields[name]
        for name in QUICK_ACTIVITY_FIELDS
        if name in activities.fields and access.get(name) == "edit"
    ]


def render_detail(
    service: RecordService,
    meta: ObjectMeta,
    record: Record,
    *,
    timeline: Timeline | None = None,
    status: int = 200,
):
    display = Display(service)
    display.prime(meta, [record])
    context = {
        "meta": meta,
        "record": record,
        "display": display,
        "title": meta.record_name(record.values),
        "sections": detail_sections(service, meta, record),
        "related": related_lists(service, meta, record, display),
        "timeline": timeline or timeline_for(service, meta, record, display),
        "can_edit": may(service, meta, record, "edit"),
        "can_delete": may(service, meta, record, "delete"),
        # Enabled plugins' contributions (record_extras catches their failures).
        "plugin_actions": record_extras.record_actions(meta, record),
        "plugin_panels": record_extras.record_panels(meta, record),
    }
    return render_template("records/detail.html", **context), status


# --------------------------------------------------------------------------- detail


@bp.get("/<object>/<int:record_id>")
@login_required
def detail(object: str, record_id: int):
    service = records()
    meta = object_for(object)
    record = service.get(meta.name, record_id)
    read_audit.viewed(meta, record.id)
    return render_detail(service, meta, record)


@bp.post("/<object>/<int:record_id>/activities")
@login_required
def log_activity(object: str, record_id: int):
    """Create an activity linked to this record (the quick form of the timeline)."""
    service = records()
    meta = object_for(object)
    record = service.get(meta.name, record_id)
    activities = object_for(ACTIVITIES, "create")
    quick = quick_activity_fields(service, activities)
    if not quick:
        raise Forbidden("You may not log activities.")
    values, texts = read_form(quick, request.form)
    values["related_to"] = f"{meta.name}:{record.id}"
    display = Display(service)
    try:
        created = service.create(ACTIVITIES, values)
    except ValidationFailed as exc:
        timeline = timeline_for(service, meta, record, display, texts=texts, errors=exc.errors)
        if wants_fragment():
            return render_template(
                "records/_timeline.html",
                timeline=timeline,
                meta=meta,
                record=record,
                display=display,
            ), 422
        return render_detail(service, meta, record, timeline=timeline, status=422)
    message = f"Logged “{activities.record_name(created.values)}”."
    if wants_fragment():
        timeline = timeline_for(service, meta, record, display)
        return render_template(
            "records/_timeline.html",
            timeline=timeline,
            meta=meta,
            record=record,
            display=display,
            logged=message,
        )
    flash(message, "success")
    return redirect(url_for("records.detail", object=meta.name, record_id=record.id), 303)


# --------------------------------------------------------------------------- forms


def duplicates_checked() -> bool:
    """Whether the duplicate detector is installed (it is built alongside this page)."""
    return importlib.util.find_spec("bastion.data.duplicates") is not None


def render_form(
    service: RecordService,
    meta: ObjectMeta,
    *,
    record: Record | None,
    texts: dict[str, FormValue],
    errors: dict[str, str] | None = None,
    status: int = 200,
    conflict: str = "",
    duplicates: list[dict[str, Any]] | None = None,
    version: Any = None,
):
    creating = record is None
    editable, readonly = form_fields(service, meta, creating=creating)
    display = Display(service)
    if record is not None:
        display.prime(meta, [record])
    errors = errors or {}
    sections = build_sections(
        service,
        meta,
        display,
        editable=editable,
        readonly=readonly,
        texts=texts,
        errors=errors,
        record=record,
    )
    shown = [item.name for item in editable]
    context = {
        "meta": meta,
        "record": record,
        "sections": sections,
        "general_errors": field_errors(errors, shown),
        "conflict": conflict,
        "duplicates": duplicates or [],
        "version": version if version is not None else (record.version if record else None),
        "title": meta.record_name(record.values) if record else f"New {meta.label.lower()}",
    }
    return render_template("records/form.html", **context), status


@bp.route("/<object>/new", methods=["GET", "POST"])
@login_required
def new(object: str):
    service = records()
    meta = object_for(object, "create")
    editable, _ = form_fields(service, meta, creating=True)
    if request.method == "GET":
        texts = default_texts(service, editable, request.args)
        return render_form(service, meta, record=None, texts=texts)
    values, texts = read_form(editable, request.form)
    check = request.form.get("create_anyway") != "1" and duplicates_checked()
    try:
        created = service.create(meta.name, values, check_duplicates=check)
    except ValidationFailed as exc:
        return render_form(service, meta, record=None, texts=texts, errors=exc.errors, status=422)
    except DuplicatesFound as exc:
        return render_form(
            service,
            meta,
            record=None,
            texts=texts,
            status=409,
            duplicates=[_duplicate(meta, match) for match in exc.matches],
        )
    if set(created.values) == {"id"}:  # created, but now outside the user's reach
        flash(f"{meta.label} created; it now belongs to someone outside your reach.", "success")
        return redirect(url_for("records.list_records", object=meta.name), 303)
    flash(f"{meta.label} “{meta.record_name(created.values)}” created.", "success")
    return redirect(url_for("records.detail", object=meta.name, record_id=created.id), 303)


def _duplicate(meta: ObjectMeta, match: dict[str, Any]) -> dict[str, Any]:
    labels = [
        meta.fields[name].label if name in meta.fields else name
        for name in match.get("matched_on", [])
    ]
    ident = match.get("id")
    return {
        "id": ident,
        "name": match.get("name") or f"{meta.label} #{ident}",
        "matched_on": ", ".join(labels),
        "url": url_for("records.detail", object=meta.name, record_id=ident) if ident else None,
    }


def _editable_record(service: RecordService, meta: ObjectMeta, record_id: int) -> Record:
    record = service.get(meta.name, record_id)
    if not may(service, meta, record, "edit"):
        raise Forbidden(f"You may not edit this {meta.label.lower()}.")
    return record


def _version(form: MultiDict) -> int | None:
    return bounded_int(form.get("version", ""), minimum=1)


def _conflict_message(meta: ObjectMeta, exc: RecordError) -> str:
    return exc.message or f"This {meta.label.lower()} was changed by someone else."


@bp.route("/<object>/<int:record_id>/edit", methods=["GET", "POST"])
@login_required
def edit(object: str, record_id: int):
    service = records()
    meta = object_for(object, "edit")
    record = _editable_record(service, meta, record_id)
    editable, _ = form_fields(service, meta, creating=False)
    zone = service.context.time_zone
    if request.method == "GET":
        read_audit.viewed(meta, record.id, via="edit_form")  # the form shows its values
        return render_form(service, meta, record=record, texts=record_texts(editable, record, zone))
    version = _version(request.form)
    values, texts = read_form(editable, request.form, initial=record_texts(editable, record, zone))
    try:
        service.update(meta.name, record.id, values, version=version)
    except ValidationFailed as exc:
        return render_form(
            service,
            meta,
            record=record,
            texts=texts,
            errors=exc.errors,
            status=422,
            version=version,
        )
    except Conflict as exc:
        return render_form(
            service,
            meta,
            record=record,
            texts=texts,
            status=409,
            version=version,
            conflict=_conflict_message(meta, exc),
        )
    flash(f"{meta.label} saved.", "success")
    return redirect(url_for("records.detail", object=meta.name, record_id=record.id), 303)


# --------------------------------------------------------------------------- delete


@bp.route("/<object>/<int:record_id>/delete", methods=["GET", "POST"])
@login_required
def delete(object: str, record_id: int):
    """A confirmation page first; the POST carries the version that was confirmed."""
    service = records()
    meta = object_for(object, "delete")
    record = service.get(meta.name, record_id)
    if not may(service, meta, record, "delete"):
        raise Forbidden(f"You may not delete this {meta.label.lower()}.")
    name = meta.record_name(record.values)
    if request.method == "GET":
        return render_template("records/delete.html", meta=meta, record=record, name=name)
    try:
        service.delete(meta.name, record.id, version=_version(request.form))
    except Conflict as exc:
        return render_template(
            "records/delete.html", meta=meta, record=record, name=name, error=exc.message
        ), 409
    except ValidationFailed as exc:
        message = "; ".join(exc.errors.values())
        return render_template(
            "records/delete.html", meta=meta, record=record, name=name, error=message
        ), 422
    flash(f"{meta.label} “{name}” deleted.", "success")
    return redirect(url_for("records.list_records", object=meta.name), 303)


# --------------------------------------------------------------------------- inline edit


def _inline_field(service: RecordService, meta: ObjectMeta, name: str) -> FieldMeta:
    item = meta.fields.get(name)
    if item is None or service.field_access(meta).get(name, "hidden") == "hidden":
        raise NotFound(f"{meta.label} has no field {name!r}.")
    return item


def _fact_response(service, meta, record, item, *, status=200):
    display = Display(service)
    display.prime(meta, [record])
    editable = may(service, meta, record, "edit") and (
        service.field_access(meta).get(item.name) == "edit"
    )
    fact = Fact(item, editable)
    return render_template(
        "records/_fact.html", meta=meta, record=record, fact=fact, display=display
    ), status


def _inline_form(
    service, meta, record, item, text, *, error="", conflict="", version=None, status=200
):
    display = Display(service)
    widget = build_widget(service, display, item, text, error)
    template = "records/_fact_form.html" if wants_fragment() else "records/field_edit.html"
    return render_template(
        template,
        meta=meta,
        record=record,
        widget=widget,
        conflict=conflict,
        version=version if version is not None else record.version,
        title=meta.record_name(record.values),
    ), status


@bp.route("/<object>/<int:record_id>/field/<name>", methods=["GET", "POST"])
@login_required
def inline_field(object: str, record_id: int, name: str):
    """One field's editor (GET), its save (POST), or its display again (GET ?display=1)."""
    service = records()
    meta = object_for(object)
    record = service.get(meta.name, record_id)
    item = _inline_field(service, meta, name)
    if request.method == "GET":
        read_audit.viewed(meta, record.id, via="field")
    if request.method == "GET" and request.args.get("display"):
        return _fact_response(service, meta, record, item)
    if service.field_access(meta).get(name) != "edit" or not may(service, meta, record, "edit"):
        raise Forbidden(f"You may not change {item.label}.")
    zone = service.context.time_zone
    initial = record_texts([item], record, zone)
    if request.method == "GET":
        return _inline_form(service, meta, record, item, initial[name])
    version = _version(request.form)
    values, texts = read_form([item], request.form, initial=initial)
    try:
        updated = service.update(meta.name, record.id, values, version=version)
    except ValidationFailed as exc:
        message = exc.errors.get(name) or "; ".join(exc.errors.values())
        return _inline_form(
            service, meta, record, item, texts[name], error=message, version=version, status=422
        )
    except Conflict as exc:
        return _inline_form(
            service,
            meta,
            record,
            item,
            texts[name],
            conflict=_conflict_message(meta, exc),
            version=version,
            status=409,
        )
    if wants_fragment():
        return _fact_response(service, meta, updated, item)
    flash(f"{item.label} saved.", "success")
    return redirect(url_for("records.detail", object=meta.name, record_id=record.id), 303)
