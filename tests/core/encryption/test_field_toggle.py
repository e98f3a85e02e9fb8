"""Turning encryption of an existing field on and off, with its values migrated online."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from bastion.data import definitions
from bastion.data.catalog import current_catalog, forget_catalog
from bastion.db import db
from bastion.keys import fields as key_fields
from bastion.keys.cipher import version_of
from bastion.keys.models import EncryptionJob
from bastion.search import drain_now
from tests.conftest import ADMIN_EMAIL, csrf_token
from tests.core.data.conftest import bearer, service_as
from tests.core.encryption.conftest import raw, read_contact

NICKNAME = {
    "name": "nickname",
    "label": "Nickname",
    "type": "text",
    "searchable": True,
    "indexed": True,
}


@pytest.fixture
def nick_app(app):
    with app.test_request_context():
        definitions.add_field("contacts", NICKNAME)
    return app


def _contacts(app, count: int) -> dict[int, str]:
    made = {}
    with service_as(app, None) as records:
        for n in range(count):
            record = records.create("contacts", {"last_name": f"N{n}", "nickname": f"zebracorn{n}"})
            made[record.id] = f"zebracorn{n}"
    return made


def _change(app, changes: dict, *, background: bool = True) -> None:
    with app.test_request_context():
        definitions.update_field("contacts", "nickname", changes)
        forget_catalog()
    if background:
        key_fields.wait_for_background(app)


def _field(app):
    with app.app_context():
        return current_catalog().get("contacts").field("nickname")


def _jobs(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [
            (j.kind, j.state)
            for j in db.session.scalars(select(EncryptionJob).order_by(EncryptionJob.id))
        ]


def test_turning_encryption_on_and_off_migrates_every_value(nick_app):
    made = _contacts(nick_app, 7)
    with service_as(nick_app, None) as records:
        # Its ciphertext is longer than the plain column's 255 characters (PostgreSQL).
        long = records.create("contacts", {"last_name": "Long", "nickname": "z" * 250})
    made[long.id] = "z" * 250
    _change(nick_app, {"encrypted": True})
    item = _field(nick_app)
    assert item.encrypted and not (item.searchable or item.indexed or item.unique)
    for record_id, nickname in made.items():
        stored = raw(nick_app, "nickname", record_id)
        assert version_of(stored) == 1 and nickname not in stored
        values = read_contact(nick_app, record_id)
        assert values["version"] == 1  # users' versions untouched: no 409 for them
        with service_as(nick_app, None) as records:
            assert records.get("contacts", record_id).get("nickname") == nickname
    assert _jobs(nick_app) == [("encrypt_field", "done")]

    _change(nick_app, {"encrypted": False})
    assert not _field(nick_app).encrypted
    for record_id, nickname in made.items():
        assert raw(nick_app, "nickname", record_id) == nickname
        with service_as(nick_app, None) as records:
            assert records.get("contacts", record_id).get("nickname") == nickname
    assert _jobs(nick_app) == [("encrypt_field", "done"), ("decrypt_field", "done")]
    with nick_app.app_context():
        changes = db.session.execute(
            text("SELECT changes FROM audit_entries WHERE action = 'keys.field_encrypt'")
        ).scalar()
    assert json.loads(changes) == {"field": "nickname"}


def test_reads_are_right_in_the_middle_of_a_migration_and_cli_resumes_it(
    nick_app, cli, monkeypatch
):
    made = _contacts(nick_app, 5)
    # The background thread "died" before doing anything.
    monkeypatch.setattr(key_fields, "start_background", lambda app=None: None)
    _change(nick_app, {"encrypted": True}, background=False)
    with service_as(nick_app, None) as records:
        later = records.create("contacts", {"last_name": "Later", "nickname": "after-change"})
        first = next(iter(made))
        current = records.get("contacts", first)
        records.update("contacts", first, {"nickname": "edited"}, version=current.version)
    made[later.id], made[first] = "after-change", "edited"
    # Mixed state: old rows plain, new writes encrypted; every read is right.
    assert raw(nick_app, "nickname", later.id).startswith("v1:")
    assert raw(nick_app, "nickname", list(made)[1]) == "zebracorn1"
    with service_as(nick_app, None) as records:
        for record_id, nickname in made.items():
            assert records.get("contacts", record_id).get("nickname") == nickname
    status = cli("keys", "status")
    assert "field contacts.nickname: turning encrypted, 4 values left" in status.output

    resumed = cli("keys", "migrate", "--batch-size", "2")
    assert resumed.exit_code == 0, resumed.output
    assert "contacts.nickname: 4 values rewritten, done." in resumed.output
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 1
        assert read_contact(nick_app, record_id)["version"] in (1, 2)
    with service_as(nick_app, None) as records:
        for record_id, nickname in made.items():
            assert records.get("contacts", record_id).get("nickname") == nickname
    assert "No field migration is pending." in cli("keys", "migrate").output


def test_a_rotation_covers_a_field_still_turning_plain(nick_app, cli, monkeypatch):
    made = _contacts(nick_app, 3)
    _change(nick_app, {"encrypted": True})
    monkeypatch.setattr(key_fields, "start_background", lambda app=None: None)
    _change(nick_app, {"encrypted": False}, background=False)
    assert cli("keys", "rotate").exit_code == 0
    # Version 1 is not retired while the field still holds version 1 ciphertexts.
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 2
    assert cli("keys", "migrate").exit_code == 0
    assert cli("keys", "retire", "1").exit_code == 0
    for record_id, nickname in made.items():
        assert raw(nick_app, "nickname", record_id) == nickname


def test_the_plaintext_leaves_the_search_index(nick_app):
    from tests.core.data.test_search import found, index_bytes

    made = _contacts(nick_app, 2)
    drain_now(nick_app)
    assert sorted(found(nick_app, ADMIN_EMAIL, "zebracorn0")) == [min(made)]
    _change(nick_app, {"encrypted": True})
    assert found(nick_app, ADMIN_EMAIL, "zebracorn0") == []
    drain_now(nick_app)  # the indexer re-indexes contacts and compacts the index
    assert found(nick_app, ADMIN_EMAIL, "zebracorn0") == []
    assert b"zebracorn" not in index_bytes(nick_app)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": "age", "label": "Age", "type": "integer"}, "column is typed"),
        ({"name": "born", "label": "Born", "type": "date"}, "column is typed"),
    ],
)
def test_typed_fields_are_refused_through_the_api(nick_app, spec, fragment):
    with nick_app.test_request_context():
        definitions.add_field("contacts", spec)
    client = nick_app.test_client()
    response = client.patch(
        f"/api/v1/meta/contacts/fields/{spec['name']}",
        json={"encrypted": True},
        headers=bearer(nick_app, ADMIN_EMAIL),
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert fragment in response.get_json()["detail"]


def test_the_api_turns_encryption_on(nick_app):
    made = _contacts(nick_app, 2)
    client = nick_app.test_client()
    response = client.patch(
        "/api/v1/meta/contacts/fields/nickname",
        json={"encrypted": True},
        headers=bearer(nick_app, ADMIN_EMAIL),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["encrypted"] is True
    key_fields.wait_for_background(nick_app)
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 1
    contradiction = client.patch(
        "/api/v1/meta/contacts/fields/nickname",
        json={"encrypted": False, "blind_index": True},
        headers=bearer(nick_app, ADMIN_EMAIL),
    )
    assert contradiction.status_code == 422


def test_the_admin_field_page_turns_encryption_on(nick_app, admin_client):
    made = _contacts(nick_app, 2)
    page = admin_client.get("/admin/objects/contacts/fields/nickname/edit")
    assert page.status_code == 200 and 'name="encrypted"' in page.get_data(as_text=True)
    form = {
        "csrf_token": csrf_token(admin_client, "/admin/objects/contacts/fields/nickname/edit"),
        "label": "Nickname",
        "position": str(_field(nick_app).position),
        "encrypted": "on",
        "searchable": "on",
        "indexed": "on",
    }
    response = admin_client.post("/admin/objects/contacts/fields/nickname/edit", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    key_fields.wait_for_background(nick_app)
    assert _field(nick_app).encrypted
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 1


def test_a_server_start_resumes_an_unfinished_migration(nick_app, monkeypatch):
    made = _contacts(nick_app, 3)
    original = key_fields.start_background
    monkeypatch.setattr(key_fields, "start_background", lambda app=None: None)
    _change(nick_app, {"encrypted": True}, background=False)
    assert raw(nick_app, "nickname", next(iter(made))) == "zebracorn0"
    monkeypatch.setattr(key_fields, "start_background", original)
    assert key_fields.resume_at_start(nick_app) is True
    key_fields.wait_for_background(nick_app)
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 1
    assert key_fields.resume_at_start(nick_app) is False
