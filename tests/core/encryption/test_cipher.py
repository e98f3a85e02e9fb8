"""The one cipher service: versioned ciphertexts bound to their context; old v1 values read."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from bastion.data.errors import Undecryptable
from bastion.db import db
from bastion.encryption import CredentialCipher
from bastion.keys.cipher import EnvelopeCipher, version_of
from bastion.keys.keyring import DATA, keyring
from bastion.keys.models import EncryptionKey
from tests.conftest import ADMIN_EMAIL
from tests.core.data.conftest import bearer
from tests.core.encryption.conftest import create_contacts, raw, read_contact, set_raw


def test_values_are_stored_only_as_versioned_ciphertext(enc_app):
    made = create_contacts(enc_app, 2)
    for record_id, (pin, badge) in made.items():
        stored = raw(enc_app, "pin", record_id)
        assert stored.startswith("v1:") and pin not in stored
        assert raw(enc_app, "badge", record_id).startswith("v1:")
        assert read_contact(enc_app, record_id)["pin"] == pin
        assert read_contact(enc_app, record_id)["badge"] == badge


def test_a_ciphertext_moved_to_another_record_or_field_fails(enc_app):
    (first, _), (second, _) = create_contacts(enc_app, 2).items()
    set_raw(enc_app, "pin", second, raw(enc_app, "pin", first))
    with pytest.raises(Undecryptable):
        read_contact(enc_app, second)
    set_raw(enc_app, "pin", second, None)
    set_raw(enc_app, "badge", first, raw(enc_app, "pin", first))
    with pytest.raises(Undecryptable):
        read_contact(enc_app, first)


def test_a_tampered_ciphertext_fails_and_never_yields_data(enc_app):
    (record_id, _), *_ = create_contacts(enc_app, 1).items()
    stored = raw(enc_app, "pin", record_id)
    body = bytearray(base64.urlsafe_b64decode(stored[3:]))
    body[-1] ^= 1
    set_raw(enc_app, "pin", record_id, "v1:" + base64.urlsafe_b64encode(bytes(body)).decode())
    with pytest.raises(Undecryptable):
        read_contact(enc_app, record_id)
    for bad in ("v1:", "v9:" + stored[3:], "plain text", "v1:!!!"):
        set_raw(enc_app, "pin", record_id, bad)
        with pytest.raises(Undecryptable):
            read_contact(enc_app, record_id)


def test_values_written_before_the_keyring_still_read(enc_app, settings):
    """The credentials key of an older installation became data key version 1."""
    (record_id, _), *_ = create_contacts(enc_app, 1).items()
    old_dir = settings.data_dir / "old-secrets"
    old_dir.mkdir()
    with enc_app.app_context():
        (old_dir / "credentials.key").write_text(keyring().key(DATA, 1).hex())
    legacy = CredentialCipher(old_dir)
    set_raw(
        enc_app,
        "pin",
        record_id,
        legacy.encrypt("from-before", context=f"contacts.pin:{record_id}"),
    )
    assert read_contact(enc_app, record_id)["pin"] == "from-before"
    with enc_app.app_context():
        assert legacy.decrypt(
            EnvelopeCipher().encrypt("both ways", context="x", version=1), context="x"
        ) == ("both ways")


def test_the_database_holds_only_wrapped_keys(enc_app, settings):
    with enc_app.app_context():
        rows = db.session.scalars(select(EncryptionKey)).all()
        assert {(r.purpose, r.version, r.state) for r in rows} == {
            ("data", 1, "active"),
            ("blind_index", 1, "active"),
        }
        # Version 1 is random and exists only wrapped: no key file holds it.
        assert not (settings.secrets_dir / "credentials.key").exists()
        for row in rows:
            key = keyring().key(row.purpose, row.version)
            assert key not in row.wrapped_key
            assert row.master_key_id == keyring().master.key_id


def test_records_api_reads_and_writes_encrypted_fields(enc_app):
    headers = bearer(enc_app, ADMIN_EMAIL)
    client = enc_app.test_client()
    created = client.post(
        "/api/v1/contacts", json={"last_name": "Api", "pin": "api-pin", "badge": 7}, headers=headers
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    record_id = created.get_json()["id"]
    assert version_of(raw(enc_app, "pin", record_id)) == 1
    fetched = client.get(f"/api/v1/contacts/{record_id}", headers=headers).get_json()
    assert fetched["pin"] == "api-pin" and fetched["badge"] == 7
