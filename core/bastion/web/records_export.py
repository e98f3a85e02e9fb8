"""Exports of list views: ``/o/<object>/export.csv`` / ``.json`` and the API's
``GET /api/v1/<object>/export?format=csv|json``.

Both take the list page's query string (filters, ``sort``, ``fields``, and the page's
search box ``q``), need the ``export`` permission on the object and a recent
authentication (a token counts as one), and stream the file through the user's record
service (:mod:`bastion.data.exporter`), so only records in their scope and fields they
may read ever leave. Each export is audited before it starts.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user

from bastion.access import login_required
from bastion.data.errors import BadQuery, RecordError
from bastion.data.exporter import Export, prepare_export
from bastion.data.query import AnyOf, Filter
from bastion.data.requests import request_service
from bastion.reauth import recent_auth_required

bp = Blueprint("records_export", __name__)


def _search_filter(object_name: str) -> list[Filter | AnyOf]:
    """The list page's search box, as the list applies it: an export holds what it shows."""
    text = request.args.get("q", "").strip()[:200]
    if not text:
        return []
    from bastion.web.records_list import search_fields, search_filter

    service = request_service()
    searched = search_filter(search_fields(service, service.object(object_name)), text)
    return [] if searched is None else [searched]


def _prepared(object_name: str, export_format: str) -> Export:
    return prepare_export(
        request_service(),
        object_name,
        request.args.items(multi=True),
        export_format,
        extra_filters=_search_filter(object_name),
        actor=f"user:{current_user.id}",
    )


def _stream(export: Export, *, bom: bool) -> Response:
    response = Response(
        stream_with_context(export.chunks(bom=bom)), mimetype=export.media_type.split(";")[0]
    )
    if export.format == "csv":
        response.headers["Content-Type"] = export.media_type
    name = export.file_name(date.today().isoformat())
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/o/<object>/export.<any(csv, json):format>")
@login_required
@recent_auth_required
def export(object: str, format: str):
    """The list's records as a file to download (CSV with a byte-order mark, for Excel)."""
    try:
        prepared = _prepared(object, format)
    except RecordError as exc:
        return render_template(
            "error.html", status=exc.status, title=exc.title, detail=exc.message
        ), exc.status
    return _stream(prepared, bom=format == "csv")


@bp.get("/api/v1/<object>/export")
@login_required
@recent_auth_required
def api_export(object: str):
    """The records of a list query as CSV or JSON (``format``, default json)."""
    from bastion.web.api_records import record_problem

    export_format = request.args.get("format", "json").strip().lower()
    try:
        if export_format not in ("csv", "json"):
            raise BadQuery("format must be csv or json.", field="format")
        prepared = _prepared(object, export_format)
    except RecordError as exc:
        return record_problem(exc)
    return _stream(prepared, bom=False)
