"""The metadata REST API: objects and fields as the caller may use them, and changing them."""

from __future__ import annotations

import pytest

from tests.core.data.conftest import ADMIN, AIKO, MARIA, SAM, SOFIA, bearer

PROBLEM = "application/problem+json"


@pytest.fixture
def api(demo_app):
    return demo_app.test_client()


@pytest.fixture
def admin(demo_app):
    return bearer(demo_app, ADMIN)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    return response.get_json()


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _fields(meta: dict) -> dict[str, dict]:
    return {item["name"]: item for item in meta["fields"]}


def _record_schema(api, headers, obj: str) -> dict:
    document = _ok(api.get("/api/v1/openapi.json", headers=headers))
    return document["components"]["schemas"][f"{obj}.record"]


def _filter_names(api, headers, obj: str) -> set[str]:
    document = _ok(api.get("/api/v1/openapi.json", headers=headers))
    return {p["name"] for p in document["paths"][f"/{obj}"]["get"]["parameters"] if "name" in p}


# --------------------------------------------------------------------------- reading


def test_meta_lists_readable_objects_fields_and_the_callers_actions(demo_app, api, admin):
    everything = _ok(api.get("/api/v1/meta", headers=admin))["data"]
    by_name = {item["name"]: item for item in everything}
    assert {"accounts", "contacts", "activities"} <= set(by_name)
    accounts = by_name["accounts"]
    assert accounts["actions"] == ["read", "create", "edit", "delete", "import", "export"]
    fields = _fields(accounts)
    assert fields["industry"]["type"] == "picklist" and "Banking" in fields["industry"]["options"]
    assert fields["parent"]["target"] == "accounts"
    assert fields["id"]["read_only"] and fields["id"]["access"] == "read"
    assert fields["name"]["access"] == "edit" and fields["name"]["required"]
    assert _fields(by_name["contacts"])["full_name"]["access"] == "read"  # a formula

    sam = _ok(api.get("/api/v1/meta/accounts", headers=bearer(demo_app, SAM)))
    assert sam["actions"] == ["read", "create", "edit"]
    sofia = _ok(api.get("/api/v1/meta", headers=bearer(demo_app, SOFIA)))["data"]
    sofia_actions = {item["name"]: item["actions"] for item in sofia}
    assert sofia_actions["accounts"] == ["read"]
    assert sofia_actions["activities"] == ["read", "create", "edit"]
    assert all(f["access"] == "read" for f in sofia[0]["fields"])
    aiko = _ok(api.get("/api/v1/meta", headers=bearer(demo_app, AIKO)))["data"]
    assert {tuple(item["actions"]) for item in aiko} == {("read",)}

    one = _ok(api.get("/api/v1/meta/contacts/fields/email", headers=admin))
    assert one["type"] == "email" and one["personal_data"]
    _problem(api.get("/api/v1/meta/nothing", headers=admin), 404)
    _problem(api.get("/api/v1/meta/contacts/fields/nothing", headers=admin), 404)


# --------------------------------------------------------------------------- custom fields


def test_a_custom_field_added_through_the_api_is_writable_readable_filterable_and_documented(
    demo_app, api, admin
):
    assert "loyalty_tier" not in _record_schema(api, admin, "accounts")["properties"]
    added = api.post(
        "/api/v1/meta/accounts/fields",
        headers=admin,
        json={"name": "loyalty_tier", "label": "Loyalty tier", "type": "text", "encrypted": False},
    )
    field = _ok(added, 201)
    assert added.headers["Location"] == "/api/v1/meta/accounts/fields/loyalty_tier"
    assert field["name"] == "loyalty_tier" and field["custom"] and field["access"] == "edit"

    # Writable and readable, through the API, at once.
    gold = _ok(
        api.post("/api/v1/accounts", headers=admin, json={"name": "Gold", "loyalty_tier": "Gold"}),
        201,
    )
    assert gold["loyalty_tier"] == "Gold"
    _ok(api.post("/api/v1/accounts", headers=admin, json={"name": "Plain"}), 201)
    silver = _ok(
        api.post("/api/v1/accounts", headers=admin, json={"name": "Silver", "loyalty_tier": "x"}),
        201,
    )
    patched = api.patch(
        f"/api/v1/accounts/{silver['id']}",
        headers=admin,
        json={"version": 1, "loyalty_tier": "Silver"},
    )
    assert _ok(patched)["loyalty_tier"] == "Silver"
    assert _ok(api.get(f"/api/v1/accounts/{gold['id']}", headers=admin))["loyalty_tier"] == "Gold"

    # Filterable and sortable.
    def names(query: str) -> list[str]:
        rows = _ok(api.get(f"/api/v1/accounts?{query}", headers=admin))["data"]
        return [row["name"] for row in rows]

    assert names("loyalty_tier=Gold") == ["Gold"]
    assert names("loyalty_tier__startswith=s") == ["Silver"]
    assert names("loyalty_tier__empty=true") == ["Plain"]
    assert names("sort=-loyalty_tier") == ["Silver", "Gold", "Plain"]

    # In the OpenAPI document, with its filters, and in the meta of another user.
    schema = _record_schema(api, admin, "accounts")["properties"]["loyalty_tier"]
    assert schema["type"] == ["string", "null"] and schema["title"] == "Loyalty tier"
    filters = _filter_names(api, admin, "accounts")
    assert {"loyalty_tier", "loyalty_tier__contains", "loyalty_tier__empty"} <= filters
    maria = bearer(demo_app, MARIA)
    assert (
        _fields(_ok(api.get("/api/v1/meta/accounts", headers=maria)))["loyalty_tier"]["access"]
        == "edit"
    )

    # Relabelled, the label changes everywhere; removed, it is gone everywhere.
    relabel = api.patch(
        "/api/v1/meta/accounts/fields/loyalty_tier", headers=admin, json={"label": "Tier"}
    )
    assert _ok(relabel)["label"] == "Tier"
    assert _record_schema(api, admin, "accounts")["properties"]["loyalty_tier"]["title"] == "Tier"
    assert api.delete("/api/v1/meta/accounts/fields/loyalty_tier", headers=admin).status_code == 204
    assert "loyalty_tier" not in _ok(api.get(f"/api/v1/accounts/{gold['id']}", headers=admin))
    assert "loyalty_tier" not in _record_schema(api, admin, "accounts")["properties"]
    assert (
        _problem(api.get("/api/v1/accounts?loyalty_tier=Gold", headers=admin), 400)["field"]
        == "loyalty_tier"
    )


def test_field_definitions_that_do_not_fit_are_422_naming_the_field(demo_app, api, admin):
    url = "/api/v1/meta/accounts/fields"
    cases = [
        ({"name": "tier", "label": "Tier", "type": "colour"}, "type"),
        ({"name": "tier", "label": "Tier", "type": "text", "colour": "red"}, "colour"),
        ({"name": "tier", "label": "Tier", "type": "text", "required": "yes"}, "required"),
        (
            {"name": "tier", "label": "Tier", "type": "text", "encrypted": True, "unique": True},
            "encrypted",
        ),
        ({"name": "tier", "label": "Tier", "type": "lookup", "target": "planets"}, "target"),
        ({"name": "tier", "label": "Tier", "type": "integer", "default": "lots"}, "default"),
        ({"name": "name", "label": "Again", "type": "text"}, "name"),
        ({"label": "Tier", "type": "text"}, "name"),
    ]
    for spec, key in cases:
        body = _problem(api.post(url, headers=admin, json=spec), 422)
        assert body["field"] == key, (spec, body)
        assert body["errors"] == {key: body["detail"]}
        if "name" in spec:
            assert spec["name"] in body["detail"] or spec["label"] in body["detail"], body
    picklist = api.post(
        url, headers=admin, json={"name": "tier", "label": "Tier", "type": "picklist"}
    )
    assert "tier" in _problem(picklist, 422)["detail"]
    _problem(api.post(url, headers=admin, data="{"), 400)
    _problem(api.post(url, headers=admin, data="[]"), 422)
    _problem(api.post("/api/v1/meta/planets/fields", headers=admin, json=cases[0][0]), 404)
    standard = api.patch("/api/v1/meta/accounts/fields/owner", headers=admin, json={"label": "X"})
    assert _problem(standard, 422)["field"] == "owner"
    declared = api.delete("/api/v1/meta/accounts/fields/industry", headers=admin)
    assert "plugin" in _problem(declared, 422)["detail"]
    _problem(api.delete("/api/v1/meta/accounts/fields/nothing", headers=admin), 404)
    # Nothing above changed the definitions.
    fields = _fields(_ok(api.get("/api/v1/meta/accounts", headers=admin)))
    assert "tier" not in fields and fields["industry"]["label"] == "Industry"


def test_changing_definitions_needs_admin_schema(demo_app, api):
    spec = {"name": "tier", "label": "Tier", "type": "text"}
    for email in (SAM, MARIA, AIKO):
        headers = bearer(demo_app, email)
        _problem(api.post("/api/v1/meta/accounts/fields", headers=headers, json=spec), 403)
        _problem(api.post("/api/v1/meta", headers=headers, json={"name": "x", "label": "X"}), 403)
        _problem(
            api.patch("/api/v1/meta/accounts/fields/name", headers=headers, json={"label": "N"}),
            403,
        )
    # An administrator's token scoped to reading accounts cannot change the schema either.
    scoped = bearer(demo_app, ADMIN, scopes=["accounts:read"])
    _problem(api.post("/api/v1/meta/accounts/fields", headers=scoped, json=spec), 403)
    with_schema = bearer(demo_app, ADMIN, scopes=["accounts:read", "admin.schema"])
    _ok(api.post("/api/v1/meta/accounts/fields", headers=with_schema, json=spec), 201)


# --------------------------------------------------------------------------- custom objects

PROJECTS = {
    "name": "projects",
    "label": "Project",
    "label_plural": "Projects",
    "icon": "folder",
    "fields": [
        {"name": "title", "label": "Title", "type": "text", "required": True},
        {"name": "account", "label": "Client", "type": "lookup", "target": "accounts"},
        {"name": "members", "label": "Members", "type": "many_to_many", "target": "contacts"},
        {"name": "budget", "label": "Budget", "type": "currency", "currency": "EUR"},
        {"name": "stage", "label": "Stage", "type": "picklist", "options": ["Plan", "Build"]},
        {
            "name": "parent",
            "label": "Parent",
            "type": "lookup",
            "target": "projects",
            "on_delete": "clear",
        },
    ],
}


def test_a_custom_object_with_a_lookup_and_a_many_to_many_works_end_to_end(demo_app, api, admin):
    created = api.post("/api/v1/meta", headers=admin, json=PROJECTS)
    meta = _ok(created, 201)
    assert created.headers["Location"] == "/api/v1/meta/projects"
    assert meta["custom"] and meta["name_field"] == "title"
    assert _fields(meta)["members"]["target"] == "contacts"
    assert "projects" in {o["name"] for o in _ok(api.get("/api/v1/meta", headers=admin))["data"]}

    acme = _ok(api.post("/api/v1/accounts", headers=admin, json={"name": "Acme"}), 201)
    other = _ok(api.post("/api/v1/accounts", headers=admin, json={"name": "Other"}), 201)
    ada = _ok(api.post("/api/v1/contacts", headers=admin, json={"last_name": "Ada"}), 201)
    bob = _ok(api.post("/api/v1/contacts", headers=admin, json={"last_name": "Bob"}), 201)

    project = _ok(
        api.post(
            "/api/v1/projects",
            headers=admin,
            json={
                "title": "Migration",
                "account": acme["id"],
                "members": [bob["id"], ada["id"], bob["id"]],
                "budget": "25000",
                "stage": "plan",
            },
        ),
        201,
    )
    assert project["members"] == sorted([ada["id"], bob["id"]])
    assert project["account"] == acme["id"]
    assert project["budget"] == {"amount": "25000.00", "currency": "EUR"}
    assert project["stage"] == "Plan"
    child = _ok(
        api.post(
            "/api/v1/projects",
            headers=admin,
            json={"title": "Phase 2", "account": other["id"], "parent": project["id"]},
        ),
        201,
    )
    assert child["members"] == []

    def titles(query: str) -> list[str]:
        rows = _ok(api.get(f"/api/v1/projects?{query}&sort=title", headers=admin))["data"]
        return [row["title"] for row in rows]

    assert titles(f"account={acme['id']}") == ["Migration"]
    assert titles("account.name=Other") == ["Phase 2"]
    assert titles(f"members={ada['id']}") == ["Migration"]
    assert titles(f"members__in={ada['id']},{bob['id']}") == ["Migration"]
    assert titles("members__empty=true") == ["Phase 2"]
    assert titles("budget__gte=1000") == ["Migration"]
    assert titles(f"parent={project['id']}") == ["Phase 2"]

    changed = api.patch(
        f"/api/v1/projects/{project['id']}",
        headers=admin,
        json={"version": project["version"], "members": [ada["id"]]},
    )
    assert _ok(changed)["members"] == [ada["id"]] and changed.get_json()["version"] == 2
    assert titles(f"members={bob['id']}") == []

    # References must exist (and be visible); both errors are named.
    bad = api.post(
        "/api/v1/projects",
        headers=admin,
        json={"title": "Bad", "account": 424242, "members": [ada["id"], 424243]},
    )
    assert set(_problem(bad, 422)["errors"]) == {"account", "members"}
    # The lookup restricts deleting the account it points to; clearing parents is allowed.
    assert (
        "refer to"
        in _problem(api.delete(f"/api/v1/accounts/{acme['id']}", headers=admin), 409)["detail"]
    )
    assert api.delete(f"/api/v1/projects/{project['id']}", headers=admin).status_code == 204
    assert _ok(api.get(f"/api/v1/projects/{child['id']}", headers=admin))["parent"] is None
    assert api.delete(f"/api/v1/accounts/{acme['id']}", headers=admin).status_code == 204

    # The document describes the new object, with the relations' shapes.
    document = _ok(api.get("/api/v1/openapi.json", headers=admin))
    props = document["components"]["schemas"]["projects.record"]["properties"]
    assert props["account"]["type"] == ["integer", "null"]
    assert props["members"]["type"] == "array" and props["members"]["items"]["type"] == "integer"
    assert {"/projects", "/projects/{id}"} <= set(document["paths"])

    # No other role grants it: it is not in their meta, and reading it is refused.
    sam = bearer(demo_app, SAM)
    assert "projects" not in {o["name"] for o in _ok(api.get("/api/v1/meta", headers=sam))["data"]}
    _problem(api.get("/api/v1/meta/projects", headers=sam), 403)
    _problem(api.get("/api/v1/projects", headers=sam), 403)
    assert "/projects" not in _ok(api.get("/api/v1/openapi.json", headers=sam))["paths"]


def test_object_definitions_that_do_not_fit_are_422(api, admin):
    cases = [
        ({**PROJECTS, "name": "Projects!"}, "name"),
        ({**PROJECTS, "name": "meta"}, "name"),
        ({**PROJECTS, "name": "accounts"}, "name"),
        ({**PROJECTS, "label": ""}, "label"),
        ({**PROJECTS, "fields": "title"}, "fields"),
        (
            {
                **PROJECTS,
                "fields": [PROJECTS["fields"][0], {"name": "x", "label": "X", "type": "?"}],
            },
            "fields[1].type",
        ),
        (
            {**PROJECTS, "fields": [{"name": "m", "label": "M", "type": "lookup", "target": "no"}]},
            "target",
        ),
    ]
    for spec, key in cases:
        body = _problem(api.post("/api/v1/meta", headers=admin, json=spec), 422)
        assert body["field"] == key, (key, body)
    _problem(api.post("/api/v1/meta", headers=admin, json=[PROJECTS]), 422)
    names = {o["name"] for o in _ok(api.get("/api/v1/meta", headers=admin))["data"]}
    assert "projects" not in names
    _problem(api.get("/api/v1/projects", headers=admin), 404)


def test_an_object_is_relabelled_through_the_api(api, admin):
    changed = api.patch(
        "/api/v1/meta/accounts",
        headers=admin,
        json={"label": "Company", "label_plural": "Companies"},
    )
    assert _ok(changed)["label_plural"] == "Companies"
    assert _ok(api.get("/api/v1/meta/accounts", headers=admin))["label"] == "Company"
    _problem(api.patch("/api/v1/meta/accounts", headers=admin, json={"name": "firms"}), 422)
    _problem(api.patch("/api/v1/meta/planets", headers=admin, json={"label": "P"}), 404)
