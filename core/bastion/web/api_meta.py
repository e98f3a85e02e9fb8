"""The metadata part of the REST API: objects, fields, and changing them.

    GET    /api/v1/meta                          objects the caller may read
    GET    /api/v1/meta/<object>                 one object
    GET    /api/v1/meta/<object>/fields/<field>  one field's definition
    GET    /api/v1/openapi.json                  the OpenAPI 3.1 document, for the caller
    POST   /api/v1/meta                          create a custom object      (admin.schema)
    PATCH  /api/v1/meta/<object>                 relabel, rules, name field  (admin.schema)
    POST   /api/v1/meta/<object>/fields          add a custom field          (admin.schema)
    PATCH  /api/v1/meta/<object>/fields/<field>  change a field's settings   (admin.schema)
    DELETE /api/v1/meta/<object>/fields/<field>  remove a custom field, data kept (admin.schema)

What a caller is shown is what they may use: objects they may read, with only the
fields readable to them, the access they have to each field ("edit" or "read") and the
actions they may take on the object. A definition change takes effect at once, in this
process and in every other on its next request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, url_for
from flask_login import current_user

from bastion import audit
from bastion.access import has_permission, login_required, requires
from bastion.data.catalog import FieldMeta, ObjectMeta, UnknownObject, current_catalog
from bastion.data.definitions import (
    DefinitionError,
    add_field,
    check_applicable,
    create_object,
    definition_as_json,
    field_from_spec,
    remove_field,
    update_field,
    update_object,
)
from bastion.data.errors import NotFound
from bastion.data.openapi import SCHEMA_PERMISSION, build_document
from bastion.data.records import RecordService
from bastion.data.requests import forget_request_service, request_service
from bastion.models import OBJECT_ACTIONS
from bastion.web.api_records import (
    answer_errors_as_problems,
    api_problem,
    json_object,
    json_response,
)

bp = Blueprint("api_meta", __name__, url_prefix="/api/v1")


# --------------------------------------------------------------------------- JSON


def object_json(service: RecordService, meta: ObjectMeta) -> dict[str, Any]:
    """An object as the caller may see it: readable fields, their access, allowed actions."""
    access = service.field_access(meta)
    shown = access.get(meta.name_field or "", "hidden") != "hidden"
    return {
        "name": meta.name,
        "label": meta.label,
        "label_plural": meta.label_plural,
        "icon": meta.icon,
        "description": meta.description,
        "custom": meta.custom,
        "plugin": meta.plugin,
        "name_field": meta.name_field if shown else None,
        "actions": [action for action in OBJECT_ACTIONS if service.can(meta.name, action)],
        "fields": [field_json(item, access[item.name]) for item in service.readable(meta)],
        "links": {"records": f"/api/v1/{meta.name}", "meta": f"/api/v1/meta/{meta.name}"},
    }


def field_json(item: FieldMeta, access: str) -> dict[str, Any]:
    return {**definition_as_json(item), "access": access}


def _readable_object(service: RecordService, name: str) -> ObjectMeta:
    """An object the caller may read: 404 when unknown, 403 when not theirs to read,
    exactly as ``/api/v1/<object>`` answers."""
    return service.require(name, "read")


def _existing_object(name: str) -> ObjectMeta:
    try:
        return current_catalog().get(name)
    except UnknownObject:
        raise NotFound(f"There is no object {name!r}.") from None


def _existing_field(meta: ObjectMeta, name: str) -> FieldMeta:
    item = meta.fields.get(name)
    if item is None:
        raise NotFound(f"{meta.label} has no field {name!r}.", field=name)
    return item


def _definition_problem(exc: DefinitionError, subject: str | None = None) -> Response:
    """422 naming the field being defined (``subject``) and the setting at fault."""
    message = str(exc)
    if subject and subject not in message:
        message = f"{subject}: {message}"
    key = exc.field or ""
    return api_problem(422, "Invalid definition", message, field=exc.field, errors={key: message})


def _field_json_after_change(object_name: str, item: FieldMeta) -> dict[str, Any]:
    """A changed field's definition with the caller's access to it (as of the change)."""
    service = _changed()
    access = service.field_access(service.object(object_name)).get(item.name, "hidden")
    return field_json(item, access)


def _audit(action: str, object_name: str, changes: Mapping[str, Any]) -> None:
    # The same entries as the admin pages write: definitions only, never record values.
    audit.record(f"schema.{action}", object_type=object_name, changes=dict(changes))


def _changed() -> RecordService:
    """After a definition change: the rest of this request sees it."""
    forget_request_service()
    return request_service()


answer_errors_as_problems(bp)


@bp.errorhandler(DefinitionError)
def _definition_error(exc: DefinitionError) -> Response:
    return _definition_problem(exc)


# --------------------------------------------------------------------------- reading


@bp.get("/meta")
@login_required
def objects() -> Response:
    service = request_service()
    found = [
        object_json(service, meta)
        for meta in service.catalog.active()
        if service.can(meta.name, "read")
    ]
    return json_response({"data": found})


@bp.get("/meta/<object_name>")
@login_required
def one_object(object_name: str) -> Response:
    service = request_service()
    return json_response(object_json(service, _readable_object(service, object_name)))


@bp.get("/meta/<object_name>/fields/<field_name>")
@login_required
def one_field(object_name: str, field_name: str) -> Response:
    service = request_service()
    meta = _readable_object(service, object_name)
    access = service.field_access(meta)
    if access.get(field_name, "hidden") == "hidden":
        raise NotFound(f"{meta.label} has no field {field_name!r}.", field=field_name)
    return json_response(field_json(meta.fields[field_name], access[field_name]))


@bp.get("/openapi.json")
@login_required
def openapi_document() -> Response:
    """Generated now, for the caller: their objects, readable fields and operations."""
    service = request_service()
    document = build_document(service, schema_admin=has_permission(current_user, SCHEMA_PERMISSION))
    return json_response(document)


# --------------------------------------------------------------------------- changing


def _check_field_specs(raw_fields: Any) -> None:
    """Check each field of a new object alone first, so an error says which one."""
    if not isinstance(raw_fields, list):
        return  # create_object explains the shape
    for index, spec in enumerate(raw_fields):
        label = spec.get("name") if isinstance(spec, Mapping) else None
        subject = f"fields[{index}]" + (f" ({label})" if isinstance(label, str) else "")
        try:
            check_applicable(field_from_spec(spec).type, spec)
        except DefinitionError as exc:
            key = f"fields[{index}]" + (f".{exc.field}" if exc.field else "")
            raise DefinitionError(f"{subject}: {exc}", key) from None


@bp.post("/meta")
@requires(SCHEMA_PERMISSION)
def new_object() -> Response:
    spec = json_object()
    _check_field_specs(spec.get("fields"))
    try:
        created = create_object(spec)
    except DefinitionError as exc:
        name = spec.get("name")
        return _definition_problem(exc, name if isinstance(name, str) else None)
    _audit("object_create", created.name, {"fields": sorted(created.declared_fields)})
    service = _changed()
    return json_response(
        object_json(service, service.object(created.name)),
        201,
        {"Location": url_for(".one_object", object_name=created.name)},
    )


@bp.patch("/meta/<object_name>")
@requires(SCHEMA_PERMISSION)
def change_object(object_name: str) -> Response:
    meta = _existing_object(object_name)
    changes = json_object()
    update_object(meta.name, changes)
    _audit("object_update", meta.name, changes)
    service = _changed()
    return json_response(object_json(service, service.object(meta.name)))


@bp.post("/meta/<object_name>/fields")
@requires(SCHEMA_PERMISSION)
def new_field(object_name: str) -> Response:
    meta = _existing_object(object_name)
    spec = json_object()
    name = spec.get("name") if isinstance(spec.get("name"), str) else None
    try:
        item = add_field(meta.name, spec)
    except DefinitionError as exc:
        return _definition_problem(exc, name)
    _audit("field_add", meta.name, {"field": item.name, **spec})
    return json_response(
        _field_json_after_change(meta.name, item),
        201,
        {"Location": url_for(".one_field", object_name=meta.name, field_name=item.name)},
    )


def _changeable_field(object_name: str, field_name: str) -> tuple[ObjectMeta, FieldMeta]:
    meta = _existing_object(object_name)
    item = _existing_field(meta, field_name)
    if item.standard:
        raise DefinitionError(
            f"{item.label} is a standard field of every object and cannot be changed.",
            field_name,
        )
    return meta, item


@bp.patch("/meta/<object_name>/fields/<field_name>")
@requires(SCHEMA_PERMISSION)
def change_field(object_name: str, field_name: str) -> Response:
    meta, item = _changeable_field(object_name, field_name)
    changes = json_object()
    try:
        after = update_field(meta.name, item.name, changes)
    except DefinitionError as exc:
        return _definition_problem(exc, item.name)
    _audit("field_update", meta.name, {"field": item.name, **changes})
    return json_response(_field_json_after_change(meta.name, after))


@bp.delete("/meta/<object_name>/fields/<field_name>")
@requires(SCHEMA_PERMISSION)
def delete_field(object_name: str, field_name: str) -> Response:
    meta, item = _changeable_field(object_name, field_name)
    try:
        remove_field(meta.name, item.name)
    except DefinitionError as exc:
        return _definition_problem(exc, item.name)
    _audit("field_remove", meta.name, {"field": item.name})
    _changed()
    return Response(status=204)
