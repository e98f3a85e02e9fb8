"""List pages of every object: columns, sorting, filters, search, "load more", bulk actions,
and the lookup type-ahead that forms use.

The page speaks the shared list syntax of :mod:`bastion.data.params` (the API and
exports read the same query string), plus ``q`` (search box) and ``columns``. Pages are
keyset-paginated: "Load more" appends the next rows with htmx, or opens the next page
as a plain link without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BuildError

from bastion.access import login_required
from bastion.data import blind_index
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery, RecordError
from bastion.data.params import CONTROL_PARAMS, parse_filter_key, parse_list_params
from bastion.data.query import OPERATORS, AnyOf, Filter, SortKey, parse_sort
from bastion.data.records import Page, RecordService
from bastion.web import read_audit
from bastion.web.params import MAX_ID, bounded_int
from bastion.web.record_display import Display, user_names
from bastion.web.records_common import (
    SEARCH_TYPES,
    bp,
    list_url,
    object_for,
    query_string,
    records,
    search_field,
)

DEFAULT_COLUMNS = 4
MAX_COLUMNS = 12
MAX_FILTER_INPUTS = 12
LOOKUP_LIMIT = 10
MAX_BULK = 500
#: Types a list shows poorly: left out of the default columns.
WIDE_TYPES = frozenset({"long_text", "many_to_many", "multi_picklist", "record_link"})
#: Parameters that belong to one page of a list, not to the list itself.
PAGE_ONLY = ("cursor", "partial", "view")
RANGE_TYPES = frozenset({"integer", "decimal", "percent", "currency", "date", "datetime"})
CONTAINS_TYPES = frozenset({"text", "email", "phone", "url", "auto_number", "long_text"})
#: The most fields the search box matches (one query each per page).
MAX_SEARCH_FIELDS = 12


@dataclass
class Column:
    field: FieldMeta
    sort_url: str | None = None
    #: "ascending" / "descending" when the list is sorted by this column.
    sorted: str = ""


@dataclass
class FilterInput:
    field: FieldMeta
    kind: str  # contains, choice, boolean, range, owner, exact
    #: (parameter name, current value, label) of each input.
    inputs: list[tuple[str, str, str]]
    options: list[tuple[str, str]] = field(default_factory=list)
    input_type: str = "text"


@dataclass
class ActiveFilter:
    key: str
    label: str
    remove_url: str


@dataclass
class ListState:
    meta: ObjectMeta
    columns: list[Column]
    page: Page
    display: Display
    args: MultiDict
    error: str = ""
    q: str = ""
    #: The first of ``search_fields`` (the name, or what it is built from), or None.
    search: FieldMeta | None = None
    #: The fields the search box matches: any of them containing ``q`` is a match.
    search_fields: list[FieldMeta] = field(default_factory=list)
    filter_inputs: list[FilterInput] = field(default_factory=list)
    hidden_filters: list[tuple[str, str]] = field(default_factory=list)
    active: list[ActiveFilter] = field(default_factory=list)
    next_url: str | None = None
    filtered: bool = False


# --------------------------------------------------------------------------- columns


def default_columns(service: RecordService, meta: ObjectMeta) -> list[FieldMeta]:
    """The name field, a few declared fields and the owner."""
    from bastion.data.formulas import referenced_names

    readable = {item.name: item for item in service.readable(meta)}
    chosen: list[FieldMeta] = []
    named = readable.get(meta.name_field or "")
    if named is not None:
        chosen.append(named)
    parts = referenced_names(named.formula) if named is not None and named.formula else set()
    for name, item in meta.declared_fields.items():
        if len(chosen) >= DEFAULT_COLUMNS + (1 if named else 0):
            break
        usable = name in readable and name not in parts and item.type not in WIDE_TYPES
        if usable and item not in chosen:
            chosen.append(item)
    if "owner" in readable:
        chosen.append(readable["owner"])
    return chosen


def chosen_columns(service: RecordService, meta: ObjectMeta, args: MultiDict) -> list[FieldMeta]:
    names: list[str] = []
    for value in args.getlist("columns"):
        for name in value.split(","):
            if name.strip() and name.strip() not in names:
                names.append(name.strip())
    if not names:
        return default_columns(service, meta)
    if len(names) > MAX_COLUMNS:
        raise BadQuery(f"Show at most {MAX_COLUMNS} columns.", field="columns")
    return [service.readable_field(meta, name) for name in names]


def _columns(meta: ObjectMeta, fields: list[FieldMeta], keys: list[SortKey], args: MultiDict):
    first = keys[0] if keys else None
    columns = []
    for item in fields:
        column = Column(item)
        if item.sortable and item.in_row:
            descending = first is not None and first.field == item.name and not first.descending
            wanted = f"-{item.name}" if descending else item.name
            column.sort_url = list_url(meta.name, args, sort=wanted, cursor=None, partial=None)
        if first is not None and first.field == item.name:
            column.sorted = "descending" if first.descending else "ascending"
        columns.append(column)
    return columns


# --------------------------------------------------------------------------- filters


def filter_inputs(service: RecordService, meta: ObjectMeta, args: MultiDict) -> list[FilterInput]:
    """A filter form from the field types (only fields the user may read)."""
    access = service.field_access(meta)
    inputs: list[FilterInput] = []
    if access.get("owner", "hidden") != "hidden" and service.user is not None:
        inputs.append(
            FilterInput(
                meta.fields["owner"],
                "owner",
                [("owner", args.get("owner", ""), "Owner")],
                options=[("", "Anyone"), (str(service.user.id), "Me")],
            )
        )
    for name, item in meta.declared_fields.items():
        if len(inputs) >= MAX_FILTER_INPUTS:
            break
        if access.get(name, "hidden") == "hidden":
            continue
        if blind_index.has_index(item):  # encrypted: only the exact value can be found
            label = f"{item.label} (exact value)"
            inputs.append(FilterInput(item, "exact", [(name, args.get(name, ""), label)]))
            continue
        if not item.filterable:
            continue
        kind = item.type
        if kind in CONTAINS_TYPES:
            key = f"{name}__contains"
            inputs.append(FilterInput(item, "contains", [(key, args.get(key, ""), item.label)]))
        elif kind in {"picklist", "multi_picklist"}:
            options = [("", "Any")] + [(o, o) for o in item.options]
            inputs.append(
                FilterInput(item, "choice", [(name, args.get(name, ""), item.label)], options)
            )
        elif kind == "boolean":
            options = [("", "Any"), ("true", "Yes"), ("false", "No")]
            inputs.append(
                FilterInput(item, "choice", [(name, args.get(name, ""), item.label)], options)
            )
        elif kind in RANGE_TYPES:
            upper = "lt" if kind == "datetime" else "lte"
            low, high = f"{name}__gte", f"{name}__{upper}"
            words = ("from", "before") if kind == "datetime" else ("from", "to")
            input_type = "date" if kind in {"date", "datetime"} else "number"
            inputs.append(
                FilterInput(
                    item,
                    "range",
                    [
                        (low, args.get(low, ""), f"{item.label} {words[0]}"),
                        (high, args.get(high, ""), f"{item.label} {words[1]}"),
                    ],
                    input_type=input_type,
                )
            )
    return inputs


def _filter_label(service: RecordService, meta: ObjectMeta, item: Filter, display: Display) -> str:
    """ "Account is Acme Bank" for a filter, naming records only the user may read."""
    labels, current, target_field = [], meta, None
    for part in item.path.split("."):
        target_field = current.fields.get(part)
        if target_field is None:
            return f"{item.path} {OPERATORS.get(item.op, item.op)} {item.value}"
        labels.append(target_field.label)
        if target_field.target and target_field.target != "users":
            current = service.catalog.objects.get(target_field.target, current)
    value = str(item.value)
    if target_field is not None and target_field.type in {"lookup", "many_to_many"}:
        ids = [bounded_int(v.strip()) for v in value.split(",")]
        target = target_field.target or ""
        value = ", ".join((display.name(target, i) or f"#{i}") if i else "?" for i in ids)
    op = "is" if item.op == "eq" else OPERATORS.get(item.op, item.op)
    path = ": ".join(labels)
    if item.op == "empty":
        return f"{path} is {'empty' if value.lower() != 'false' else 'filled in'}"
    return f"{path} {op} {value}"


# --------------------------------------------------------------------------- search box


def search_fields(service: RecordService, meta: ObjectMeta) -> list[FieldMeta]:
    """The fields the search box matches: the name (or its parts), then searchable ones.

    Only fields the user may read, that the database can filter ("contains" on a stored,
    unencrypted text column): a search must never reveal what a hidden field holds.
    """
    access = service.field_access(meta)
    found: list[FieldMeta] = []
    primary = search_field(service, meta)
    if primary is not None:
        found.append(primary)
    for item in meta.declared_fields.values():
        if len(found) >= MAX_SEARCH_FIELDS:
            break
        usable = (
            item.searchable
            and access.get(item.name, "hidden") != "hidden"
            and item.filterable
            and item.in_row
            and item.type in SEARCH_TYPES
        )
        if usable and item not in found:
            found.append(item)
    return found


def search_filter(fields: list[FieldMeta], text: str) -> AnyOf | None:
    """The search box as one filter: ``text`` in any of ``fields``."""
    if not fields or not text:
        return None
    return AnyOf(tuple(Filter(item.name, "contains", text) for item in fields))


# --------------------------------------------------------------------------- building


def build_list(service: RecordService, meta: ObjectMeta, args: MultiDict) -> tuple[ListState, int]:
    display = Display(service)
    state = ListState(meta, [], Page([], None), display, args)
    state.search_fields = search_fields(service, meta)
    state.search = state.search_fields[0] if state.search_fields else None
    status = 200
    try:
        params = parse_list_params(args.items(multi=True))
        fields = chosen_columns(service, meta, args)
        keys = parse_sort(params.sort) or service.default_sort(meta)
        filters = list(params.filters)
        state.filtered = bool(filters) or bool(params.q)
        state.q = params.q
        wanted = {item.name for item in fields}
        if meta.name_field and service.field_access(meta).get(meta.name_field) != "hidden":
            wanted.add(meta.name_field)
        searched = search_filter(state.search_fields, params.q) if params.q else None
        state.page = service.query(
            meta.name,
            filters=filters if searched is None else [*filters, searched],
            sort=params.sort,
            limit=params.limit,
            cursor=params.cursor,
            fields=wanted,
        )
        state.columns = _columns(meta, fields, keys, args)
        display.prime(meta, state.page.records)
        for item in params.filters:
            key = item.path if item.op == "eq" else f"{item.path}__{item.op}"
            state.active.append(
                ActiveFilter(
                    key,
                    _filter_label(service, meta, item, display),
                    list_url(meta.name, args, **{key: None}, cursor=None, partial=None),
                )
            )
        if state.page.next_cursor:
            state.next_url = list_url(meta.name, args, cursor=state.page.next_cursor, partial=None)
    except BadQuery as exc:
        state.error = exc.message
        state.columns = _columns(meta, default_columns(service, meta), [], MultiDict())
        status = 400
    state.filter_inputs = filter_inputs(service, meta, args)
    shown = {name for entry in state.filter_inputs for name, _, _ in entry.inputs}
    state.hidden_filters = [
        (key, value)
        for key, value in args.items(multi=True)
        if key not in shown and key not in CONTROL_PARAMS and _is_filter(key)
    ]
    return state, status


def _is_filter(key: str) -> bool:
    try:
        parse_filter_key(key)
    except BadQuery:
        return False
    return True


def export_links(meta: ObjectMeta, args: MultiDict) -> list[tuple[str, str]]:
    """CSV and JSON exports of this list, when the export module serves them."""
    if "records_export.export" not in current_app.view_functions:
        return []
    service = records()
    if not service.can(meta.name, "export"):
        return []
    kept = query_string(args, **dict.fromkeys(PAGE_ONLY), limit=None)
    links = []
    for fmt in ("csv", "json"):
        try:
            url = url_for("records_export.export", object=meta.name, format=fmt)
        except BuildError:
            return []
        links.append((fmt.upper(), f"{url}?{kept}" if kept else url))
    return links


# --------------------------------------------------------------------------- routes


@bp.get("/<object>")
@login_required
def list_records(object: str):
    service = records()
    meta = object_for(object)
    args = request.args
    view_id = args.get("view")
    if view_id and len(args) == 1:
        from bastion.web.saved_views import open_view

        opened = open_view(meta, view_id)
        if opened is not None:
            return opened  # else: a view of the whole list, shown as it is
    state, status = build_list(service, meta, args)
    read_audit.listed(meta, [record.id for record in state.page.records])
    can_edit, can_delete = service.can(meta.name, "edit"), service.can(meta.name, "delete")
    bulk = can_edit or can_delete
    if args.get("partial") == "rows" and request.htmx:
        return render_template("records/_list_rows.html", state=state, bulk=bulk), status
    from bastion.web.record_forms import owner_choices
    from bastion.web.saved_views import views_of

    context = {
        "state": state,
        "meta": meta,
        "bulk": bulk,
        "owners": owner_choices("") if can_edit else [],
        "can_create": service.can(meta.name, "create"),
        "can_edit": can_edit,
        "can_delete": can_delete,
        "can_merge": can_edit and can_delete and merge_available(),
        "list_url_without_q": list_url(meta.name, args, q=None, cursor=None, partial=None),
        "exports": export_links(meta, args),
        "import_url": (
            url_for("imports.upload", object=meta.name)
            if "imports.upload" in current_app.view_functions
            and service.can(meta.name, "import")
            and service.can(meta.name, "create")
            else None
        ),
        "views": views_of(meta),
        "current_view": bounded_int(view_id),
        "saved_query": query_string(args, **dict.fromkeys(PAGE_ONLY)),
        "clear_url": list_url(meta.name, _kept(args, "columns", "sort")),
        "all_fields": [item for item in service.readable(meta) if item.name != "version"],
        "shown_columns": [column.field.name for column in state.columns],
    }
    return render_template("records/list.html", **context), status


def _kept(args: MultiDict, *names: str) -> list[tuple[str, str]]:
    return [(key, value) for key, value in args.items(multi=True) if key in names]


@bp.get("/<object>/lookup")
@login_required
def lookup(object: str):
    """Records of ``object`` the user may read whose name contains ``q`` (type-ahead)."""
    service = records()
    meta = object_for(object)
    text = request.args.get("q", "").strip()[:200]
    filters, ids = [], None
    search = search_field(service, meta)
    number = text.lstrip("#")
    if number.isdigit() and bounded_int(number, minimum=1, maximum=MAX_ID):
        ids = [int(number)]
    elif text and search is not None:
        filters.append(Filter(search.name, "contains", text))
    wanted = {"id"}
    if meta.name_field and service.field_access(meta).get(meta.name_field) != "hidden":
        wanted.add(meta.name_field)
    page = service.query(meta.name, filters=filters, limit=LOOKUP_LIMIT, ids=ids, fields=wanted)
    options = [{"id": r.id, "name": meta.record_name(r.values)} for r in page.records]
    read_audit.listed(meta, [r.id for r in page.records], via="lookup")
    if request.accept_mimetypes.best == "application/json" or request.args.get("format") == "json":
        return jsonify({"data": options, "more": page.next_cursor is not None})
    return render_template("records/lookup.html", meta=meta, options=options, q=text, search=search)


@bp.post("/<object>/bulk")
@login_required
def bulk(object: str):
    """Change the owner of, or delete, the chosen records: each one through the service."""
    service = records()
    meta = object_for(object)
    form = request.form
    action = form.get("action", "")
    back = _back_url(meta, form.get("back", ""))
    chosen: dict[int, None] = {}  # distinct ids in the order given (a list would be quadratic)
    for raw in form.getlist("ids"):
        number = bounded_int(raw, minimum=1)
        if number is not None:
            chosen[number] = None
            if len(chosen) > MAX_BULK:  # refused below; reading the rest is wasted work
                break
    ids = list(chosen)
    if action == "merge" and merge_available() and ids:
        # The merge screen (bastion.web.merge) checks the permissions and the count.
        return redirect(
            url_for("merge.screen", object_name=meta.name, ids=",".join(map(str, ids))), 303
        )
    if action not in {"owner", "delete"}:
        return _bulk_refused(meta, back, "Choose what to do with the selected records.")
    if not ids:
        return _bulk_refused(meta, back, "Select at least one record first.")
    if len(ids) > MAX_BULK:
        return _bulk_refused(meta, back, f"Select at most {MAX_BULK} records at a time.")
    object_for(object, "delete" if action == "delete" else "edit")
    display = Display(service)
    owner = None
    if action == "owner":
        owner = bounded_int(form.get("owner", ""), minimum=1)
        if owner is None:
            return _bulk_refused(meta, back, "Choose the new owner.")
    if action == "delete" and form.get("confirm") != "yes":
        found = service.query(meta.name, ids=ids, limit=MAX_BULK).records
        return render_template(
            "records/bulk_confirm.html",
            meta=meta,
            found=found,
            missing=len(ids) - len(found),
            back=back,
            display=display,
        )
    done, failures = _apply_bulk(service, meta, ids, action, owner)
    names = user_names([owner]).get(owner, f"#{owner}") if owner else ""
    return render_template(
        "records/bulk_result.html",
        meta=meta,
        action=action,
        done=done,
        failures=failures,
        back=back,
        owner_name=names,
    )


def merge_available() -> bool:
    return "merge.screen" in current_app.view_functions


def _apply_bulk(
    service: RecordService, meta: ObjectMeta, ids: list[int], action: str, owner: int | None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Each record on its own: one refused record does not undo the others."""
    done: list[str] = []
    failures: list[tuple[str, str]] = []
    for record_id in ids:
        label = f"{meta.label} #{record_id}"
        try:
            record = service.get(meta.name, record_id)
            label = meta.record_name(record.values)
            if action == "delete":
                service.delete(meta.name, record_id, version=record.version)
            else:
                service.update(meta.name, record_id, {"owner": owner}, version=record.version)
            done.append(label)
        except RecordError as exc:
            errors = getattr(exc, "errors", None)
            message = "; ".join(errors.values()) if isinstance(errors, dict) else exc.message
            failures.append((label, message))
    return done, failures


def _bulk_refused(meta: ObjectMeta, back: str, message: str):
    return render_template(
        "records/bulk_result.html",
        meta=meta,
        action="",
        done=[],
        failures=[("", message)],
        back=back,
        owner_name="",
    ), 400


def _back_url(meta: ObjectMeta, raw: str) -> str:
    """The list the user came from; only this object's list, never another site."""
    base = url_for("records.list_records", object=meta.name)
    if raw.startswith(base + "?") or raw == base:
        return raw
    return base
