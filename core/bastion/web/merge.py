"""The merge screen: several records of one object side by side, one value kept per field.

    GET  /o/<object>/merge?ids=4,9[&winner=9]   the records, a choice per field
    POST /o/<object>/merge                      merge them into the master

The master (the record kept, the oldest unless ``winner`` says otherwise) keeps its id,
so links to it stay valid; the others are deleted and everything that pointed at them
(lookups, many-to-many links, activities' "related to") is re-pointed to the master by
``RecordService.merge``, in one transaction. Only fields the user may edit can be
chosen; read-only and hidden ones stay as they are on the master. The form carries the
version of every record shown: if any changed meanwhile, nothing is merged and the
screen comes back with the current values (409).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.routing import BuildError

from bastion.access import login_required
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery, Conflict, RecordError, ValidationFailed
from bastion.data.records import Record, RecordService
from bastion.data.requests import request_service
from bastion.data.values import is_empty, to_json
from bastion.web import read_audit
from bastion.web.params import bounded_int
from bastion.web.record_display import Display

bp = Blueprint("merge", __name__, url_prefix="/o")

MIN_RECORDS = 2
MAX_RECORDS = 10
#: Value of a choice that keeps the values of every record (list fields only).
COMBINE = "all"
LIST_TYPES = frozenset({"many_to_many", "multi_picklist"})


@dataclass
class Choice:
    record_id: int
    #: Plain text (names, not links: a link inside a radio's label steals the tap).
    text: str
    empty: bool


@dataclass
class FieldRow:
    """One field of the screen: every record's value and which one is kept."""

    item: FieldMeta
    choices: list[Choice]
    chosen: str
    choosable: bool
    same: bool
    combinable: bool = False
    error: str = ""
    note: str = ""


@dataclass
class Screen:
    meta: ObjectMeta
    records: list[Record]
    master: Record
    names: dict[int, str]
    created: dict[int, str] = field(default_factory=dict)
    rows: list[FieldRow] = field(default_factory=list)

    @property
    def different(self) -> list[FieldRow]:
        return [row for row in self.rows if not row.same]

    @property
    def alike(self) -> list[FieldRow]:
        return [row for row in self.rows if row.same]

    @property
    def ids_text(self) -> str:
        return ",".join(str(record.id) for record in self.records)


# --------------------------------------------------------------------------- errors


@bp.errorhandler(RecordError)
def _record_error(exc: RecordError):
    return render_template(
        "error.html", status=exc.status, title=exc.title, detail=exc.message
    ), exc.status


# --------------------------------------------------------------------------- helpers


def detail_url(object_name: str, record_id: int) -> str:
    """The record's page (built by the generated record pages)."""
    try:
        return url_for("records.detail", object=object_name, record_id=record_id)
    except BuildError:
        return f"{request.script_root}/o/{object_name}/{record_id}"


def list_url(object_name: str) -> str:
    try:
        return url_for("records.list_records", object=object_name)
    except BuildError:
        return f"{request.script_root}/o/{object_name}"


def merge_url(object_name: str, ids: list[int]) -> str:
    """The merge screen for ``ids`` (duplicate warnings and bulk actions link here)."""
    return url_for("merge.screen", object_name=object_name, ids=",".join(map(str, ids)))


def _merge_object(service: RecordService, object_name: str) -> ObjectMeta:
    meta = service.require(object_name, "edit")
    service.require(object_name, "delete")  # the others are deleted
    return meta


def parse_ids(values: list[str]) -> list[int]:
    """'4,9' or ids=4&ids=9 -> [4, 9]: distinct ids, between 2 and 10 of them."""
    chosen: dict[int, None] = {}  # distinct ids in the order given
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            number = bounded_int(part, minimum=1)
            if number is None:
                raise BadQuery(f"{part[:20]!r} is not a record id.", field="ids")
            chosen[number] = None
            if len(chosen) > MAX_RECORDS:  # too many already: stop reading
                break
        if len(chosen) > MAX_RECORDS:
            break
    ids = list(chosen)
    if not MIN_RECORDS <= len(ids) <= MAX_RECORDS:
        raise BadQuery(
            f"Choose {MIN_RECORDS} to {MAX_RECORDS} records to merge ({len(ids)} chosen).",
            field="ids",
        )
    return ids


def _load(service: RecordService, meta: ObjectMeta, ids: list[int]) -> list[Record]:
    page = service.query(meta.name, ids=ids, sort="id", limit=MAX_RECORDS)
    found = {record.id: record for record in page.records}
    missing = [i for i in ids if i not in found]
    if missing:
        from bastion.data.errors import NotFound

        raise NotFound(
            f"{meta.label} {missing[0]} does not exist or is not visible to you, "
            "so it cannot be merged."
        )
    return [found[i] for i in ids]


def _oldest(records: list[Record]) -> Record:
    return min(records, key=lambda r: (r.get("created_at") is None, r.get("created_at"), r.id))


def _ordered(records: list[Record], master: Record) -> list[Record]:
    return [master, *sorted((r for r in records if r.id != master.id), key=lambda r: r.id)]


def _same(left: Any, right: Any) -> bool:
    if is_empty(left) and is_empty(right):
        return True
    return left == right


def _combined(item: FieldMeta, records: list[Record]) -> list[Any]:
    values: list[Any] = []
    for record in records:
        for value in record.get(item.name) or []:
            if value not in values:
                values.append(value)
    if item.type == "multi_picklist":
        return [option for option in item.options if option in values]
    return sorted(values)


def _choosable_fields(service: RecordService, meta: ObjectMeta) -> list[FieldMeta]:
    access = service.field_access(meta)
    shown = []
    for name, item in meta.fields.items():
        if access.get(name) == "hidden":
            continue
        if item.standard and name != "owner":
            continue  # id, created..., version: the master's, by definition
        shown.append(item)
    return shown


def build_screen(
    service: RecordService,
    meta: ObjectMeta,
    records: list[Record],
    master: Record,
    picked: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Screen:
    ordered = _ordered(records, master)
    display = Display(service)
    display.prime(meta, ordered)
    access = service.field_access(meta)
    screen = Screen(meta, ordered, master, {r.id: meta.record_name(r.values) for r in ordered})
    created = meta.fields["created_at"]
    screen.created = {r.id: display.text(created, r.get("created_at")) for r in ordered}
    for item in _choosable_fields(service, meta):
        values = [record.get(item.name) for record in ordered]
        choices = [
            Choice(record.id, display.text(item, value), is_empty(value))
            for record, value in zip(ordered, values, strict=True)
        ]
        same = all(_same(values[0], value) for value in values[1:])
        filled = [value for value in values if not is_empty(value)]
        combinable = item.type in LIST_TYPES and len(filled) > 1
        choosable = access.get(item.name) == "edit" and not same
        default = next(
            (str(r.id) for r, v in zip(ordered, values, strict=True) if not is_empty(v)),
            str(master.id),
        )
        if combinable:
            default = COMBINE
        chosen = (picked or {}).get(item.name, default)
        allowed = {str(r.id) for r in ordered} | ({COMBINE} if combinable else set())
        if chosen not in allowed:
            chosen = default
        note = ""
        if not same and not choosable:
            note = "Calculated." if item.computed else "You may not change it: the master's stays."
        screen.rows.append(
            FieldRow(
                item,
                choices,
                chosen if choosable else str(master.id),
                choosable,
                same,
                combinable,
                (errors or {}).get(item.name, ""),
                note,
            )
        )
    return screen


def chosen_values(screen: Screen, picked: dict[str, str]) -> dict[str, Any]:
    """What the master must change to: the chosen values that differ from its own."""
    by_id = {record.id: record for record in screen.records}
    changes: dict[str, Any] = {}
    for row in screen.rows:
        if not row.choosable:
            continue
        item = row.item
        choice = picked.get(item.name, row.chosen)
        if choice == COMBINE and row.combinable:
            value = _combined(item, screen.records)
        elif bounded_int(choice, minimum=1) in by_id:
            value = by_id[int(choice)].get(item.name)
        else:
            raise BadQuery(f"Choose which value of {item.label} to keep.", field=item.name)
        if not _same(value, screen.master.get(item.name)):
            changes[item.name] = to_json(item, value)
    return changes


def _render(screen: Screen, status: int = 200, message: str = ""):
    return render_template(
        "merge/screen.html",
        screen=screen,
        message=message,
        detail_url=detail_url,
        list_url=list_url(screen.meta.name),
        combine=COMBINE,
    ), status


# --------------------------------------------------------------------------- routes


@bp.get("/<object_name>/merge")
@login_required
def screen(object_name: str):
    service = request_service()
    meta = _merge_object(service, object_name)
    ids = parse_ids(request.args.getlist("ids"))
    records = _load(service, meta, ids)
    read_audit.listed(meta, [record.id for record in records], via="merge")
    wanted = request.args.get("winner", "")
    master = next((r for r in records if str(r.id) == wanted), None) or _oldest(records)
    return _render(build_screen(service, meta, records, master))


@bp.post("/<object_name>/merge")
@login_required
def merge(object_name: str):
    service = request_service()
    meta = _merge_object(service, object_name)
    ids = parse_ids(request.form.getlist("ids"))
    records = _load(service, meta, ids)
    winner = request.form.get("winner", "")
    master = next((r for r in records if str(r.id) == winner), None)
    if master is None:
        raise BadQuery("Choose the record to keep among those merged.", field="winner")
    picked = {
        key.removeprefix("choice_"): value
        for key, value in request.form.items()
        if key.startswith("choice_")
    }
    changed = [
        record
        for record in records
        if request.form.get(f"version_{record.id}", "") != str(record.version)
    ]
    if changed:
        names = ", ".join(meta.record_name(record.values) for record in changed)
        screen = build_screen(service, meta, records, master, picked)
        return _render(
            screen,
            409,
            f"Someone changed {names} since you opened this screen, so nothing was merged. "
            "The screen now shows the current values: check your choices and merge again.",
        )
    screen = build_screen(service, meta, records, master, picked)
    try:
        values = chosen_values(screen, picked)
        losers = [record.id for record in records if record.id != master.id]
        service.merge(meta.name, master.id, losers, values=values, version=master.version)
    except Conflict as exc:
        fresh = _load(service, meta, ids)
        master = next(r for r in fresh if r.id == master.id)
        return _render(
            build_screen(service, meta, fresh, master, picked),
            409,
            f"{exc.message} Nothing was merged.",
        )
    except (ValidationFailed, BadQuery) as exc:
        errors = dict(exc.errors) if isinstance(exc, ValidationFailed) else {}
        if isinstance(exc, BadQuery) and exc.field:
            errors[exc.field] = exc.message
        screen = build_screen(service, meta, records, master, picked, errors)
        on_screen = {row.item.name for row in screen.rows}
        elsewhere = [message for key, message in errors.items() if key not in on_screen]
        general = " ".join(elsewhere) or "Correct the values marked below."
        general = f"Nothing was merged. {general}"
        return _render(screen, 422, general)
    count = len(losers)
    flash(
        f"Merged {count} {meta.label.lower() if count == 1 else meta.label_plural.lower()} "
        f"into {meta.record_name(master.values)}.",
        "success",
    )
    return redirect(detail_url(meta.name, master.id), code=303)
