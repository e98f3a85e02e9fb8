"""The OpenAPI 3.1 document of the REST API, generated from the definitions.

It is built on each request from the catalog the request sees, so a custom field added
a moment ago is in it at once. It describes the API *as the caller may use it*: only
objects they may read, only fields readable to them (a field hidden from their role is
not named), and only the operations their role and token allow. Each object gets:

* ``<object>.record`` — a record as read (computed, standard and read-only fields are
  ``readOnly``), ``<object>.create`` and ``<object>.patch`` — what a write takes (a PATCH
  must carry ``version``), ``<object>.list`` — ``{"data": [...], "next": cursor}``;
* ``/<object>`` (list, create) and ``/<object>/{id}`` (get, patch, delete) with one query
  parameter per filter it takes (``industry``, ``amount__gte``, ``name__contains``, ...).

Type mapping: decimals and percents are strings ("1234.50"), currencies
``{"amount": "12.50", "currency": "EUR"}``, dates ``format: date``, datetimes
``format: date-time`` (UTC), picklists ``enum``, lookups integer ids, many-to-many
arrays of ids, record links ``{"object": "accounts", "id": 5}``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bastion import __version__
from bastion.data import blind_index
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.query import OPERATORS, RANGE_OPS, TEXT_OPS, TEXTUAL
from bastion.data.records import DEFAULT_LIMIT, MAX_LIMIT, MAX_MERGED, RecordService
from bastion.plugins.contributions import FIELD_TYPES

API_BASE = "/api/v1"
PROBLEM_TYPE = "application/problem+json"
JSON_TYPE = "application/json"
SCHEMA_PERMISSION = "admin.schema"
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
LIST_TYPES = frozenset({"multi_picklist", "many_to_many"})


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema_ref(name: str) -> dict[str, str]:
    return _ref("schemas", name)


# --------------------------------------------------------------------------- values


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _base_schema(item: FieldMeta, *, writing: bool) -> dict[str, Any]:
    """The JSON schema of a field's non-empty value."""
    kind = item.value_type
    if kind in {"text", "long_text", "phone", "auto_number"}:
        schema: dict[str, Any] = {"type": "string"}
    elif kind == "email":
        schema = {"type": "string", "format": "email"}
    elif kind == "url":
        schema = {"type": "string", "format": "uri"}
    elif kind == "integer":
        schema = {"type": "integer"}
    elif kind in {"decimal", "percent"}:
        schema = (
            {"type": ["string", "number"]}
            if writing
            else {"type": "string", "pattern": DECIMAL_PATTERN}
        )
    elif kind == "currency":
        schema = (
            {"anyOf": [_schema_ref("MoneyInput"), {"type": "string"}, {"type": "number"}]}
            if writing
            else _schema_ref("Money")
        )
    elif kind == "date":
        schema = {"type": "string", "format": "date"}
    elif kind == "datetime":
        schema = {"type": "string", "format": "date-time"}
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "picklist":
        schema = {"type": "string", "enum": list(item.options)}
    elif kind == "multi_picklist":
        schema = {
            "type": "array",
            "items": {"type": "string", "enum": list(item.options)},
            "uniqueItems": True,
        }
    elif kind == "lookup":
        schema = {"type": "integer", "minimum": 1}
    elif kind == "many_to_many":
        schema = {"type": "array", "items": {"type": "integer", "minimum": 1}, "uniqueItems": True}
    elif kind == "record_link":
        schema = _schema_ref("RecordLink")
    else:
        schema = {}
    # A text formula has no stored column and no length limit (a concat can be long).
    stored_text = not item.standard and item.type != "formula"
    if kind in {"text", "long_text", "email", "phone", "url"} and stored_text:
        limit = item.max_length or (100_000 if kind == "long_text" else 255)
        schema["maxLength"] = max(limit, 2048) if kind == "url" else limit
        if item.pattern and kind == "text":
            schema["pattern"] = f"^(?:{item.pattern})$"
    if kind == "integer":
        low, high = _number(item.min_value), _number(item.max_value)
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema or "anyOf" in schema:
        alternatives = schema.get("anyOf", [schema])
        return {"anyOf": [*alternatives, {"type": "null"}]}
    result = dict(schema)
    kind = result.get("type")
    result["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in result:
        result["enum"] = [*result["enum"], None]
    return result


def field_schema(item: FieldMeta, *, writing: bool = False, read_only: bool = False) -> dict:
    """A field's property schema in a record (reading) or a request body (writing)."""
    schema = _base_schema(item, writing=writing)
    always_set = item.name in {"id", "version"} or item.type in LIST_TYPES
    if not always_set and not (writing and item.required):
        schema = _nullable(schema)
    schema = {**schema, "title": item.label}
    if item.help_text:
        schema["description"] = item.help_text
    if item.target:
        schema["x-target"] = item.target
        if not item.standard:
            schema.setdefault("description", f"Id of a {item.target} record.")
    schema["x-bastion-type"] = item.type
    if read_only:
        schema["readOnly"] = True
    return schema


# --------------------------------------------------------------------------- filters


def filter_operators(item: FieldMeta) -> list[str]:
    """The operators ``bastion.data.query`` accepts for a field, in OPERATORS order."""
    if blind_index.has_index(item):  # encrypted: exact matches through the digests
        return list(blind_index.OPERATORS)
    if not item.filterable:
        return []
    kind = item.type
    ops = {"eq", "ne", "in", "empty"}
    if kind in TEXTUAL | {"multi_picklist"}:
        ops |= TEXT_OPS
    if kind not in {"boolean", "lookup", "picklist", "multi_picklist", "record_link"} | {
        "many_to_many"
    }:
        ops |= RANGE_OPS
    return [op for op in OPERATORS if op in ops]


def _query_value_schema(item: FieldMeta) -> dict[str, Any]:
    kind = item.type
    if kind in {"lookup", "many_to_many", "integer"}:
        return {"type": "integer"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind in {"picklist", "multi_picklist"}:
        return {"type": "string", "enum": list(item.options)}
    if kind in {"decimal", "percent", "currency"}:
        return {"type": "string", "pattern": DECIMAL_PATTERN}
    if kind == "date":
        return {"type": "string", "format": "date"}
    if kind == "datetime":
        return {"type": "string", "format": "date-time"}
    if kind == "record_link":
        return {"type": "string", "pattern": r"^[a-z][a-z0-9_]*:\d+$"}
    return {"type": "string"}


def filter_parameters(service: RecordService, meta: ObjectMeta) -> list[dict[str, Any]]:
    """One query parameter per (readable field, operator) the list takes."""
    parameters = []
    for item in service.readable(meta):
        value = _query_value_schema(item)
        for op in filter_operators(item):
            if op == "in":
                schema: dict[str, Any] = {"type": "array", "items": value, "maxItems": 500}
            elif op == "empty":
                schema = {"type": "boolean"}
            elif op in TEXT_OPS:
                schema = {"type": "string", "minLength": 1}
            else:
                schema = value
            parameter: dict[str, Any] = {
                "name": item.name if op == "eq" else f"{item.name}__{op}",
                "in": "query",
                "required": False,
                "description": f"{item.label} {OPERATORS[op]}"
                + (" (comma-separated)." if op == "in" else "."),
                "schema": schema,
            }
            if op == "in":
                parameter.update(style="form", explode=False)
            parameters.append(parameter)
    return parameters


# --------------------------------------------------------------------------- objects


def _record_schemas(service: RecordService, meta: ObjectMeta) -> dict[str, Any]:
    access = service.field_access(meta)
    readable = service.readable(meta)
    editable = [item for item in readable if access.get(item.name) == "edit"]
    schemas: dict[str, Any] = {
        f"{meta.name}.record": {
            "type": "object",
            "title": meta.label,
            "description": meta.description or f"A {meta.label.lower()} record.",
            "properties": {
                item.name: field_schema(
                    item, read_only=access.get(item.name) != "edit" or item.read_only
                )
                for item in readable
            },
            "required": ["id", "version"],
        },
        f"{meta.name}.list": {
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": _schema_ref(f"{meta.name}.record")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Cursor of the next page (pass as ?cursor=), or null.",
                },
            },
            "required": ["data", "next"],
        },
    }
    writable = {item.name: field_schema(item, writing=True) for item in editable}
    for item in readable:  # set by the plugin: a client may send back what it read
        if item.read_only and item.name not in writable:
            writable[item.name] = {
                **field_schema(item, writing=True, read_only=True),
                "description": "Set by Bastion; a request may only repeat the value it has.",
            }
    if service.can(meta.name, "create"):
        required = [
            item.name
            for item in editable
            if item.required and item.default is None and item.name != "owner"
        ]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": writable,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        schemas[f"{meta.name}.create"] = schema
    if service.can(meta.name, "edit"):
        schemas[f"{meta.name}.patch"] = {
            "type": "object",
            "properties": {
                "version": {
                    "type": "integer",
                    "description": "The version you read; a stale one answers 409.",
                },
                **writable,
            },
            "required": ["version"],
            "additionalProperties": False,
        }
    return schemas


def _problems(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        422: "Unprocessable",
    }
    return {str(status): _ref("responses", names[status]) for status in statuses}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON_TYPE: {"schema": schema}}


def _record_paths(service: RecordService, meta: ObjectMeta) -> dict[str, Any]:
    name, label = meta.name, meta.label_plural
    record = _schema_ref(f"{name}.record")
    sortable = [i.name for i in service.readable(meta) if i.sortable and i.in_row]
    readable = [i.name for i in service.readable(meta)]
    sort_names = "|".join(sortable)
    collection: dict[str, Any] = {}
    single: dict[str, Any] = {}
    fields_param = {
        "name": "fields",
        "in": "query",
        "required": False,
        "description": "Only these fields (id and version always come).",
        "schema": {"type": "array", "items": {"type": "string", "enum": readable}},
        "style": "form",
        "explode": False,
    }
    collection["get"] = {
        "tags": [name],
        "operationId": f"list_{name}",
        "summary": f"List {label.lower()}",
        "description": (
            "Filters are query parameters: `field=value` (equals) or `field__op=value` with "
            f"op one of {', '.join(OPERATORS)}. Several filters all apply. A path through a "
            "lookup filters on the target's field, such as `account.industry=Banking`. "
            "Pages follow `next` as `cursor`."
        ),
        "parameters": [
            _ref("parameters", "limit"),
            _ref("parameters", "cursor"),
            {
                "name": "sort",
                "in": "query",
                "required": False,
                "description": "Up to three fields, comma-separated; `-` sorts descending. "
                f"Sortable: {', '.join(sortable)}.",
                "schema": {
                    "type": "string",
                    "pattern": f"^[-+]?({sort_names})(,[-+]?({sort_names})){{0,2}}$",
                },
            },
            fields_param,
            *filter_parameters(service, meta),
        ],
        "responses": {
            "200": {
                "description": f"A page of {label.lower()}.",
                "content": _json_content(_schema_ref(f"{name}.list")),
            },
            **_problems(400, 401, 403, 404),
        },
    }
    single["get"] = {
        "tags": [name],
        "operationId": f"get_{name}",
        "summary": f"Read one {meta.label.lower()}",
        "parameters": [fields_param],
        "responses": {
            "200": {"description": f"The {meta.label.lower()}.", "content": _json_content(record)},
            **_problems(400, 401, 403, 404),
        },
    }
    if service.can(name, "create"):
        collection["post"] = {
            "tags": [name],
            "operationId": f"create_{name}",
            "summary": f"Create a {meta.label.lower()}",
            "parameters": [
                {
                    "name": "check_duplicates",
                    "in": "query",
                    "required": False,
                    "description": "Refuse with 409 and `matches` when records you can read "
                    "look the same (duplicate keys of the object).",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "requestBody": {
                "required": True,
                "content": _json_content(_schema_ref(f"{name}.create")),
            },
            "responses": {
                "201": {
                    "description": "Created.",
                    "headers": {
                        "Location": {
                            "description": "The new record's address.",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": _json_content(record),
                },
                **_problems(400, 401, 403, 404, 409, 422),
            },
        }
    if service.can(name, "edit"):
        single["patch"] = {
            "tags": [name],
            "operationId": f"update_{name}",
            "summary": f"Change a {meta.label.lower()}",
            "description": "Send the `version` you read; if the record changed since, the "
            "answer is 409 and nothing is written.",
            "requestBody": {
                "required": True,
                "content": _json_content(_schema_ref(f"{name}.patch")),
            },
            "responses": {
                "200": {"description": "The changed record.", "content": _json_content(record)},
                **_problems(400, 401, 403, 404, 409, 422),
            },
        }
    if service.can(name, "delete"):
        single["delete"] = {
            "tags": [name],
            "operationId": f"delete_{name}",
            "summary": f"Delete a {meta.label.lower()}",
            "parameters": [
                {
                    "name": "version",
                    "in": "query",
                    "required": False,
                    "description": "The version you read: a stale one answers 409.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "204": {"description": "Deleted."},
                **_problems(400, 401, 403, 404, 409, 422),
            },
        }
    single["parameters"] = [_ref("parameters", "id")]
    paths = {f"/{name}": collection, f"/{name}/{{id}}": single}
    paths[f"/{name}/{{id}}/history"] = _history_path(meta)
    if service.can(name, "export"):
        paths[f"/{name}/export"] = _export_path(service, meta)
    if service.can(name, "edit") and service.can(name, "delete"):
        paths[f"/{name}/{{id}}/merge"] = _merge_path(meta, record)
    return paths


def _history_path(meta: ObjectMeta) -> dict[str, Any]:
    name = meta.name
    page = {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _schema_ref("HistoryEntry")},
            "next": {"type": ["string", "null"], "description": "The next page's `cursor`."},
        },
        "required": ["data", "next"],
    }
    return {
        "parameters": [_ref("parameters", "id")],
        "get": {
            "tags": [name],
            "operationId": f"history_{name}",
            "summary": f"Changes of a {meta.label.lower()}, newest first",
            "description": (
                "Who created, changed or merged the record, when, and each field's value "
                "before and after, from the audit trail. Changes of fields you may not "
                "read are left out (an update of only such fields is not listed); an "
                "encrypted field's change says `encrypted: true` without values. Pages "
                "follow `next` as `cursor`."
            ),
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Entries per page.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                },
                _ref("parameters", "cursor"),
            ],
            "responses": {
                "200": {"description": "A page of changes.", "content": _json_content(page)},
                **_problems(400, 401, 403, 404),
            },
        },
    }


def _export_path(service: RecordService, meta: ObjectMeta) -> dict[str, Any]:
    name = meta.name
    return {
        "get": {
            "tags": [name],
            "operationId": f"export_{name}",
            "summary": f"Export {meta.label_plural.lower()} as CSV or JSON",
            "description": (
                "The records a list query selects (same filters, sort and fields as the "
                "list), streamed whole rather than paged. Needs the export permission on "
                "the object and a recent sign-in; every export is audited."
            ),
            "parameters": [
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                },
                *filter_parameters(service, meta),
            ],
            "responses": {
                "200": {
                    "description": "The records: a JSON array, or CSV with a header line.",
                    "content": {
                        JSON_TYPE: {
                            "schema": {"type": "array", "items": _schema_ref(f"{name}.record")}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **_problems(400, 401, 403, 404, 422),
            },
        }
    }


def _merge_path(meta: ObjectMeta, record: dict[str, str]) -> dict[str, Any]:
    name = meta.name
    body = {
        "type": "object",
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": MAX_MERGED,
                "description": "The other records, merged into this one and then deleted.",
            },
            "values": {
                "type": "object",
                "description": "Field values the surviving record takes (its own otherwise).",
            },
            "version": {"type": "integer", "minimum": 1, "description": "As you read it."},
        },
        "required": ["ids", "version"],
        "additionalProperties": False,
    }
    return {
        "parameters": [_ref("parameters", "id")],
        "post": {
            "tags": [name],
            "operationId": f"merge_{name}",
            "summary": f"Merge duplicate {meta.label_plural.lower()} into this one",
            "description": (
                "Everything that pointed at the other records (lookups, many-to-many and "
                "record links) is re-pointed here, in one transaction. Needs edit and delete."
            ),
            "requestBody": {"required": True, "content": _json_content(body)},
            "responses": {
                "200": {"description": "The surviving record.", "content": _json_content(record)},
                **_problems(400, 401, 403, 404, 409, 422),
            },
        },
    }


def _search_and_me_paths(objects: list[str]) -> dict[str, Any]:
    hit = {
        "type": "object",
        "properties": {
            "object": {"type": "string"},
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "snippet": {"type": ["string", "null"]},
            "field": {"type": ["string", "null"]},
            "url": {"type": "string"},
        },
    }
    group = {
        "type": "object",
        "properties": {
            "object": {"type": "string"},
            "label": {"type": "string"},
            "total": {"type": "integer"},
            "exact": {"type": "boolean"},
            "returned": {"type": "integer"},
        },
    }
    found = {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "data": {"type": "array", "items": hit},
            "groups": {"type": "array", "items": group},
        },
        "required": ["query", "data", "groups"],
    }
    profile = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string"},
            "time_zone": {"type": "string"},
            "locale": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "team": {"type": ["object", "null"]},
            "permissions": {"type": "array", "items": {"type": "string"}},
            "mfa_enabled": {"type": "boolean"},
            "auth": {"type": "string", "enum": ["session", "token"]},
        },
    }
    changes = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in ("name", "time_zone", "locale")},
        "additionalProperties": False,
    }
    return {
        "/search": {
            "get": {
                "tags": ["meta"],
                "operationId": "search",
                "summary": "Search the records you may read",
                "description": (
                    "Full-text search over the searchable fields of every object, grouped "
                    "by object; no hit or snippet comes from a record or field you cannot read."
                ),
                "parameters": [
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "objects",
                        "in": "query",
                        "required": False,
                        "description": "Only these objects, comma-separated.",
                        "schema": {"type": "array", "items": {"type": "string", "enum": objects}},
                        "style": "form",
                        "explode": False,
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Hits per object.",
                        "schema": {"type": "integer", "minimum": 1, "default": 10},
                    },
                ],
                "responses": {
                    "200": {"description": "Hits and groups.", "content": _json_content(found)},
                    "503": {
                        "description": "The search index is being rebuilt.",
                        "content": {PROBLEM_TYPE: {"schema": _schema_ref("Problem")}},
                    },
                    **_problems(400, 401, 403),
                },
            }
        },
        "/me": {
            "get": {
                "tags": ["meta"],
                "operationId": "get_me",
                "summary": "Who you are: profile, roles, team and permissions",
                "responses": {
                    "200": {"description": "Your profile.", "content": _json_content(profile)},
                    **_problems(401),
                },
            },
            "patch": {
                "tags": ["meta"],
                "operationId": "update_me",
                "summary": "Change your name, time zone or locale",
                "requestBody": {"required": True, "content": _json_content(changes)},
                "responses": {
                    "200": {"description": "Your profile.", "content": _json_content(profile)},
                    **_problems(400, 401, 422),
                },
            },
        },
    }


# --------------------------------------------------------------------------- meta


def _meta_paths(admin: bool) -> dict[str, Any]:
    object_param = {
        "name": "object",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    field_param = {"name": "field", "in": "path", "required": True, "schema": {"type": "string"}}
    meta_list = _json_content(
        {
            "type": "object",
            "properties": {"data": {"type": "array", "items": _schema_ref("ObjectMeta")}},
            "required": ["data"],
        }
    )
    paths: dict[str, Any] = {
        "/meta": {
            "get": {
                "tags": ["meta"],
                "operationId": "meta_objects",
                "summary": "Objects you may read, their readable fields and your actions",
                "responses": {
                    "200": {"description": "The objects.", "content": meta_list},
                    **_problems(401),
                },
            }
        },
        "/meta/{object}": {
            "parameters": [object_param],
            "get": {
                "tags": ["meta"],
                "operationId": "meta_object",
                "summary": "One object",
                "responses": {
                    "200": {
                        "description": "The object.",
                        "content": _json_content(_schema_ref("ObjectMeta")),
                    },
                    **_problems(401, 404),
                },
            },
        },
        "/meta/{object}/fields/{field}": {
            "parameters": [object_param, field_param],
            "get": {
                "tags": ["meta"],
                "operationId": "meta_field",
                "summary": "One field's definition",
                "responses": {
                    "200": {
                        "description": "The field.",
                        "content": _json_content(_schema_ref("FieldMeta")),
                    },
                    **_problems(401, 404),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "tags": ["meta"],
                "operationId": "openapi",
                "summary": "This document, as the caller may use the API",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": _json_content({"type": "object"}),
                    },
                    **_problems(401),
                },
            }
        },
    }
    if not admin:
        return paths
    body = {"required": True, "content": _json_content({"type": "object"})}
    changed = _problems(400, 401, 403, 404, 422)
    paths["/meta"]["post"] = {
        "tags": ["meta"],
        "operationId": "meta_create_object",
        "summary": "Create a custom object (needs admin.schema)",
        "requestBody": {
            "required": True,
            "content": _json_content(_schema_ref("ObjectDefinition")),
        },
        "responses": {
            "201": {
                "description": "Created.",
                "content": _json_content(_schema_ref("ObjectMeta")),
            },
            **changed,
        },
    }
    paths["/meta/{object}"]["patch"] = {
        "tags": ["meta"],
        "operationId": "meta_update_object",
        "summary": "Relabel an object or change its rules (needs admin.schema)",
        "requestBody": body,
        "responses": {
            "200": {
                "description": "Changed.",
                "content": _json_content(_schema_ref("ObjectMeta")),
            },
            **changed,
        },
    }
    paths["/meta/{object}/fields"] = {
        "parameters": [object_param],
        "post": {
            "tags": ["meta"],
            "operationId": "meta_add_field",
            "summary": "Add a custom field (needs admin.schema)",
            "requestBody": {
                "required": True,
                "content": _json_content(_schema_ref("FieldDefinition")),
            },
            "responses": {
                "201": {
                    "description": "Added.",
                    "content": _json_content(_schema_ref("FieldMeta")),
                },
                **changed,
            },
        },
    }
    fields_path = paths["/meta/{object}/fields/{field}"]
    fields_path["patch"] = {
        "tags": ["meta"],
        "operationId": "meta_update_field",
        "summary": "Change a field's settings (needs admin.schema)",
        "requestBody": body,
        "responses": {
            "200": {"description": "Changed.", "content": _json_content(_schema_ref("FieldMeta"))},
            **changed,
        },
    }
    fields_path["delete"] = {
        "tags": ["meta"],
        "operationId": "meta_remove_field",
        "summary": "Remove a custom field; its data is kept until purged (needs admin.schema)",
        "responses": {"204": {"description": "Removed."}, **changed},
    }
    return paths


# --------------------------------------------------------------------------- components


def _common_schemas() -> dict[str, Any]:
    field_types = sorted(FIELD_TYPES)
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "field": {
                    "type": "string",
                    "description": "The field or parameter at fault, when there is one.",
                },
                "errors": {
                    "type": "object",
                    "description": 'Field name ("" for the record) -> message (422).',
                    "additionalProperties": {"type": "string"},
                },
                "matches": {
                    "type": "array",
                    "description": "Possible duplicates you may read (409 on create).",
                    "items": {"type": "object"},
                },
            },
            "required": ["title", "status", "detail"],
        },
        "Money": {
            "type": "object",
            "properties": {
                "amount": {"type": "string", "pattern": DECIMAL_PATTERN},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
            "required": ["amount", "currency"],
        },
        "MoneyInput": {
            "type": "object",
            "properties": {
                "amount": {"type": ["string", "number"]},
                "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
            },
            "required": ["amount"],
            "additionalProperties": False,
        },
        "RecordLink": {
            "type": "object",
            "properties": {
                "object": {"type": "string"},
                "id": {"type": "integer", "minimum": 1},
            },
            "required": ["object", "id"],
            "additionalProperties": False,
        },
        "HistoryEntry": {
            "type": "object",
            "description": "One change of a record, as the audit trail holds it.",
            "properties": {
                "seq": {"type": "integer", "description": "Position in the audit trail."},
                "occurred_at": {"type": "string", "format": "date-time"},
                "action": {
                    "type": "string",
                    "enum": ["record.create", "record.update", "record.delete", "record.merge"],
                },
                "actor": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": ["user", "token", "system"]},
                        "user_id": {"type": ["integer", "null"]},
                        "token_id": {"type": ["integer", "null"]},
                        "name": {"type": "string"},
                    },
                    "required": ["kind", "name"],
                },
                "changes": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "label": {"type": "string"},
                            "before": {"description": "The value as the API writes it."},
                            "after": {"description": "The value as the API writes it."},
                            "encrypted": {
                                "type": "boolean",
                                "description": "An encrypted field: it changed, values "
                                "are never recorded.",
                            },
                        },
                        "required": ["field", "label"],
                    },
                },
                "merged_ids": {"type": "array", "items": {"type": "integer"}},
                "cause": {
                    "type": ["object", "null"],
                    "description": "Set when the core changed the record because records "
                    "it referred to were deleted or merged.",
                },
            },
            "required": ["seq", "occurred_at", "action", "actor", "changes"],
        },
        "FieldDefinition": {
            "type": "object",
            "description": "A custom field: name, label and type, plus type-specific settings.",
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 50},
                "label": {"type": "string"},
                "type": {"type": "string", "enum": field_types},
                "required": {"type": "boolean"},
                "unique": {"type": "boolean"},
                "indexed": {"type": "boolean"},
                "searchable": {"type": "boolean"},
                "encrypted": {"type": "boolean"},
                "blind_index": {
                    "type": "boolean",
                    "description": "With encrypted: exact-match filters (eq, in) on the field.",
                },
                "personal_data": {"type": "boolean"},
                "default": {},
                "help_text": {"type": "string"},
                "options": {"type": "array", "items": {"type": "string"}},
                "target": {"type": "string"},
                "on_delete": {"type": "string", "enum": ["restrict", "clear"]},
                "max_length": {"type": "integer", "minimum": 1},
                "min_value": {"type": ["number", "string"]},
                "max_value": {"type": ["number", "string"]},
                "pattern": {"type": "string"},
                "formula": {"type": "string"},
                "formula_type": {"type": "string"},
                "scale": {"type": "integer", "minimum": 0, "maximum": 8},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "format": {"type": "string"},
                "section": {"type": "string"},
            },
            "required": ["name", "label", "type"],
            "additionalProperties": False,
        },
        "ObjectDefinition": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,39}$"},
                "label": {"type": "string"},
                "label_plural": {"type": "string"},
                "icon": {"type": "string"},
                "description": {"type": "string"},
                "name_field": {"type": "string"},
                "fields": {"type": "array", "items": _schema_ref("FieldDefinition")},
                "rules": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["name", "label"],
            "additionalProperties": False,
        },
        "FieldMeta": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "label": {"type": "string"},
                "type": {"type": "string", "enum": field_types},
                "access": {"type": "string", "enum": ["edit", "read"]},
                "read_only": {"type": "boolean"},
                "standard": {"type": "boolean"},
                "custom": {"type": "boolean"},
            },
            "required": ["name", "label", "type"],
        },
        "ObjectMeta": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "label": {"type": "string"},
                "label_plural": {"type": "string"},
                "custom": {"type": "boolean"},
                "name_field": {"type": ["string", "null"]},
                "actions": {"type": "array", "items": {"type": "string"}},
                "fields": {"type": "array", "items": _schema_ref("FieldMeta")},
            },
            "required": ["name", "label", "fields", "actions"],
        },
    }


def _components(schemas: dict[str, Any]) -> dict[str, Any]:
    def problem(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {PROBLEM_TYPE: {"schema": _schema_ref("Problem")}},
        }

    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from your account's API tokens page.",
            }
        },
        "schemas": {**_common_schemas(), **schemas},
        "parameters": {
            "id": {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            },
            "limit": {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            },
            "cursor": {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The `next` of the previous page.",
                "schema": {"type": "string"},
            },
        },
        "responses": {
            "BadRequest": problem("Bad query or malformed body; `field` names the culprit."),
            "Unauthorized": problem("No valid API token."),
            "Forbidden": problem("Your role or token does not allow this."),
            "NotFound": problem("No such object or record, or one outside your scope."),
            "Conflict": problem("Stale version, or records depend on this one."),
            "Unprocessable": problem("Invalid values; `errors` maps fields to messages."),
        },
    }


# --------------------------------------------------------------------------- document


def build_document(service: RecordService, *, schema_admin: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of what ``service``'s user may do, at its catalog revision.

    ``schema_admin``: whether to describe the definition-changing endpoints (the caller
    holds ``admin.schema``).
    """
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    tags = [{"name": "meta", "description": "Objects, fields and this document."}]
    for meta in service.catalog.active():
        if not service.can(meta.name, "read"):
            continue
        schemas.update(_record_schemas(service, meta))
        paths.update(_record_paths(service, meta))
        tags.append({"name": meta.name, "description": meta.label_plural})
    paths.update(_meta_paths(schema_admin))
    readable = [tag["name"] for tag in tags if tag["name"] != "meta"]
    paths.update(_search_and_me_paths(readable))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion REST API",
            "version": __version__,
            "description": (
                "Generated from the object definitions when requested, for the caller: it "
                "lists the objects, fields and operations your role and token allow. "
                "Errors are RFC 9457 problem details."
            ),
        },
        "servers": [{"url": API_BASE}],
        "security": [{"bearerAuth": []}],
        "tags": tags,
        "paths": paths,
        "components": _components(schemas),
        "x-bastion-revision": service.catalog.revision,
    }
