"""Canary tests: the plaintext of an encrypted field never leaves the record service.

A unique canary value is saved in encrypted fields (one with a blind index, one
without) through the REST API and through the record form, changed once, read back,
found by an exact-match filter and indexed for search. Then every byte Bastion keeps
is searched for it: each file of the data directory (the SQLite database and its WAL,
the Whoosh index, key and anchor files), every row of every table read back through
SQL (on PostgreSQL the rows are all there is to read), the audit trail, and every log
line written meanwhile, audit lines included.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bastion.data import definitions
from bastion.db import db
from bastion.search import drain_now
from tests.conftest import csrf_token
from tests.core.data.conftest import ADMIN, bearer, client_as

SECRET_NOTE = {"name": "secret_note", "label": "Secret note", "type": "text", "encrypted": True}
NATIONAL_ID = {
    "name": "national_id",
    "label": "National id",
    "type": "text",
    "encrypted": True,
    "blind_index": True,
}
PRIVATE_EMAIL = {
    "name": "private_email",
    "label": "Private email",
    "type": "email",
    "encrypted": True,
    "blind_index": True,
}


def canary(kind: str) -> str:
    """A value found nowhere by chance: a marker and 12 random hex digits."""
    return f"Cnry{kind}{secrets.token_hex(6)}"


def define_fields(app) -> None:
    with app.test_request_context():
        for spec in (SECRET_NOTE, NATIONAL_ID, PRIVATE_EMAIL):
            definitions.add_field("contacts", spec)


def needles(values: list[str]) -> list[bytes]:
    """Each canary as stored text might show it: as typed, lower-cased (an index's
    tokens, an e-mail address), and JSON-escaped inside a larger document."""
    found = set()
    for value in values:
        for form in (value, value.lower(), json.dumps(value)[1:-1]):
            found.add(form.encode("utf-8"))
    return sorted(found)


def leaks_in_files(root: Path, values: list[str]) -> list[str]:
    """Files under ``root`` whose bytes (or lower-cased bytes) hold a canary."""
    wanted = needles(values)
    leaks = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        lowered = data.lower()
        if any(needle in data or needle.lower() in lowered for needle in wanted):
            leaks.append(str(path.relative_to(root)))
    return leaks


def leaks_in_tables(app, values: list[str]) -> list[str]:
    """Tables with a row whose text holds a canary, read through SQL on either database."""
    wanted = [value.lower() for value in values]
    leaks = []
    with app.app_context():
        connection = db.session.connection()
        for table in inspect(connection).get_table_names():
            quoted = connection.dialect.identifier_preparer.quote(table)
            rows = connection.execute(text(f"SELECT * FROM {quoted}")).all()  # noqa: S608
            dump = "\n".join(repr(tuple(row)) for row in rows).lower()
            if any(value in dump for value in wanted):
                leaks.append(table)
        db.session.rollback()
    return leaks


def audit_rows(app) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT action, object_type, object_id, changes FROM audit_entries "
                "WHERE object_type = 'contacts' ORDER BY seq"
            )
        ).mappings()
        return [dict(row) for row in rows]


def post_form(client, url: str, data: dict[str, str]):
    return client.post(url, data={"csrf_token": csrf_token(client, "/"), **data})


@pytest.fixture
def canary_app(app):
    define_fields(app)
    return app


def test_a_canary_is_stored_logged_audited_and_indexed_only_as_ciphertext(
    canary_app, data_dir, caplog, capfd
):
    app = canary_app
    caplog.set_level(logging.DEBUG)
    values = {
        "api_note": canary("ApiNote"),
        "api_id": canary("ApiId"),
        "api_email": f"{canary('Mail')}@example.org",
        "changed_note": canary("Changed"),
        "form_note": canary("FormNote"),
        "form_id": canary("FormId"),
    }
    api, admin = app.test_client(), bearer(app, ADMIN)

    made = api.post(
        "/api/v1/contacts",
        headers=admin,
        json={
            "last_name": "Canary",
            "secret_note": values["api_note"],
            "national_id": values["api_id"],
            "private_email": values["api_email"],
        },
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    record = made.get_json()
    changed = api.patch(
        f"/api/v1/contacts/{record['id']}",
        headers=admin,
        json={"version": record["version"], "secret_note": values["changed_note"]},
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)

    browser = client_as(app, ADMIN)
    submitted = post_form(
        browser,
        "/o/contacts/new",
        {
            "last_name": "Formcanary",
            "secret_note": values["form_note"],
            "national_id": values["form_id"],
        },
    )
    assert submitted.status_code == 303, submitted.get_data(as_text=True)[-2000:]
    form_id = int(submitted.headers["Location"].rstrip("/").rsplit("/", 1)[-1])

    # Read back through the API and the detail page, found through the blind index.
    got = api.get(f"/api/v1/contacts/{record['id']}", headers=admin).get_json()
    assert (got["secret_note"], got["national_id"], got["private_email"]) == (
        values["changed_note"],
        values["api_id"],
        values["api_email"].lower(),
    )
    detail = browser.get(f"/o/contacts/{form_id}").get_data(as_text=True)
    assert values["form_note"] in detail and values["form_id"] in detail
    for field, value, wanted in (
        ("national_id", values["api_id"], record["id"]),
        ("national_id", values["form_id"], form_id),
        ("private_email", values["api_email"].upper(), record["id"]),
    ):
        hits = api.get(f"/api/v1/contacts?{field}={value}", headers=admin).get_json()["data"]
        assert [hit["id"] for hit in hits] == [wanted], (field, hits)
    listed = browser.get(f"/o/contacts?national_id={values['form_id']}").get_data(as_text=True)
    assert "Formcanary" in listed and f'/o/contacts/{record["id"]}"' not in listed
    exported = api.get(f"/api/v1/contacts/export?national_id={values['api_id']}", headers=admin)
    assert exported.status_code == 200
    exported.close()  # its audit entry is written before the first byte; the file is not read
    drain_now(app)  # the search index is built from these records now

    # The audit trail says the encrypted fields changed, without their values.
    entries = audit_rows(app)
    update = next(e for e in entries if e["action"] == "record.update")
    assert json.loads(update["changes"])["secret_note"] == "(encrypted value changed)"
    created = [e for e in entries if e["action"] == "record.create"]
    assert {e["object_id"] for e in created} >= {str(record["id"]), str(form_id)}
    export = next(e for e in entries if e["action"] == "records.export")
    assert json.loads(export["changes"])["filters"] == ["national_id=(encrypted value)"]

    secret = list(values.values())
    assert leaks_in_tables(app, secret) == []
    with app.app_context():
        db.session.remove()
    assert leaks_in_files(data_dir, secret) == []
    assert any(p.name.endswith("-wal") for p in data_dir.rglob("*")) or not app.config.get(
        "SQLALCHEMY_DATABASE_URI", ""
    ).startswith("sqlite"), "the WAL should be among the files searched"
    assert "audit record.update" in caplog.text  # the audit lines were captured ...
    logged = caplog.text + "".join(capfd.readouterr())
    for value in secret:  # ... and neither they nor any other line hold a canary
        assert value.lower() not in logged.lower(), value


def test_a_ciphertext_moved_to_another_record_or_field_is_an_error_not_data(canary_app):
    app = canary_app
    api, admin = app.test_client(), bearer(app, ADMIN)
    value = canary("Moved")
    first = api.post(
        "/api/v1/contacts", headers=admin, json={"last_name": "First", "secret_note": value}
    ).get_json()
    second = api.post("/api/v1/contacts", headers=admin, json={"last_name": "Second"}).get_json()
    third = api.post("/api/v1/contacts", headers=admin, json={"last_name": "Third"}).get_json()
    with app.app_context():
        stored = db.session.execute(
            text("SELECT secret_note FROM obj_contacts WHERE id = :id"), {"id": first["id"]}
        ).scalar()
        assert value not in stored
        # To another record (same field), and to another field of the same record.
        db.session.execute(
            text("UPDATE obj_contacts SET secret_note = :v WHERE id = :id"),
            {"v": stored, "id": second["id"]},
        )
        db.session.execute(
            text("UPDATE obj_contacts SET national_id = :v WHERE id = :id"),
            {"v": stored, "id": third["id"]},
        )
        db.session.commit()
    browser = client_as(app, ADMIN)
    for record_id in (second["id"], third["id"]):
        response = api.get(f"/api/v1/contacts/{record_id}", headers=admin)
        body = response.get_data(as_text=True)
        assert value not in body
        assert response.status_code != 200
        assert response.mimetype == "application/problem+json", body
        assert "decrypt" in response.get_json()["detail"].lower()
        page = browser.get(f"/o/contacts/{record_id}")
        assert page.status_code != 200 and value not in page.get_data(as_text=True)
        assert "Traceback" not in page.get_data(as_text=True)
    failures = [e for e in audit_rows(app) if e["action"] == "record.decrypt_failed"]
    assert {e["object_id"] for e in failures} == {str(second["id"]), str(third["id"])}
    assert all(value not in (e["changes"] or "") for e in failures)
    # The record it belongs to still reads.
    assert (
        api.get(f"/api/v1/contacts/{first['id']}", headers=admin).get_json()["secret_note"] == value
    )
