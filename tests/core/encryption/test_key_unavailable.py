"""A missing or wrong master key: `serve` refuses to start, requests get a clear 503."""

from __future__ import annotations

import secrets

from bastion.keys.keyring import Keyring
from bastion.keys.master import LocalMasterKey
from tests.conftest import ADMIN_EMAIL, sign_in
from tests.core.conftest import run_init
from tests.core.data.conftest import bearer
from tests.core.encryption.conftest import create_contacts


def test_serve_refuses_a_wrong_master_key_in_one_line(cli, data_dir):
    assert run_init(cli).exit_code == 0
    (data_dir / "secrets" / "master.key").write_text(secrets.token_hex(32) + "\n")
    result = cli("serve", "--port", "1")
    assert result.exit_code == 1
    assert "Not serving: The master key from the file" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def _wrong_master_key(app) -> None:
    # As if the process had started with another key: nothing unwrapped is cached.
    wrong = LocalMasterKey(secrets.token_bytes(32), source="a test")
    app.extensions["bastion.keyring"] = Keyring(wrong)


def test_requests_needing_a_key_get_a_503_not_a_500(enc_app):
    (record_id, _), *_ = create_contacts(enc_app, 1).items()
    headers = bearer(enc_app, ADMIN_EMAIL)
    _wrong_master_key(enc_app)
    client = enc_app.test_client()

    api = client.get(f"/api/v1/contacts/{record_id}", headers=headers)
    assert api.status_code == 503
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["title"] == "Encryption keys unavailable"
    created = client.post("/api/v1/contacts", json={"last_name": "X", "pin": "1"}, headers=headers)
    assert created.status_code == 503

    assert sign_in(client).status_code == 302
    page = client.get(f"/o/contacts/{record_id}")
    assert page.status_code == 503
    assert "bastion check" in page.get_data(as_text=True)
