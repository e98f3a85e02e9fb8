"""The records REST API through HTTP: CRUD, concurrency, scope, field security, bad input."""

from __future__ import annotations

import pytest

from bastion.db import db
from bastion.models import Role, RoleFieldRule
from tests.core.data.conftest import (
    ADMIN,
    AIKO,
    MARIA,
    SAM,
    SOFIA,
    bearer,
    client_as,
    service_as,
    user_id,
)

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
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _create(api, headers, obj: str, values: dict) -> dict:
    response = api.post(f"/api/v1/{obj}", headers=headers, json=values)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def _hide_for_role(app, role: str, obj: str, field: str) -> None:
    with app.app_context():
        row = db.session.scalar(db.select(Role).where(Role.name == role))
        row.field_rules.append(RoleFieldRule(object_name=obj, field_name=field, access="hidden"))
        db.session.commit()


def _count(app, obj: str) -> int:
    with service_as(app, None) as records:
        return records.count(obj)


# --------------------------------------------------------------------------- CRUD


def test_create_read_change_delete_round_trip(api, admin):
    created = api.post(
        "/api/v1/accounts",
        headers=admin,
        json={
            "name": "Acme Bank",
            "industry": "banking",
            "annual_revenue": {"amount": 1250000.5, "currency": "usd"},
            "employees": 120,
            "phone": "+44 20 7946 0958",
        },
    )
    assert created.status_code == 201
    account = created.get_json()
    assert created.headers["Location"] == f"/api/v1/accounts/{account['id']}"
    assert list(account)[:2] == ["id", "version"] and account["version"] == 1
    assert account["industry"] == "Banking"  # the declared spelling
    assert account["annual_revenue"] == {"amount": "1250000.50", "currency": "USD"}
    assert account["phone"] == "+442079460958"

    activity = _create(
        api,
        admin,
        "activities",
        {
            "kind": "call",
            "subject": "Intro call",
            "due_at": "2026-11-23T14:30:00+01:00",
            "related_to": {"object": "accounts", "id": account["id"]},
        },
    )
    assert activity["due_at"] == "2026-11-23T13:30:00Z"
    assert activity["related_to"] == {"object": "accounts", "id": account["id"]}
    assert activity["done"] is False  # the declared default

    fetched = api.get(created.headers["Location"], headers=admin).get_json()
    assert fetched == account
    some = api.get(f"/api/v1/accounts/{account['id']}?fields=name", headers=admin).get_json()
    assert some == {"id": account["id"], "version": 1, "name": "Acme Bank"}

    changed = api.patch(
        f"/api/v1/accounts/{account['id']}",
        headers=admin,
        json={"version": 1, "employees": 130, "website": None},
    )
    assert changed.status_code == 200
    assert changed.get_json()["employees"] == 130 and changed.get_json()["version"] == 2

    # The account is referred to by nothing that restricts; the activity's link is cleared.
    assert (
        api.delete(f"/api/v1/accounts/{account['id']}?version=2", headers=admin).status_code == 204
    )
    _problem(api.get(f"/api/v1/accounts/{account['id']}", headers=admin), 404)
    link = api.get(f"/api/v1/activities/{activity['id']}", headers=admin).get_json()
    assert link["related_to"] is None


def test_stale_patch_is_409_and_the_record_is_unchanged(demo_app, api, admin):
    account = _create(api, admin, "accounts", {"name": "Globex", "city": "Springfield"})
    url = f"/api/v1/accounts/{account['id']}"
    first = api.patch(url, headers=admin, json={"version": 1, "city": "Shelbyville"})
    assert first.status_code == 200 and first.get_json()["version"] == 2

    stale = api.patch(
        url, headers=bearer(demo_app, ADMIN), json={"version": 1, "city": "Ogdenville"}
    )
    body = _problem(stale, 409)
    assert body["field"] == "version"
    stored = api.get(url, headers=admin).get_json()
    assert stored["city"] == "Shelbyville" and stored["version"] == 2

    # A stale delete is refused too, and the record stays.
    _problem(api.delete(f"{url}?version=1", headers=admin), 409)
    assert api.get(url, headers=admin).status_code == 200

    missing = _problem(api.patch(url, headers=admin, json={"city": "Capital City"}), 422)
    assert missing["field"] == "version" and "version" in missing["errors"]
    wrong = _problem(api.patch(url, headers=admin, json={"version": "2", "city": "X"}), 422)
    assert wrong["field"] == "version"
    other_id = _problem(api.patch(url, headers=admin, json={"version": 2, "id": 999}), 422)
    assert other_id["field"] == "id"
    assert api.get(url, headers=admin).get_json() == stored


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_are_4xx_naming_the_field_and_write_nothing(demo_app, api, admin):
    _create(api, admin, "accounts", {"name": "Initech"})
    _create(api, admin, "accounts", {"name": "Hooli"})
    before = _count(demo_app, "accounts")

    wrong = _problem(
        api.post(
            "/api/v1/accounts",
            headers=admin,
            json={"name": "X", "employees": "many", "industry": "Mining", "bogus": 1},
        ),
        422,
    )
    assert set(wrong["errors"]) == {"employees", "industry", "bogus"}
    assert "whole number" in wrong["errors"]["employees"]
    assert "bogus" in wrong["errors"]["bogus"]
    assert _problem(api.post("/api/v1/accounts", headers=admin, json={}), 422)["errors"] == {
        "name": "Account name is required."
    }
    not_text = _problem(api.post("/api/v1/accounts", headers=admin, json={"name": 5}), 422)
    assert not_text["field"] == "name"
    computed = _problem(
        api.post("/api/v1/contacts", headers=admin, json={"last_name": "L", "full_name": "F"}),
        422,
    )
    assert computed["field"] == "full_name"

    malformed = api.post(
        "/api/v1/accounts", headers={**admin, "Content-Type": "application/json"}, data='{"name":'
    )
    assert "not valid JSON" in _problem(malformed, 400)["detail"]
    _problem(api.post("/api/v1/accounts", headers=admin, data=""), 400)
    _problem(api.post("/api/v1/accounts", headers=admin, data='{"name": NaN}'), 400)
    _problem(api.post("/api/v1/accounts", headers=admin, data="[" * 100_000), 400)
    _problem(api.post("/api/v1/accounts", headers=admin, data=b"\xff\xfe{"), 400)
    for body in ('["name"]', '"Acme"', "42", "null"):
        _problem(api.post("/api/v1/accounts", headers=admin, data=body), 422)
    _problem(api.patch("/api/v1/accounts/1", headers=admin, data="[1]"), 422)

    cases = {
        "limit=501": "limit",
        "limit=0": "limit",
        "limit=ten": "limit",
        "cursor=not-a-cursor": "cursor",
        "name__like=acme": "name__like",
        "nonsense=1": "nonsense",
        "employees=abc": "employees",
        "employees__contains=1": "employees",
        "industry__gte=Banking": "industry",
        "sort=nonsense": "nonsense",
        "sort=description": "description",
        "fields=name,nonsense": "nonsense",
        "parent.nonsense=1": "nonsense",
        "q=acme": "q",
    }
    for query, field in cases.items():
        body = _problem(api.get(f"/api/v1/accounts?{query}", headers=admin), 400)
        assert body["field"] == field, (query, body)

    # A cursor of another sort order is refused, not misread.
    first = api.get("/api/v1/accounts?limit=1&sort=name", headers=admin).get_json()
    assert first["next"]
    swapped = api.get(f"/api/v1/accounts?limit=1&sort=-name&cursor={first['next']}", headers=admin)
    assert _problem(swapped, 400)["field"] == "cursor"
    _problem(api.delete("/api/v1/accounts/1?version=abc", headers=admin), 400)
    assert _count(demo_app, "accounts") == before


def test_unknown_objects_and_records_are_404(api, admin):
    assert "no object" in _problem(api.get("/api/v1/nothing", headers=admin), 404)["detail"]
    _problem(api.post("/api/v1/nothing", headers=admin, json={"a": 1}), 404)
    _problem(api.get("/api/v1/accounts/424242", headers=admin), 404)
    _problem(api.patch("/api/v1/accounts/424242", headers=admin, json={"version": 1}), 404)
    _problem(api.delete("/api/v1/accounts/424242", headers=admin), 404)
    _problem(api.get("/api/v1/accounts/99999999999999999999999", headers=admin), 404)
    # The identity endpoints keep their own routes beside /api/v1/<object>.
    assert "items" in api.get("/api/v1/users", headers=admin).get_json()


# --------------------------------------------------------------------------- pagination


@pytest.mark.parametrize("sort", ["employees", "-employees", "employees,-name", "city,name"])
def test_pages_walk_every_record_exactly_once(demo_app, api, admin, sort):
    employees = [None, 5, 5, 10, None, 3, 5, None, 10, 7, 5, None, 1, 5, 3, 8, None]
    with service_as(demo_app, ADMIN) as records:
        for index, count in enumerate(employees):
            records.create(
                "accounts",
                {
                    "name": f"Company {index % 4}",
                    "employees": count,
                    "city": None if index % 3 else "Paris",
                },
            )
    seen: list[dict] = []
    cursor = None
    for _ in range(20):
        query = f"/api/v1/accounts?limit=4&sort={sort}&fields=employees,city,name"
        page = api.get(query + (f"&cursor={cursor}" if cursor else ""), headers=admin)
        assert page.status_code == 200, page.get_data(as_text=True)
        body = page.get_json()
        assert len(body["data"]) <= 4
        seen.extend(body["data"])
        cursor = body["next"]
        if cursor is None:
            break
    ids = [row["id"] for row in seen]
    assert len(ids) == len(employees) and len(set(ids)) == len(employees)

    first_key = sort.split(",")[0]
    name, descending = first_key.lstrip("-"), first_key.startswith("-")
    # NULL sorts as the smallest value, so it comes first ascending and last descending.
    keys = [(row[name] is not None, row[name] or 0) for row in seen]
    assert keys == sorted(keys, reverse=descending)


def test_filters_select_exactly_the_matching_records(api, admin):
    acme = _create(api, admin, "accounts", {"name": "Acme", "industry": "Banking", "employees": 50})
    _create(api, admin, "accounts", {"name": "Acme Labs", "industry": "Retail", "employees": 5})
    _create(api, admin, "accounts", {"name": "Umbrella", "employees": None})
    contact = _create(api, admin, "contacts", {"last_name": "Lee", "account": acme["id"]})

    def names(query: str, obj: str = "accounts", key: str = "name") -> list[str]:
        response = api.get(f"/api/v1/{obj}?{query}", headers=admin)
        assert response.status_code == 200, response.get_data(as_text=True)
        return sorted(row[key] for row in response.get_json()["data"])

    assert names("industry=Banking") == ["Acme"]
    assert names("name__startswith=acme") == ["Acme", "Acme Labs"]
    assert names("name__contains=BRELL") == ["Umbrella"]
    assert names("employees__gte=5&employees__lt=50") == ["Acme Labs"]
    assert names("employees__empty=true") == ["Umbrella"]
    assert names("industry__in=Banking,Retail") == ["Acme", "Acme Labs"]
    assert names("industry__ne=Banking") == ["Acme Labs", "Umbrella"]
    assert names("account.industry=Banking", "contacts", "last_name") == ["Lee"]
    assert names(f"account={acme['id']}", "contacts", "last_name") == ["Lee"]
    assert names("account.industry=Retail", "contacts", "last_name") == []
    assert contact["full_name"] == "Lee"


# --------------------------------------------------------------------------- access


def test_a_user_never_reads_a_record_outside_their_scope(demo_app, api, admin):
    theirs = _create(api, admin, "accounts", {"name": "Admin's account"})
    sam = bearer(demo_app, SAM)
    own = _create(api, sam, "accounts", {"name": "Sam's account"})
    assert own["owner"] == user_id(demo_app, SAM)

    listed = api.get("/api/v1/accounts", headers=sam).get_json()["data"]
    assert [row["id"] for row in listed] == [own["id"]]
    assert api.get(f"/api/v1/accounts?id={theirs['id']}", headers=sam).get_json()["data"] == []
    assert api.get("/api/v1/accounts?name__contains=admin", headers=sam).get_json()["data"] == []
    _problem(api.get(f"/api/v1/accounts/{theirs['id']}", headers=sam), 404)
    _problem(api.patch(f"/api/v1/accounts/{theirs['id']}", headers=sam, json={"version": 1}), 404)
    # Linking to it from a contact is refused the same way as a missing record.
    linked = api.post(
        "/api/v1/contacts", headers=sam, json={"last_name": "X", "account": theirs["id"]}
    )
    assert _problem(linked, 422)["field"] == "account"
    # Sam's role may not delete accounts at all.
    _problem(api.delete(f"/api/v1/accounts/{own['id']}", headers=sam), 403)
    # Giving his record to someone outside his team is refused, and nothing changes.
    gift = api.patch(
        f"/api/v1/accounts/{own['id']}",
        headers=sam,
        json={"version": 1, "owner": user_id(demo_app, ADMIN)},
    )
    assert _problem(gift, 422)["field"] == "owner"

    # Maria manages Sam's team: she reads his record, not the administrator's.
    maria = bearer(demo_app, MARIA)
    seen = [row["id"] for row in api.get("/api/v1/accounts", headers=maria).get_json()["data"]]
    assert seen == [own["id"]]
    # Aiko (auditor) reads everything and changes nothing.
    aiko = bearer(demo_app, AIKO)
    assert len(api.get("/api/v1/accounts", headers=aiko).get_json()["data"]) == 2
    _problem(api.post("/api/v1/accounts", headers=aiko, json={"name": "No"}), 403)
    _problem(api.patch(f"/api/v1/accounts/{own['id']}", headers=aiko, json={"version": 1}), 403)


def test_a_hidden_field_never_leaves_the_server_and_is_unknown(demo_app, api, admin):
    _hide_for_role(demo_app, "sales_rep", "accounts", "annual_revenue")
    sam = bearer(demo_app, SAM)
    own = _create(api, sam, "accounts", {"name": "Secretive"})
    assert "annual_revenue" not in own
    # A manager sets the revenue; Sam still never sees it.
    maria = bearer(demo_app, MARIA)
    changed = api.patch(
        f"/api/v1/accounts/{own['id']}",
        headers=maria,
        json={"version": 1, "annual_revenue": "987654.32"},
    )
    assert changed.get_json()["annual_revenue"]["amount"] == "987654.32"

    for url in (
        f"/api/v1/accounts/{own['id']}",
        "/api/v1/accounts",
        "/api/v1/meta/accounts",
        "/api/v1/meta",
        "/api/v1/openapi.json",
    ):
        text = api.get(url, headers=sam).get_data(as_text=True)
        assert "annual_revenue" not in text and "987654" not in text, url

    for query in (
        "annual_revenue__gte=0",
        "annual_revenue=987654.32",
        "annual_revenue__empty=false",
        "sort=annual_revenue",
        "sort=name,-annual_revenue",
        "fields=name,annual_revenue",
    ):
        body = _problem(api.get(f"/api/v1/accounts?{query}", headers=sam), 400)
        assert body["field"] == "annual_revenue", query
        assert "no field" in body["detail"]
        assert "987654" not in str(body)
    through = api.get("/api/v1/contacts?account.annual_revenue__gte=0", headers=sam)
    assert "no field" in _problem(through, 400)["detail"]
    single = api.get(f"/api/v1/accounts/{own['id']}?fields=annual_revenue", headers=sam)
    assert _problem(single, 400)["field"] == "annual_revenue"
    _problem(api.get("/api/v1/meta/accounts/fields/annual_revenue", headers=sam), 404)

    # Writing it is writing an unknown field; the stored value is untouched.
    write = api.patch(
        f"/api/v1/accounts/{own['id']}", headers=sam, json={"version": 2, "annual_revenue": 1}
    )
    assert _problem(write, 422)["errors"] == {
        "annual_revenue": "Account has no field 'annual_revenue'."
    }
    with service_as(demo_app, MARIA) as records:
        assert str(records.get("accounts", own["id"])["annual_revenue"].amount) == "987654.32"


def test_token_scopes_narrow_what_the_api_allows(demo_app, api):
    reader = bearer(demo_app, ADMIN, scopes=["accounts:read"])
    assert api.get("/api/v1/accounts", headers=reader).status_code == 200
    _problem(api.post("/api/v1/accounts", headers=reader, json={"name": "No"}), 403)
    _problem(api.get("/api/v1/contacts", headers=reader), 403)
    meta = api.get("/api/v1/meta", headers=reader).get_json()["data"]
    assert [(o["name"], o["actions"]) for o in meta] == [("accounts", ["read"])]
    assert all(f["access"] == "read" for f in meta[0]["fields"])


def test_cookie_sessions_read_but_never_change_api_data(demo_app, admin, api):
    account = _create(api, admin, "accounts", {"name": "Cookie Co"})
    browser = client_as(demo_app, ADMIN)
    assert browser.get("/api/v1/accounts").status_code == 200
    url = f"/api/v1/accounts/{account['id']}"
    assert browser.post("/api/v1/accounts", json={"name": "Via cookie"}).status_code == 401
    assert browser.patch(url, json={"version": 1, "name": "Changed"}).status_code == 401
    assert browser.delete(url).status_code == 401
    assert browser.post("/api/v1/meta/accounts/fields", json={}).status_code == 401
    assert api.get(url, headers=admin).get_json()["name"] == "Cookie Co"
    assert _count(demo_app, "accounts") == 1

    anonymous = demo_app.test_client()
    _problem(anonymous.get("/api/v1/accounts"), 401)
    _problem(anonymous.get("/api/v1/openapi.json"), 401)
    _problem(api.get("/api/v1/accounts", headers={"Authorization": "Bearer nope"}), 401)


def test_support_agent_reads_accounts_but_cannot_create(demo_app, api, admin):
    _create(api, admin, "accounts", {"name": "Visible to all readers"})
    sofia = bearer(demo_app, SOFIA)
    assert len(api.get("/api/v1/accounts", headers=sofia).get_json()["data"]) == 1
    _problem(api.post("/api/v1/accounts", headers=sofia, json={"name": "No"}), 403)


def test_duplicates_are_refused_only_when_asked(api, admin):
    _create(api, admin, "contacts", {"last_name": "Doe", "email": "jane@example.com"})
    again = {"last_name": "Doe", "email": "JANE@example.com"}
    refused = api.post("/api/v1/contacts?check_duplicates=true", headers=admin, json=again)
    body = _problem(refused, 409)
    assert body["matches"] and body["matches"][0]["id"]
    _problem(api.post("/api/v1/contacts?check_duplicates=maybe", headers=admin, json=again), 400)
    assert api.post("/api/v1/contacts", headers=admin, json=again).status_code == 201


def test_an_array_creates_several_records_all_or_none(demo_app):
    api = demo_app.test_client()
    token = bearer(demo_app, ADMIN)
    rows = [{"last_name": f"Batch {n}", "email": f"batch{n}@example.org"} for n in range(3)]
    response = api.post("/api/v1/contacts", json=rows, headers=token)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()["data"]
    assert [row["last_name"] for row in created] == ["Batch 0", "Batch 1", "Batch 2"]
    assert all(row["version"] == 1 for row in created)

    bad = [{"last_name": "Fine"}, {"last_name": "Broken", "email": "not an email"}, {"x": 1}]
    response = api.post("/api/v1/contacts", json=bad, headers=token)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"[1].email", "[2].x", "[2].last_name"}
    listed = api.get("/api/v1/contacts?last_name=Fine", headers=token).get_json()
    assert listed["data"] == []  # the good row was rolled back with the bad ones
    too_many = [{"last_name": "x"}] * 201
    assert api.post("/api/v1/contacts", json=too_many, headers=token).status_code == 422
    assert api.post("/api/v1/contacts", json=[], headers=token).status_code == 422
