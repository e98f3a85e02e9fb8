"""The records part of the REST API: list, create, read, change and delete any object.

    GET    /api/v1/<object>            ?field=value&field__op=value&sort=&limit=&cursor=&fields=
    POST   /api/v1/<object>            {"field": value, ...}            -> 201 + Location
                                       ?check_duplicates=true: 409 with ``matches`` when
                                       records the caller can read look the same
    GET    /api/v1/<object>/<id>       ?fields=a,b
    PATCH  /api/v1/<object>/<id>       {"version": 3, "field": value}   (409 when stale)
    DELETE /api/v1/<object>/<id>       ?version=3                       -> 204
    GET    /api/v1/<object>/<id>/history  ?limit=&cursor=   changes the caller may see,
                                       newest first (bastion.web.record_history)

Everything goes through the caller's RecordService, so the API has exactly the
permissions of the pages: object actions, record scope (a record out of scope is a
404, like a missing one), field security (a hidden field is an unknown field) and token
scopes. The query string is the one syntax of ``bastion.data.params``. Errors are RFC
9457 problem details with ``field`` naming the culprit and, for 422, ``errors`` mapping
each field to its message.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from bastion.access import login_required
from bastion.data.errors import DuplicatesFound, RecordError, ValidationFailed
from bastion.data.params import CONTROL_PARAMS, parse_list_params
from bastion.data.requests import request_service
from bastion.data.serialize import record_to_json, records_to_json
from bastion.web import read_audit
from bastion.web.errors import problem
from bastion.web.record_history import history_page, parse_page_params

#: Records one POST may create when its body is a JSON array.
MAX_BATCH = 200

bp = Blueprint("api_records", __name__, url_prefix="/api/v1")

#: Query parameters of the pages and exports that mean nothing to the API: refused,
#: so that a client never believes it filtered when it did not.
NOT_API_PARAMS = CONTROL_PARAMS - {"sort", "limit", "cursor", "fields"}


class BodyError(Exception):
    """A request body that is not what the endpoint takes."""

    def __init__(self, status: int, title: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.title, self.message, self.field = status, title, message, field


# --------------------------------------------------------------------------- helpers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON in the order it was built (``jsonify`` sorts keys; records read better with
    ``id`` and ``version`` first)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    response = current_app.response_class(body, status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def api_problem(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response:
    """A problem details response with extension members (``field``, ``errors``, ...)."""
    response = problem(status, title, detail, headers=headers)
    extra = {key: value for key, value in members.items() if value is not None}
    if extra:
        data = response.get_json()
        data.update(extra)
        response.set_data(json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str))
    return response


def record_problem(exc: RecordError) -> Response:
    """The problem details of anything the record service refused."""
    errors = None
    if isinstance(exc, ValidationFailed):
        errors = dict(exc.errors)
    elif exc.status == 422 and exc.field:
        errors = {exc.field: exc.message}
    matches = exc.matches if isinstance(exc, DuplicatesFound) else None
    return api_problem(
        exc.status, exc.title, exc.message, field=exc.field, errors=errors, matches=matches
    )


def body_problem(exc: BodyError) -> Response:
    errors = {exc.field or "": exc.message} if exc.status == 422 else None
    return api_problem(exc.status, exc.title, exc.message, field=exc.field, errors=errors)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_body() -> Any:
    """The request body parsed as JSON (numbers with a point as exact decimals)."""
    data = request.get_data(cache=True)
    if not data.strip():
        raise BodyError(400, "Bad request", "Send a JSON object as the request body.")
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(
            400,
            "Bad request",
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
        ) from None
    except (ValueError, RecursionError):
        raise BodyError(400, "Bad request", "The body is not valid UTF-8 JSON.") from None


def json_object() -> dict[str, Any]:
    """The request body, which must be one JSON object."""
    body = json_body()
    if not isinstance(body, dict):
        raise BodyError(
            422,
            "Invalid body",
            'The body must be a JSON object of field names and values, such as {"name": "Acme"}.',
        )
    return body


def _refuse_params(allowed: set[str]) -> None:
    for key in request.args:
        if key not in allowed:
            raise BodyError(
                400,
                "Bad query",
                f"{key!r} is not a parameter here; use {', '.join(sorted(allowed)) or 'none'}.",
                field=key,
            )


def _fields_param() -> list[str] | None:
    names = [n.strip() for n in request.args.get("fields", "").split(",") if n.strip()]
    return names or None


def _location(object_name: str, record_id: int) -> str:
    return url_for(".get_record", object_name=object_name, record_id=record_id)


def answer_errors_as_problems(blueprint: Blueprint) -> None:
    """Record and body errors of an API blueprint's routes become problem details."""
    blueprint.register_error_handler(RecordError, record_problem)
    blueprint.register_error_handler(BodyError, body_problem)


answer_errors_as_problems(bp)


# --------------------------------------------------------------------------- routes


@bp.get("/<object_name>")
@login_required
def list_records(object_name: str) -> Response:
    service = request_service()
    meta = service.require(object_name, "read")
    for key in request.args:
        if key in NOT_API_PARAMS:
            hint = " Use /api/v1/search?q= to search." if key == "q" else ""
            raise BodyError(
                400, "Bad query", f"{key!r} is not a parameter of the API.{hint}", field=key
            )
    params = parse_list_params(request.args.items(multi=True))
    page = service.query(
        meta.name,
        filters=params.filters,
        sort=params.sort,
        limit=params.limit,
        cursor=params.cursor,
        fields=params.fields,
    )
    read_audit.listed(meta, [r.id for r in page.records], via="api")
    return json_response(
        {"data": records_to_json(service, meta, page.records), "next": page.next_cursor}
    )


@bp.post("/<object_name>")
@login_required
def create_record(object_name: str) -> Response:
    service = request_service()
    meta = service.require(object_name, "create")
    _refuse_params({"check_duplicates"})
    check = request.args.get("check_duplicates", "false").strip().lower()
    if check not in {"true", "false", "1", "0"}:
        raise BodyError(
            400, "Bad query", "check_duplicates is true or false.", field="check_duplicates"
        )
    body = json_body()
    if isinstance(body, list):
        return _create_several(service, meta, body, check_duplicates=check in {"true", "1"})
    if not isinstance(body, dict):
        json_object()  # the same message as every endpoint taking one object
    record = service.create(meta.name, body, check_duplicates=check in {"true", "1"})
    return json_response(
        record_to_json(service, meta, record),
        201,
        {"Location": _location(meta.name, record.id)},
    )


def _create_several(
    service: Any, meta: Any, rows: list[Any], *, check_duplicates: bool
) -> Response:
    """A JSON array creates up to MAX_BATCH records in one transaction: all or none.

    Errors are keyed by the row's position, as "[3].email"; clients that create many
    records this way pay one request and one commit instead of one per record.
    """
    if not 1 <= len(rows) <= MAX_BATCH:
        raise BodyError(422, "Invalid body", f"Send 1 to {MAX_BATCH} records in one array.")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BodyError(
                422, "Invalid body", f"Item {index} is not a JSON object.", field=f"[{index}]"
            )
    with service.atomic():
        results = service.create_many(
            meta.name, rows, check_duplicates=check_duplicates, return_errors=True
        )
        errors: dict[str, str] = {}
        for index, result in enumerate(results):
            if isinstance(result, ValidationFailed):
                for name, message in result.errors.items():
                    errors[f"[{index}].{name}" if name else f"[{index}]"] = message
            elif isinstance(result, RecordError):
                errors[f"[{index}]"] = result.message
        if errors:
            raise ValidationFailed(errors)  # leaving atomic() rolls every row back
    ids = [int(result) for result in results]
    found = {r.id: r for r in service.query(meta.name, ids=ids, limit=MAX_BATCH).records}
    data = [record_to_json(service, meta, found[i]) for i in ids if i in found]
    return json_response({"data": data}, 201)


@bp.get("/<object_name>/<int:record_id>")
@login_required
def get_record(object_name: str, record_id: int) -> Response:
    service = request_service()
    meta = service.require(object_name, "read")
    _refuse_params({"fields"})
    record = service.get(meta.name, record_id, fields=_fields_param())
    read_audit.viewed(meta, record.id, via="api")
    return json_response(record_to_json(service, meta, record))


@bp.get("/<object_name>/<int:record_id>/history")
@login_required
def record_history(object_name: str, record_id: int) -> Response:
    """Who changed what and when, newest first; fields the caller may not read are left
    out, encrypted ones only say that they changed. Pages follow ``next`` as ``cursor``."""
    service = request_service()
    meta = service.require(object_name, "read")
    _refuse_params({"cursor", "limit"})
    cursor, limit = parse_page_params(request.args)
    record = service.get(meta.name, record_id, fields=["id"])
    items, next_cursor = history_page(service, meta, record, cursor=cursor, limit=limit)
    read_audit.viewed(meta, record.id, via="api_history")
    following = None if next_cursor is None else str(next_cursor)
    return json_response({"data": [item.as_json() for item in items], "next": following})


@bp.patch("/<object_name>/<int:record_id>")
@login_required
def update_record(object_name: str, record_id: int) -> Response:
    service = request_service()
    meta = service.require(object_name, "edit")
    _refuse_params(set())
    changes = json_object()
    if "version" not in changes:
        raise BodyError(
            422,
            "Invalid body",
            'Send the version you read with your changes, such as {"version": 3, ...}: '
            "it protects changes made since you read the record.",
            field="version",
        )
    version = changes.pop("version")
    if changes.get("id", record_id) != record_id:
        raise BodyError(
            422, "Invalid body", "The id in the body is not the record's id.", field="id"
        )
    changes.pop("id", None)
    record = service.update(meta.name, record_id, changes, version=version)
    return json_response(record_to_json(service, meta, record))


@bp.delete("/<object_name>/<int:record_id>")
@login_required
def delete_record(object_name: str, record_id: int) -> Response:
    service = request_service()
    meta = service.require(object_name, "delete")
    _refuse_params({"version"})
    raw = request.args.get("version")
    version = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise BodyError(
                400, "Bad query", "version must be the whole number you read.", field="version"
            )
        version = int(raw)
    service.delete(meta.name, record_id, version=version)
    return Response(status=204)
