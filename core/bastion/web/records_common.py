"""The generated record pages' blueprint and what its modules share.

One blueprint, ``records``, serves every object's pages under ``/o/<object>``: lists
(:mod:`records_list`), detail, forms and inline edits (:mod:`records_detail`) and saved
views (:mod:`saved_views`). Every read and write goes through the signed-in user's
:class:`RecordService`; its refusals become the theme's error pages here, so a record
outside the user's scope is the same 404 as a missing one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from bastion import authz
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import RecordError
from bastion.data.formulas import referenced_names
from bastion.data.records import Record, RecordService
from bastion.data.requests import request_service
from bastion.plugins.contributions import NavItem

bp = Blueprint("records", __name__, url_prefix="/o")

#: Types a "contains" search makes sense on.
SEARCH_TYPES = frozenset({"text", "long_text", "email", "phone", "url", "auto_number"})
NAV_ORDER = 10


def records() -> RecordService:
    return request_service()


def object_for(name: str, action: str = "read") -> ObjectMeta:
    """The object if the user may ``action`` it (NotFound / Forbidden otherwise)."""
    return records().require(name, action)


def may(service: RecordService, meta: ObjectMeta, record: Record, action: str) -> bool:
    """Whether buttons for ``action`` on this record make sense (the service decides)."""
    if service.system:
        return True
    if not service.can(meta.name, action):
        return False
    owner = record.get("owner")
    return authz.record_decision(service.user, meta.name, action, owner).allowed


def search_field(service: RecordService, meta: ObjectMeta) -> FieldMeta | None:
    """The field the search box matches with "contains".

    The record service has no OR, so one field: the name field, or, when that is a
    formula (a contact's full name), the text field it is built from that every record
    has (the required one, such as the last name). The list filters in the database
    rather than through the search index so that it pages like any other filter and
    never lags behind a save; the global search (bastion.search) covers every
    searchable field.
    """
    access = service.field_access(meta)

    def usable(item: FieldMeta | None) -> bool:
        return (
            item is not None
            and access.get(item.name, "hidden") != "hidden"
            and item.filterable
            and item.in_row
            and item.type in SEARCH_TYPES
        )

    named = meta.fields.get(meta.name_field or "")
    if usable(named):
        return named
    if named is not None and named.formula and access.get(named.name) != "hidden":
        refs = referenced_names(named.formula)
        parts = [item for name, item in meta.fields.items() if name in refs and usable(item)]
        parts.sort(key=lambda item: not item.required)
        if parts:
            return parts[0]
    for item in meta.declared_fields.values():
        if item.searchable and usable(item):
            return item
    return None


def query_string(args: MultiDict | list[tuple[str, str]], **changes: Any) -> str:
    """``args`` with some parameters replaced (None removes them), as a query string."""
    pairs = list(args.items(multi=True)) if isinstance(args, MultiDict) else list(args)
    pairs = [(key, value) for key, value in pairs if key not in changes]
    for key, value in changes.items():
        if value is not None and value != "":
            pairs.append((key, str(value)))
    return urlencode(pairs)


def list_url(object_name: str, args: MultiDict | list[tuple[str, str]] = (), **changes: Any) -> str:
    base = url_for("records.list_records", object=object_name)
    text = query_string(MultiDict(args) if isinstance(args, list | tuple) else args, **changes)
    return f"{base}?{text}" if text else base


def wants_fragment() -> bool:
    return bool(getattr(request, "htmx", False))


@bp.errorhandler(RecordError)
def record_error(exc: RecordError):
    """The service's refusals as pages (fragments for htmx), with the right status."""
    if request.accept_mimetypes.best == "application/json":
        from bastion.web.errors import problem

        return problem(exc.status, exc.title, exc.message)
    if wants_fragment():
        return render_template("records/_message.html", message=exc.message), exc.status
    return render_template(
        "error.html", status=exc.status, title=exc.title, detail=exc.message
    ), exc.status


def object_navigation(user: Any) -> list[NavItem]:
    """One menu entry per object the user may read, ordered by label."""
    if not getattr(user, "is_authenticated", False):
        return []
    service = records()
    items = []
    for meta in sorted(service.catalog.active(), key=lambda m: m.label_plural.casefold()):
        # Internal objects (navigation=False) stay reachable by URL, links and search.
        if meta.navigation and service.can(meta.name, "read"):
            items.append(
                NavItem(
                    meta.label_plural,
                    "records.list_records",
                    icon=meta.icon,
                    order=NAV_ORDER,
                    args=(("object", meta.name),),
                )
            )
    return items


# Routes attach to ``bp`` on import; the modules import ``bp`` from here.
from bastion.web import record_history, records_detail, records_list, saved_views  # noqa: E402, F401
