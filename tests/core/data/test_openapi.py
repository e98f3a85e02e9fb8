"""The generated OpenAPI 3.1 document: valid, complete, per caller, current."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from tests.core.data.conftest import ADMIN, AIKO, SAM, bearer, client_as

METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}

EVERY_TYPE = {
    "name": "gadgets",
    "label": "Gadget",
    "label_plural": "Gadgets",
    "fields": [
        {"name": "title", "label": "Title", "type": "text", "required": True, "max_length": 80},
        {"name": "notes", "label": "Notes", "type": "long_text"},
        {"name": "email", "label": "Email", "type": "email"},
        {"name": "phone", "label": "Phone", "type": "phone"},
        {"name": "site", "label": "Site", "type": "url"},
        {"name": "units", "label": "Units", "type": "integer", "min_value": 0, "max_value": 9},
        {"name": "weight", "label": "Weight", "type": "decimal", "scale": 3},
        {"name": "price", "label": "Price", "type": "currency"},
        {"name": "margin", "label": "Margin", "type": "percent"},
        {"name": "launch", "label": "Launch", "type": "date"},
        {"name": "seen_at", "label": "Seen", "type": "datetime"},
        {"name": "active", "label": "Active", "type": "boolean"},
        {"name": "size", "label": "Size", "type": "picklist", "options": ["S", "M", "L"]},
        {"name": "tags", "label": "Tags", "type": "multi_picklist", "options": ["a", "b"]},
        {"name": "account", "label": "Account", "type": "lookup", "target": "accounts"},
        {"name": "owners", "label": "Owners", "type": "many_to_many", "target": "contacts"},
        {"name": "code", "label": "Code", "type": "auto_number", "format": "G-{0000}"},
        {
            "name": "total",
            "label": "Total",
            "type": "formula",
            "formula": "units * 2",
            "formula_type": "integer",
        },
        {"name": "about", "label": "About", "type": "record_link"},
    ],
}


@pytest.fixture
def api(demo_app):
    return demo_app.test_client()


def _document(api, headers) -> dict:
    response = api.get("/api/v1/openapi.json", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def _resolve(document: dict, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        assert part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def structural_check(document: dict) -> None:
    """What a client generator relies on, checked without any library."""
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert document["security"] == [{"bearerAuth": []}]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "field", "errors"} <= set(problem["properties"])

    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for ref in refs:
        _resolve(document, ref)
    operation_ids = []
    for path, item in document["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{(\w+)}", path))
        shared = [_deref(document, p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if method not in METHODS:
                continue
            operation_ids.append(operation["operationId"])
            params = shared + [_deref(document, p) for p in operation.get("parameters", [])]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == templated, (path, method)
            names = [(p["name"], p["in"]) for p in params]
            assert len(names) == len(set(names)), (path, method)
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                response = _deref(document, response)
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"]
    assert len(operation_ids) == len(set(operation_ids))


def _deref(document: dict, node: dict) -> dict:
    return _resolve(document, node["$ref"]) if "$ref" in node else node


def test_the_document_is_valid_openapi_3_1_for_every_field_type(api, demo_app):
    admin = bearer(demo_app, ADMIN)
    assert api.post("/api/v1/meta", headers=admin, json=EVERY_TYPE).status_code == 201
    document = _document(api, admin)
    structural_check(document)
    validate(document)  # the openapi-spec-validator's full 3.1 schema check

    schemas = document["components"]["schemas"]
    props = schemas["gadgets.record"]["properties"]
    assert props["id"]["type"] == "integer" and props["id"]["readOnly"]
    assert props["version"]["readOnly"]
    assert props["owner"]["type"] == ["integer", "null"] and "readOnly" not in props["owner"]
    assert props["created_at"]["format"] == "date-time" and props["created_at"]["readOnly"]
    assert props["title"]["type"] == ["string", "null"] and props["title"]["maxLength"] == 80
    assert props["email"]["format"] == "email"
    assert props["site"]["format"] == "uri"
    assert props["units"]["minimum"] == 0 and props["units"]["maximum"] == 9
    assert props["weight"]["type"] == ["string", "null"] and "pattern" in props["weight"]
    assert props["margin"]["type"] == ["string", "null"]
    assert props["price"]["anyOf"] == [
        {"$ref": "#/components/schemas/Money"},
        {"type": "null"},
    ]
    assert props["launch"]["format"] == "date"
    assert props["seen_at"]["format"] == "date-time"
    assert props["active"]["type"] == ["boolean", "null"]
    assert props["size"]["enum"] == ["S", "M", "L", None]
    assert props["tags"]["type"] == "array" and props["tags"]["items"]["enum"] == ["a", "b"]
    assert props["account"]["type"] == ["integer", "null"]
    assert props["account"]["x-target"] == "accounts"
    assert props["owners"] == {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "uniqueItems": True,
        "title": "Owners",
        "x-target": "contacts",
        "description": "Id of a contacts record.",
        "x-bastion-type": "many_to_many",
    }
    assert props["about"]["anyOf"][0] == {"$ref": "#/components/schemas/RecordLink"}
    assert props["code"]["readOnly"] and props["code"]["type"] == ["string", "null"]
    assert props["total"]["readOnly"] and props["total"]["type"] == ["integer", "null"]

    create = schemas["gadgets.create"]
    assert create["required"] == ["title"] and create["additionalProperties"] is False
    assert {"code", "total", "id", "version", "created_at"}.isdisjoint(create["properties"])
    assert create["properties"]["title"]["type"] == "string"  # required: never null
    assert create["properties"]["weight"]["type"] == ["string", "number", "null"]
    patch = schemas["gadgets.patch"]
    assert patch["required"] == ["version"]
    assert patch["properties"]["version"]["type"] == "integer"

    listing = document["paths"]["/gadgets"]["get"]
    params = {p["name"]: p for p in listing["parameters"] if "name" in p}
    assert params["size"]["schema"]["enum"] == ["S", "M", "L"]
    assert (
        params["size__in"]["schema"]["type"] == "array" and params["size__in"]["explode"] is False
    )
    assert {"title__contains", "title__startswith", "units__gte", "launch__lt"} <= set(params)
    assert {"owners", "owners__empty", "about", "tags__contains"} <= set(params)
    assert {"size__gte", "active__contains", "total", "owners__gt"}.isdisjoint(params)
    assert re.fullmatch(params["sort"]["schema"]["pattern"], "-units,title")
    assert not re.fullmatch(params["sort"]["schema"]["pattern"], "tags")
    assert document["paths"]["/gadgets"]["post"]["responses"]["201"]["headers"]["Location"]
    assert set(document["paths"]["/gadgets/{id}"]) == {"parameters", "get", "patch", "delete"}
    assert {"/meta", "/meta/{object}/fields", "/openapi.json"} <= set(document["paths"])


def test_the_document_describes_what_the_caller_may_do(demo_app, api):
    sam = _document(api, bearer(demo_app, SAM))
    structural_check(sam)
    assert set(sam["paths"]["/accounts/{id}"]) == {"parameters", "get", "patch"}
    assert "post" in sam["paths"]["/accounts"]
    assert "/meta/{object}/fields" not in sam["paths"]  # no admin.schema
    assert "post" not in sam["paths"]["/meta"]
    aiko = _document(api, bearer(demo_app, AIKO))
    structural_check(aiko)
    assert set(aiko["paths"]["/contacts/{id}"]) == {"parameters", "get"}
    assert "contacts.create" not in aiko["components"]["schemas"]
    # Read-only to Aiko: every field is readOnly in her record schema.
    props = aiko["components"]["schemas"]["contacts.record"]["properties"]
    assert all(prop.get("readOnly") for prop in props.values())
    scoped = _document(api, bearer(demo_app, ADMIN, scopes=["contacts:read"]))
    assert {p.split("/")[1] for p in scoped["paths"]} == {
        "contacts",
        "meta",
        "openapi.json",
        "search",
        "me",
    }
    # A read-only token: no export, no merge; search offers only what it may read.
    assert {"/contacts/export", "/contacts/{id}/merge"}.isdisjoint(scoped["paths"])
    search_params = scoped["paths"]["/search"]["get"]["parameters"]
    objects = next(p for p in search_params if p["name"] == "objects")
    assert objects["schema"]["items"]["enum"] == ["contacts"]
    validate(scoped)


def test_the_document_covers_search_merge_export_and_me(demo_app, api):
    admin = _document(api, bearer(demo_app, ADMIN))
    structural_check(admin)
    validate(admin)
    paths = admin["paths"]
    assert {"/search", "/me", "/contacts/export", "/contacts/{id}/merge"} <= set(paths)
    merge = paths["/contacts/{id}/merge"]["post"]
    body = merge["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["ids", "version"]
    formats = paths["/accounts/export"]["get"]["parameters"][0]["schema"]["enum"]
    assert formats == ["json", "csv"]
    assert set(paths["/me"]) == {"get", "patch"}


def test_the_document_needs_sign_in_and_is_generated_at_request_time(demo_app, api):
    assert api.get("/api/v1/openapi.json").status_code == 401
    browser = client_as(demo_app, ADMIN)
    before = _document(browser, {})
    assert "accounts.record" in before["components"]["schemas"]
    admin = bearer(demo_app, ADMIN)
    spec = {"name": "tier", "label": "Tier", "type": "picklist", "options": ["Gold", "Silver"]}
    assert api.post("/api/v1/meta/accounts/fields", headers=admin, json=spec).status_code == 201
    after = _document(browser, {})
    assert "tier" not in before["components"]["schemas"]["accounts.record"]["properties"]
    tier = after["components"]["schemas"]["accounts.record"]["properties"]["tier"]
    assert tier["enum"] == ["Gold", "Silver", None]
    assert after["x-bastion-revision"] > before["x-bastion-revision"]
    assert after["paths"]["/accounts"]["get"]["responses"]["200"]
