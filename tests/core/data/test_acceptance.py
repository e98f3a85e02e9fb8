"""The issue's acceptance checks, each across every door at once (pages, API, search, export).

The feature tests go deeper into each door; these make sure the doors agree.
"""

from __future__ import annotations

import csv
import io
import json

from bastion.search import drain_now
from tests.core.data.conftest import (
    ADMIN,
    MARIA,
    SAM,
    bearer,
    client_as,
    service_as,
    set_field_access,
    user_id,
)


def test_a_custom_field_added_through_the_api_works_everywhere(demo_app):
    admin = bearer(demo_app, ADMIN)
    api = demo_app.test_client()
    field = {"name": "loyalty_tier", "label": "Loyalty tier", "type": "text", "encrypted": False}
    response = api.post("/api/v1/meta/contacts/fields", json=field, headers=admin)
    assert response.status_code == 201, response.get_json()

    created = api.post(
        "/api/v1/contacts", json={"last_name": "Gold", "loyalty_tier": "gold"}, headers=admin
    ).get_json()
    api.post("/api/v1/contacts", json={"last_name": "Plain"}, headers=admin)
    assert created["loyalty_tier"] == "gold"  # writable and readable
    patched = api.patch(
        f"/api/v1/contacts/{created['id']}",
        json={"loyalty_tier": "platinum", "version": created["version"]},
        headers=admin,
    ).get_json()
    assert patched["loyalty_tier"] == "platinum"

    listed = api.get("/api/v1/contacts?loyalty_tier=platinum", headers=admin).get_json()
    assert [row["last_name"] for row in listed["data"]] == ["Gold"]  # filterable

    exported = api.get("/api/v1/contacts/export?format=csv", headers=admin)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert {row["last_name"]: row["loyalty_tier"] for row in rows} == {
        "Gold": "platinum",
        "Plain": "",
    }

    document = api.get("/api/v1/openapi.json", headers=admin).get_json()
    schemas = json.dumps(document["components"]["schemas"])
    assert "loyalty_tier" in schemas

    page = client_as(demo_app, ADMIN)
    form = page.get("/o/contacts/new").get_data(as_text=True)
    assert 'name="loyalty_tier"' in form
    detail = page.get(f"/o/contacts/{created['id']}").get_data(as_text=True)
    assert "Loyalty tier" in detail and "platinum" in detail


def test_no_door_shows_a_record_outside_scope_or_a_hidden_field(demo_app):
    set_field_access(demo_app, "sales_rep", "contacts", "title", "hidden")
    with service_as(demo_app, ADMIN) as records:
        mine = records.create(
            "contacts",
            {"last_name": "Zephyrine", "title": "Treasurer", "owner": user_id(demo_app, SAM)},
        )
        theirs = records.create(
            "contacts",
            {"last_name": "Zephyrine Other", "title": "Secret", "owner": user_id(demo_app, MARIA)},
        )
    drain_now(demo_app)

    sam = client_as(demo_app, SAM)
    token = bearer(demo_app, SAM)
    api = demo_app.test_client()
    doors = {
        "list page": sam.get("/o/contacts"),
        "detail page": sam.get(f"/o/contacts/{mine.id}"),
        "edit form": sam.get(f"/o/contacts/{mine.id}/edit"),
        "lookup": sam.get("/o/contacts/lookup?q=Zeph"),
        "search page": sam.get("/search?q=Zephyrine"),
        "API list": api.get("/api/v1/contacts", headers=token),
        "API record": api.get(f"/api/v1/contacts/{mine.id}", headers=token),
        "API search": api.get("/api/v1/search?q=Zephyrine", headers=token),
        "API meta": api.get("/api/v1/meta/contacts", headers=token),
        "OpenAPI": api.get("/api/v1/openapi.json", headers=token),
    }
    for door, response in doors.items():
        body = response.get_data(as_text=True)
        assert response.status_code == 200, (door, response.status_code)
        assert "Zephyrine Other" not in body, door  # Maria's record
        assert "Secret" not in body and "Treasurer" not in body, door  # the hidden field
    assert "Zephyrine" in doors["list page"].get_data(as_text=True)  # Sam's own is there
    assert "Zephyrine" in doors["API search"].get_data(as_text=True)

    for door, response in {
        "detail page": sam.get(f"/o/contacts/{theirs.id}"),
        "API record": api.get(f"/api/v1/contacts/{theirs.id}", headers=token),
    }.items():
        assert response.status_code == 404, door
    # Reps may not export; with the permission, the export obeys the same limits.
    assert api.get("/api/v1/contacts/export", headers=token).status_code == 403
    manager = bearer(demo_app, MARIA)
    set_field_access(demo_app, "sales_manager", "contacts", "title", "hidden")
    exported = api.get("/api/v1/contacts/export?format=json", headers=manager)
    assert exported.status_code == 200
    body = exported.get_data(as_text=True)
    assert "Zephyrine" in body and "Treasurer" not in body and "Secret" not in body
