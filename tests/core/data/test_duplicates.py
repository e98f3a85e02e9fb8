"""Duplicate detection on create: normalized email, phone, names within an account.

Through the REST API (``POST /api/v1/<object>?check_duplicates=true`` answers 409 with
the matches) and the record service; and never about records the user cannot see.
"""

from __future__ import annotations

import pytest

from bastion.data.catalog import FieldMeta
from bastion.data.duplicates import (
    find_duplicates,
    find_duplicates_in_rows,
    normalize,
)
from bastion.data.errors import DuplicatesFound
from tests.core.data.conftest import (
    ADMIN,
    MARIA,
    SAM,
    bearer,
    service_as,
    set_field_access,
    user_id,
)

CHECK = "?check_duplicates=true"


def post(client, headers, object_name, body, *, check=True):
    return client.post(f"/api/v1/{object_name}{CHECK if check else ''}", json=body, headers=headers)


def created(response) -> int:
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


@pytest.fixture
def admin_api(demo_app):
    return demo_app.test_client(), bearer(demo_app, ADMIN)


def test_normalize_emails_phones_names_and_web_addresses():
    email = FieldMeta("email", "email", "Email")
    phone = FieldMeta("phone", "phone", "Phone")
    name = FieldMeta("last_name", "text", "Last name")
    site = FieldMeta("website", "url", "Website")
    assert normalize(email, "  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    typed = ["+44 20 7946 0958", "+44 (20) 7946-0958", "+44-20-7946-0958", "+442079460958"]
    assert {normalize(phone, value) for value in typed} == {"+442079460958"}
    assert normalize(phone, "call me") is None  # not a number: matches nothing
    assert normalize(name, "  Élodie\u00a0 DURAND ") == normalize(name, "elodie durand")
    assert normalize(name, "Straße") == normalize(name, "STRASSE")
    assert normalize(name, "Durand") != normalize(name, "Durant")
    assert normalize(site, "https://www.Acme.com/") == normalize(site, "acme.com")
    assert normalize(site, "acme.com/shop") != normalize(site, "acme.com")
    assert normalize(name, "") is None and normalize(email, None) is None


def test_same_email_in_another_case_is_a_duplicate(demo_app, admin_api):
    client, headers = admin_api
    first = created(
        post(
            client,
            headers,
            "contacts",
            {"first_name": "Ada", "last_name": "Lovelace", "email": "Ada.Lovelace@Example.com"},
        )
    )
    again = post(
        client, headers, "contacts", {"last_name": "L", "email": "ADA.lovelace@example.COM"}
    )
    assert again.status_code == 409
    problem = again.get_json()
    assert problem["matches"] == [{"id": first, "name": "Ada Lovelace", "matched_on": ["email"]}]
    assert "Ada Lovelace" in problem["detail"] and "email" in problem["detail"]
    # Nothing was written; without the check (the user's "save anyway") it is created.
    with service_as(demo_app, ADMIN) as records:
        assert records.count("contacts") == 1
    created(
        post(
            client,
            headers,
            "contacts",
            {"last_name": "L", "email": "ada.lovelace@example.com"},
            check=False,
        )
    )


def test_same_phone_typed_differently_is_a_duplicate(demo_app, admin_api):
    client, headers = admin_api
    first = created(
        post(client, headers, "accounts", {"name": "Acme", "phone": "+44 20 7946 0958"})
    )
    again = post(client, headers, "accounts", {"name": "Other name", "phone": "+44 (20) 7946-0958"})
    assert again.status_code == 409
    assert again.get_json()["matches"] == [{"id": first, "name": "Acme", "matched_on": ["phone"]}]
    created(post(client, headers, "accounts", {"name": "Third", "phone": "+44 20 7946 0959"}))


def test_same_name_within_an_account_ignoring_case_accents_and_spaces(demo_app, admin_api):
    client, headers = admin_api
    acme = created(post(client, headers, "accounts", {"name": "Acme"}))
    globex = created(post(client, headers, "accounts", {"name": "Globex"}))
    elodie = created(
        post(
            client,
            headers,
            "contacts",
            {"first_name": "Élodie", "last_name": "Durand", "account": acme},
        )
    )
    same = {"first_name": "ELODIE", "last_name": "  durand ", "account": acme}
    again = post(client, headers, "contacts", same)
    assert again.status_code == 409
    assert again.get_json()["matches"] == [
        {
            "id": elodie,
            "name": "Élodie Durand",
            "matched_on": ["first_name", "last_name", "account"],
        }
    ]
    # The same person's name at another account is someone else.
    created(post(client, headers, "contacts", {**same, "account": globex}))
    # Without an account the name group does not apply (its fields must all be given).
    created(post(client, headers, "contacts", {"first_name": "Elodie", "last_name": "Durand"}))
    # A different first name is a different person.
    created(post(client, headers, "contacts", {**same, "first_name": "Eloise"}))


def test_account_names_case_and_accents(demo_app, admin_api):
    client, headers = admin_api
    bank = created(post(client, headers, "accounts", {"name": "Société Générale"}))
    created(
        post(client, headers, "accounts", {"name": "Acme Bank", "website": "https://acme.example/"})
    )
    for spelling in ("SOCIETE GENERALE", "société  générale", "Societe Generale"):
        answer = post(client, headers, "accounts", {"name": spelling})
        assert answer.status_code == 409, spelling
        assert [m["id"] for m in answer.get_json()["matches"]] == [bank]
    site = post(client, headers, "accounts", {"name": "Other", "website": "www.ACME.example"})
    assert site.status_code == 409
    assert site.get_json()["matches"][0]["matched_on"] == ["website"]
    created(post(client, headers, "accounts", {"name": "Société Générale Bis"}))


def test_a_rep_learns_nothing_about_records_outside_their_scope(demo_app):
    client = demo_app.test_client()
    with service_as(demo_app, ADMIN) as records:
        records.create(
            "contacts",
            {"last_name": "Hidden", "email": "vip@example.com", "owner": user_id(demo_app, MARIA)},
        )
    sam = bearer(demo_app, SAM)
    # Maria's contact is outside Sam's team: his create is not refused, nothing is named.
    answer = post(client, sam, "contacts", {"last_name": "Mine", "email": "VIP@example.com"})
    mine = created(answer)
    assert "Hidden" not in answer.get_data(as_text=True)
    # His own record is reported, Maria's is still not.
    again = post(client, sam, "contacts", {"last_name": "Again", "email": "vip@example.com"})
    assert again.status_code == 409
    body = again.get_data(as_text=True)
    assert [m["id"] for m in again.get_json()["matches"]] == [mine]
    assert "Hidden" not in body
    # Maria (team tree: Sales and Sales North) sees both.
    with service_as(demo_app, MARIA) as records:
        meta = records.object("contacts")
        found = find_duplicates(records, meta, {"email": "vip@example.com"})
        assert len(found) == 2


def test_a_hidden_field_is_not_compared(demo_app):
    set_field_access(demo_app, "sales_rep", "contacts", "email", "hidden")
    with service_as(demo_app, SAM) as records:
        records.create("contacts", {"last_name": "One", "phone": "+44 20 7946 0958"})
        meta = records.object("contacts")
        # Comparing a field the user cannot read would reveal it: that group is skipped.
        with pytest.raises(DuplicatesFound) as found:
            records.create(
                "contacts",
                {"last_name": "Two", "phone": "+442079460958"},
                check_duplicates=True,
            )
        assert found.value.matches[0]["matched_on"] == ["phone"]
        assert find_duplicates(records, meta, {"email": "x@example.com"}) == []


def test_duplicate_rows_within_one_file(demo_app):
    with service_as(demo_app, ADMIN) as records:
        meta = records.object("contacts")
        rows = [
            {"last_name": "Durand", "first_name": "Élodie", "account": "5"},
            {"last_name": "Martin", "email": "m@example.com"},
            {"last_name": "DURAND", "first_name": "elodie", "account": 5},
            {"last_name": "Other", "email": "M@Example.com", "phone": "+44 20 7946 0958"},
            {"last_name": "Durand", "first_name": "Elodie", "account": 6},
            {"last_name": "Third", "phone": "+442079460958"},
        ]
        found = find_duplicates_in_rows(meta, rows, records.context)
    assert [(d.row, d.first, d.matched_on) for d in found] == [
        (2, 0, ("first_name", "last_name", "account")),
        (3, 1, ("email",)),
        (5, 3, ("phone",)),
    ]


def test_exclude_the_record_itself_and_limit(demo_app):
    with service_as(demo_app, ADMIN) as records:
        meta = records.object("accounts")
        ids = [records.create("accounts", {"name": "Twin"}).id for _ in range(3)]
        assert [r.id for r in find_duplicates(records, meta, {"name": "twin"})] == ids
        assert [
            r.id for r in find_duplicates(records, meta, {"name": "TWIN"}, exclude_id=ids[0])
        ] == ids[1:]
        assert len(find_duplicates(records, meta, {"name": "Twin"}, limit=2)) == 2
