"""Blind indexes: exact-match lookup on encrypted fields through HMAC digests.

The shadow column holds a digest, never the value; ``eq`` and ``in`` filters find
records through it from the record service, the API, the list page and import keys;
every other operator stays refused; the digest follows creates, updates, merges and
an index turned on (existing values) or off (the column dropped).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bastion.data import blind_index, definitions
from bastion.data.blind_index import column_name
from bastion.data.catalog import current_catalog, forget_catalog
from bastion.data.definitions import DefinitionError, sync_declared
from bastion.data.errors import BadQuery, DuplicatesFound
from bastion.data.importer import ImportOptions, run_import
from bastion.data.query import Filter
from bastion.db import db
from bastion.plugins.contributions import FieldDefinition, ObjectDefinition
from bastion.runtime import platform
from tests.conftest import csrf_token
from tests.core.data.conftest import ADMIN, bearer, client_as, service_as

PROBLEM = "application/problem+json"
NATIONAL_ID = {
    "name": "national_id",
    "label": "National id",
    "type": "text",
    "encrypted": True,
    "blind_index": True,
}


def add_field(app, object_name: str, spec: dict[str, Any]) -> None:
    with app.test_request_context():
        definitions.add_field(object_name, spec)


def update_field(app, object_name: str, name: str, changes: dict[str, Any]) -> None:
    with app.test_request_context():
        definitions.update_field(object_name, name, changes)


def shadow(app, table: str, record_id: int, field: str) -> str | None:
    with app.app_context():
        return db.session.execute(
            text(f"SELECT {column_name(field)} FROM {table} WHERE id = :id"),  # noqa: S608
            {"id": record_id},
        ).scalar()


def columns(app, table: str) -> set[str]:
    with app.app_context():
        return {c["name"] for c in inspect(db.engine).get_columns(table)}


def index_names(app, table: str) -> set[str]:
    with app.app_context():
        return {ix["name"] for ix in inspect(db.engine).get_indexes(table)}


def found(records, object_name: str, *filters: Filter) -> list[int]:
    return sorted(r.id for r in records.query(object_name, filters=list(filters)).records)


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "text", "blind_index": True}, "encrypted fields only"),
        ({"type": "decimal", "encrypted": True, "blind_index": True}, "decimal field cannot"),
        ({"type": "long_text", "encrypted": True, "blind_index": True}, "long_text field"),
        ({"type": "date", "encrypted": True, "blind_index": True}, "date field cannot"),
        ({"type": "text", "encrypted": True, "blind_index": "yes"}, "true or false"),
    ],
)
def test_a_blind_index_only_serves_encrypted_fields_of_exact_types(app, spec, fragment):
    with app.test_request_context(), pytest.raises(DefinitionError) as refused:
        definitions.add_field("accounts", {"name": "code", "label": "Code", **spec})
    assert refused.value.field == "blind_index"
    assert fragment in str(refused.value)
    assert "code" not in columns(app, "obj_accounts")


def test_the_api_refuses_a_misplaced_blind_index_naming_the_setting(app):
    api = app.test_client()
    response = api.post(
        "/api/v1/meta/accounts/fields",
        headers=bearer(app, ADMIN),
        json={"name": "code", "label": "Code", "type": "text", "blind_index": True},
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert response.get_json()["field"] == "blind_index"
    added = api.post("/api/v1/meta/accounts/fields", headers=bearer(app, ADMIN), json=NATIONAL_ID)
    assert added.status_code == 201, added.get_data(as_text=True)
    assert added.get_json()["blind_index"] is True


# --------------------------------------------------------------------------- lookups


def test_eq_and_in_find_records_through_digests_and_nothing_else_is_allowed(app):
    add_field(app, "contacts", NATIONAL_ID)
    add_field(
        app,
        "contacts",
        {"name": "private_email", "label": "Private email", "type": "email", "encrypted": True}
        | {"blind_index": True},
    )
    add_field(
        app,
        "contacts",
        {"name": "badge", "label": "Badge", "type": "integer", "encrypted": True}
        | {"blind_index": True},
    )
    add_field(app, "contacts", {"name": "pin", "label": "PIN", "type": "text", "encrypted": True})
    assert "ix_contacts_national_id__bidx" in index_names(app, "obj_contacts")
    with service_as(app, ADMIN) as records:
        ada = records.create(
            "contacts",
            {"last_name": "Lovelace", "national_id": "  AB-123 ", "private_email": "Ada@X.org"}
            | {"badge": 7, "pin": "1234"},
        )
        bob = records.create("contacts", {"last_name": "Bob", "national_id": "CD-456"})
        assert found(records, "contacts", Filter("national_id", "eq", "AB-123")) == [ada.id]
        assert found(records, "contacts", Filter("national_id", "eq", "ab-123")) == []
        both = Filter("national_id", "in", "AB-123,CD-456")
        assert found(records, "contacts", both) == [ada.id, bob.id]
        assert found(records, "contacts", Filter("national_id", "in", ["CD-456"])) == [bob.id]
        # Normalized as the field type's equality: e-mail lower-cased, integers as numbers.
        assert found(records, "contacts", Filter("private_email", "eq", "ADA@x.ORG")) == [ada.id]
        assert found(records, "contacts", Filter("badge", "eq", "7")) == [ada.id]
        assert records.count("contacts", filters=[Filter("badge", "in", [7, 8])]) == 1
        for op in ("contains", "startswith", "gt", "ne", "empty"):
            with pytest.raises(BadQuery, match="only be matched exactly") as refused:
                records.query("contacts", filters=[Filter("national_id", op, "AB")])
            assert refused.value.field == "national_id"
        with pytest.raises(BadQuery, match="give it a blind index"):
            records.query("contacts", filters=[Filter("pin", "eq", "1234")])
        with pytest.raises(BadQuery, match="Badge"):
            records.query("contacts", filters=[Filter("badge", "eq", "seven")])
        stored = db.session.execute(
            text("SELECT national_id, national_id__bidx FROM obj_contacts WHERE id = :id"),
            {"id": ada.id},
        ).one()
    assert "AB-123" not in stored[0] and re.fullmatch(r"[0-9a-f]{64}", stored[1])


def test_digests_follow_updates_merges_and_empty_values(app):
    add_field(app, "contacts", NATIONAL_ID)
    with service_as(app, ADMIN) as records:
        one = records.create("contacts", {"last_name": "One", "national_id": "X-1"})
        two = records.create("contacts", {"last_name": "Two"})
        assert shadow(app, "obj_contacts", two.id, "national_id") is None
        records.update("contacts", one.id, {"national_id": "X-2"}, version=one.version)
        assert found(records, "contacts", Filter("national_id", "eq", "X-1")) == []
        assert found(records, "contacts", Filter("national_id", "eq", "X-2")) == [one.id]
        records.merge(
            "contacts", two.id, [one.id], values={"national_id": "X-2"}, version=two.version
        )
        assert found(records, "contacts", Filter("national_id", "eq", "X-2")) == [two.id]
        current = records.get("contacts", two.id)
        records.update("contacts", two.id, {"national_id": None}, version=current.version)
        assert shadow(app, "obj_contacts", two.id, "national_id") is None
        assert found(records, "contacts", Filter("national_id", "eq", "X-2")) == []
        assert found(records, "contacts", Filter("national_id", "eq", None)) == [two.id]


def test_turning_the_index_on_fills_it_and_turning_it_off_drops_the_column(app, monkeypatch):
    monkeypatch.setattr(blind_index, "BATCH_SIZE", 2)  # existing values in several batches
    plain = {k: v for k, v in NATIONAL_ID.items() if k != "blind_index"}
    add_field(app, "contacts", plain)
    with service_as(app, ADMIN) as records:
        ids = [
            records.create("contacts", {"last_name": f"P{n}", "national_id": f"ID-{n}"}).id
            for n in range(3)
        ]
        records.create("contacts", {"last_name": "Empty"})
    assert column_name("national_id") not in columns(app, "obj_contacts")
    update_field(app, "contacts", "national_id", {"blind_index": True})
    with service_as(app, ADMIN) as records:
        assert found(records, "contacts", Filter("national_id", "eq", "ID-1")) == [ids[1]]
        assert found(records, "contacts", Filter("national_id", "in", "ID-0,ID-2")) == [
            ids[0],
            ids[2],
        ]
    update_field(app, "contacts", "national_id", {"blind_index": False})
    assert column_name("national_id") not in columns(app, "obj_contacts")
    assert "ix_contacts_national_id__bidx" not in index_names(app, "obj_contacts")
    with service_as(app, ADMIN) as records:
        assert records.get("contacts", ids[1])["national_id"] == "ID-1"
        with pytest.raises(BadQuery, match="cannot be filtered on"):
            records.query("contacts", filters=[Filter("national_id", "eq", "ID-1")])


def test_a_plugin_declares_a_blind_index_and_its_next_version_turns_it_on(app):
    with service_as(app, ADMIN) as records:
        account = records.create("accounts", {"name": "Acme", "street": "Main 1"})
    objects = dict(platform(app).objects)
    owner, definition = objects["accounts"]
    tax = FieldDefinition("tax_id", "text", "Tax id", encrypted=True, blind_index=True)
    objects["accounts"] = (owner, replace(definition, fields=(*definition.fields, tax)))
    with app.app_context():
        assert sync_declared(objects) == ["field accounts.tax_id added"]
    with service_as(app, ADMIN) as records:
        records.update("accounts", account.id, {"tax_id": "DE 1"}, version=account.version)
        assert found(records, "accounts", Filter("tax_id", "eq", "DE 1")) == [account.id]
    # A declaration the admin pages would refuse is refused for the plugin too.
    bad = replace(tax, name="vat", encrypted=False)
    objects["accounts"] = (owner, replace(definition, fields=(*definition.fields, tax, bad)))
    with app.app_context(), pytest.raises(DefinitionError, match="blind_index serves"):
        sync_declared(objects)
    # Off in the next version: the column goes, the values stay readable.
    objects["accounts"] = (
        owner,
        replace(definition, fields=(*definition.fields, replace(tax, blind_index=False))),
    )
    with app.app_context():
        assert sync_declared(objects) == ["field accounts.tax_id updated"]
    assert column_name("tax_id") not in columns(app, "obj_accounts")
    with service_as(app, ADMIN) as records:
        assert records.get("accounts", account.id)["tax_id"] == "DE 1"


# --------------------------------------------------------------------------- doors


def test_the_api_filters_exactly_and_refuses_other_operators(app):
    add_field(app, "contacts", NATIONAL_ID)
    api, admin = app.test_client(), bearer(app, ADMIN)
    made = api.post(
        "/api/v1/contacts", headers=admin, json={"last_name": "Api", "national_id": "Q-9"}
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    hits = api.get("/api/v1/contacts?national_id=Q-9", headers=admin).get_json()["data"]
    assert [h["national_id"] for h in hits] == ["Q-9"]
    assert api.get("/api/v1/contacts?national_id__in=Q-8,Q-9", headers=admin).get_json()["data"]
    refused = api.get("/api/v1/contacts?national_id__contains=Q", headers=admin)
    assert refused.status_code == 400 and refused.mimetype == PROBLEM
    assert refused.get_json()["field"] == "national_id"
    spec = api.get("/api/v1/openapi.json", headers=admin).get_json()
    names = {
        p["name"]
        for p in spec["paths"]["/contacts"]["get"]["parameters"]
        if p.get("name", "").startswith("national_id")
    }
    assert names == {"national_id", "national_id__in"}


def test_the_list_page_offers_an_exact_value_filter(app):
    with app.test_request_context():
        definitions.create_object(
            {
                "name": "patients",
                "label": "Patient",
                "fields": [{"name": "name", "label": "Name", "type": "text"}, NATIONAL_ID],
            }
        )
    with service_as(app, ADMIN) as records:
        records.create("patients", {"name": "Findme", "national_id": "LP-1"})
        records.create("patients", {"name": "Other", "national_id": "LP-2"})
    admin = client_as(app, ADMIN)
    page = admin.get("/o/patients?national_id=LP-1")
    assert page.status_code == 200
    assert 'id="filter-national_id"' in page.text
    assert "National id (exact value)" in page.text
    assert "Findme" in page.text and "Other" not in page.text
    refused = admin.get("/o/patients?national_id__contains=LP")
    assert "only be matched exactly" in refused.text
    # A saved view would keep the filter's value in plain text: refused.
    token = csrf_token(admin, "/o/patients")
    saved = admin.post(
        "/o/patients/views",
        data={"csrf_token": token, "name": "One id", "query": "national_id=LP-1"},
        follow_redirects=True,
    )
    assert "cannot be saved as a view" in saved.text and "encrypted" in saved.text
    with app.app_context():
        assert db.session.execute(text("SELECT COUNT(*) FROM saved_views")).scalar() == 0


def test_import_key_on_a_blind_indexed_field_updates_the_record(app, cli, tmp_path):
    add_field(app, "contacts", NATIONAL_ID)
    with service_as(app, ADMIN) as records:
        kept = records.create("contacts", {"last_name": "Kept", "national_id": "IM-1"})
    path = tmp_path / "people.csv"
    path.write_text("national_id,last_name\nIM-1,Renamed\nIM-2,New\n", encoding="utf-8")
    result = cli("import", "contacts", str(path), "--key", "national_id")
    assert result.exit_code == 0, result.output
    assert "1 created, 1 updated" in result.output
    with service_as(app, ADMIN) as records:
        assert records.get("contacts", kept.id)["last_name"] == "Renamed"
        new = records.query("contacts", filters=[Filter("national_id", "eq", "IM-2")]).records
        assert [r["last_name"] for r in new] == ["New"]


def test_the_admin_field_form_sets_and_clears_the_blind_index(app):
    admin = client_as(app, ADMIN)
    page = "/admin/objects/contacts/fields"
    form = {"type": "text", "label": "Passport", "name": "passport", "encrypted": "on"}
    token = csrf_token(admin, "/admin/objects")
    added = admin.post(page, data={"csrf_token": token, **form, "blind_index": "on"})
    assert added.status_code == 302, added.text[-2000:]
    with app.test_request_context():
        forget_catalog()
        assert current_catalog().get("contacts").field("passport").blind_index
    edit = f"{page}/passport/edit"
    shown = admin.get(edit)
    assert 'name="blind_index"' in shown.text and "Blind index" in shown.text
    kept = {"label": "Passport", "encrypted": "on"}  # the box left unticked: index off
    cleared = admin.post(edit, data={"csrf_token": csrf_token(admin, edit), **kept})
    assert cleared.status_code == 302, cleared.text[-2000:]
    assert column_name("passport") not in columns(app, "obj_contacts")
    with app.test_request_context():
        forget_catalog()
        passport = current_catalog().get("contacts").field("passport")
        assert passport.encrypted and not passport.blind_index
    refused = admin.post(
        page,
        data={"csrf_token": token, "type": "text", "label": "Code", "blind_index": "on"},
    )
    assert refused.status_code == 422
    assert "encrypted fields only" in refused.text


def test_duplicates_are_found_through_a_blind_index(app):
    """A duplicate key on an encrypted field still works: probed through its digests."""
    objects = dict(platform(app).objects)
    owner, _ = objects["accounts"]
    objects["patients"] = (
        owner,
        ObjectDefinition(
            name="patients",
            label="Patient",
            label_plural="Patients",
            fields=(
                FieldDefinition("name", "text", "Name"),
                FieldDefinition("email", "email", "Email", encrypted=True, blind_index=True),
            ),
            name_field="name",
            duplicate_keys=(("email",),),
        ),
    )
    with app.app_context():
        assert "object patients added" in sync_declared(objects)
    with service_as(app, ADMIN) as records:
        first = records.create("patients", {"name": "Ada", "email": "ada@example.org"})
        with pytest.raises(DuplicatesFound) as found_twice:
            records.create(
                "patients", {"name": "Ada L", "email": "ADA@example.org"}, check_duplicates=True
            )
        assert [m["id"] for m in found_twice.value.matches] == [first.id]
    data = b"name,email\nAda again,Ada@Example.org\nGrace,grace@example.org\n"
    with service_as(app, ADMIN) as records:
        report = run_import(records, "patients", data, ImportOptions(skip_duplicates=True))
        assert (report.created, report.skipped) == (1, 1)
        assert [flag.line for flag in report.duplicates] == [2]
        assert records.count("patients") == 2


def test_a_value_that_does_not_decrypt_stops_the_index_being_built(app):
    plain = {k: v for k, v in NATIONAL_ID.items() if k != "blind_index"}
    add_field(app, "contacts", plain)
    with service_as(app, ADMIN) as records:
        one = records.create("contacts", {"last_name": "One", "national_id": "M-1"})
        two = records.create("contacts", {"last_name": "Two", "national_id": "M-2"})
        db.session.execute(  # one record's ciphertext copied onto another
            text(
                "UPDATE obj_contacts SET national_id = (SELECT national_id FROM obj_contacts "
                "WHERE id = :one) WHERE id = :two"
            ),
            {"one": one.id, "two": two.id},
        )
        db.session.commit()
    with app.test_request_context(), pytest.raises(DefinitionError) as refused:
        definitions.update_field("contacts", "national_id", {"blind_index": True})
    assert refused.value.field == "blind_index"
    assert "cannot be decrypted" in str(refused.value) and "M-1" not in str(refused.value)
    assert column_name("national_id") not in columns(app, "obj_contacts")
    with app.test_request_context():
        forget_catalog()
        assert not current_catalog().get("contacts").field("national_id").blind_index
