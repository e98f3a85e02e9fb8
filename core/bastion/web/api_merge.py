"""Merging records through the REST API.

    POST /api/v1/<object>/<id>/merge   {"ids": [9, 12], "values": {...}, "version": 3}

``<id>`` is the record kept (the master), ``ids`` the records merged into it (deleted;
everything pointing at them re-pointed to the master), ``values`` the fields the master
takes from them, as in a PATCH, and ``version`` the master's version as read (409 when
stale, nothing changed). Answers the master as ``GET /api/v1/<object>/<id>`` would. Needs
edit and delete on the object, like the merge screen.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from bastion.access import login_required
from bastion.data.records import MAX_MERGED
from bastion.data.requests import request_service
from bastion.data.serialize import record_to_json
from bastion.web.api_records import (
    BodyError,
    answer_errors_as_problems,
    json_object,
    json_response,
)

bp = Blueprint("api_merge", __name__, url_prefix="/api/v1")

BODY_KEYS = frozenset({"ids", "values", "version"})


answer_errors_as_problems(bp)


def _invalid(message: str, field: str) -> BodyError:
    return BodyError(422, "Invalid body", message, field=field)


def _merge_body(record_id: int) -> tuple[list[int], dict[str, Any], int]:
    body = json_object()
    unknown = sorted(set(body) - BODY_KEYS)
    if unknown:
        raise _invalid(
            f"Unknown member {unknown[0]!r}: send ids, values and version.", field=unknown[0]
        )
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(type(i) is int and i > 0 for i in ids):
        raise _invalid('ids is a list of record ids, such as {"ids": [9, 12]}.', field="ids")
    others = sorted(set(ids) - {record_id})
    if not 1 <= len(others) <= MAX_MERGED:
        raise _invalid(
            f"Give 1 to {MAX_MERGED} other records to merge into {record_id}.", field="ids"
        )
    values = body.get("values", {})
    if not isinstance(values, dict):
        raise _invalid("values maps field names to the values the master takes.", "values")
    version = body.get("version")
    if type(version) is not int:
        raise _invalid(
            'Send the master\'s version as you read it, such as "version": 3: it protects '
            "changes made since you read the record.",
            field="version",
        )
    return others, values, version


@bp.post("/<object_name>/<int:record_id>/merge")
@login_required
def merge_records(object_name: str, record_id: int) -> Response:
    service = request_service()
    meta = service.require(object_name, "edit")
    service.require(object_name, "delete")
    others, values, version = _merge_body(record_id)
    record = service.merge(meta.name, record_id, others, values=values, version=version)
    return json_response(record_to_json(service, meta, record))
