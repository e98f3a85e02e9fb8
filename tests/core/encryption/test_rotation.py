"""`bastion keys rotate | status | retire`: online, resumable, nothing lost or stranded."""

from __future__ import annotations

import json
import threading

import pyotp
from sqlalchemy import select, text

from bastion import mfa
from bastion.db import db
from bastion.keys.cipher import version_of
from bastion.keys.keyring import DATA, keyring
from bastion.keys.models import EncryptionKey
from bastion.keys.reencrypt import all_targets, reencrypt
from bastion.models import User
from tests.core.data.conftest import service_as
from tests.core.encryption.conftest import admin_id, create_contacts, raw, read_contact


def _enable_admin_mfa(app) -> str:
    secret = pyotp.random_base32()
    uid = admin_id(app)
    with app.app_context():
        db.session.execute(
            text("UPDATE users SET mfa_secret = :s WHERE id = :i"),
            {"s": mfa.encrypt_secret(uid, secret), "i": uid},
        )
        db.session.commit()
    return secret


def _versions(app) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(
            select(EncryptionKey.version, EncryptionKey.state).where(EncryptionKey.purpose == DATA)
        ).all()
        return dict(rows)


def _audited(app, action: str) -> list[dict]:
    with app.app_context():
        rows = db.session.execute(
            text("SELECT changes FROM audit_entries WHERE action = :a ORDER BY seq"), {"a": action}
        ).all()
    return [json.loads(r[0]) if r[0] else {} for r in rows]


def test_rotate_re_encrypts_every_value_and_credential(enc_app, cli):
    made = create_contacts(enc_app, 7)
    secret = _enable_admin_mfa(enc_app)

    status = cli("keys", "status")
    assert status.exit_code == 0, status.output
    assert "version 1: active" in status.output
    assert "contacts.pin: 7" in status.output and "users.mfa_secret: 1" in status.output

    result = cli("keys", "rotate", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "contacts.pin: 3 checked" in result.output  # progress per batch
    assert "Data key version 2 is active; 15 values re-encrypted" in result.output
    assert _versions(enc_app) == {1: "decrypt-only", 2: "active"}

    for record_id, (pin, badge) in made.items():
        assert version_of(raw(enc_app, "pin", record_id)) == 2
        assert version_of(raw(enc_app, "badge", record_id)) == 2
        values = read_contact(enc_app, record_id)
        assert (values["pin"], values["badge"]) == (pin, badge)
        assert values["version"] == 1  # the records' own versions did not move
    with enc_app.app_context():
        admin = db.session.get(User, admin_id(enc_app))
        assert version_of(admin.mfa_secret) == 2
        assert mfa.verify_totp(admin, pyotp.TOTP(secret).now()) == "accepted"

    status = cli("keys", "status")
    assert "version 1: decrypt-only" in status.output and "0 values" in status.output
    assert "version 2: active" in status.output and "contacts.badge: 7" in status.output
    # Key operations are audited with version numbers only.
    assert _audited(enc_app, "keys.rotate") == [{"from_version": 1, "to_version": 2}]


def test_retire_is_refused_while_a_value_uses_the_version(enc_app, cli):
    (record_id, _), *_ = create_contacts(enc_app, 2).items()
    refused = cli("keys", "retire", "1")
    assert refused.exit_code == 1
    assert "active one" in refused.output and "Traceback" not in refused.output

    # A new version, but the values are still on version 1 (no re-encryption yet).
    with enc_app.app_context():
        keyring().new_data_version()
    refused = cli("keys", "retire", "1")
    assert refused.exit_code == 1 and "still encrypts 4 values" in refused.output

    assert cli("keys", "rotate", "--resume").exit_code == 0
    retired = cli("keys", "retire", "1")
    assert retired.exit_code == 0, retired.output
    assert _versions(enc_app) == {1: "retired", 2: "active"}
    with enc_app.app_context():
        row = db.session.scalar(
            select(EncryptionKey).where(EncryptionKey.purpose == DATA, EncryptionKey.version == 1)
        )
        assert row.wrapped_key is None and row.retired_at is not None
    assert read_contact(enc_app, record_id)["pin"] == "C-pin-0"
    assert _audited(enc_app, "keys.retire") == [{"version": 1}]
    again = cli("keys", "retire", "1")
    assert again.exit_code == 1 and "already retired" in again.output
    missing = cli("keys", "retire", "9")
    assert missing.exit_code == 1 and "no data key version 9" in missing.output


def test_an_interrupted_rotation_resumes_without_a_new_version(enc_app, cli):
    made = create_contacts(enc_app, 6)
    with enc_app.app_context():
        version = keyring().new_data_version()
        pin_target = next(t for t in all_targets() if t.label == "contacts.pin")
        batches = reencrypt(pin_target, version, batch_size=2)
        next(batches)  # one batch done, then the process "dies"
        batches.close()
    on_new = [rid for rid in made if version_of(raw(enc_app, "pin", rid)) == 2]
    assert len(on_new) == 2
    # Reading works in the mixed state.
    for record_id, (pin, _) in made.items():
        assert read_contact(enc_app, record_id)["pin"] == pin

    resumed = cli("keys", "rotate", "--resume", "--batch-size", "4")
    assert resumed.exit_code == 0, resumed.output
    assert "Data key version 2 is active; 10 values re-encrypted" in resumed.output
    assert _versions(enc_app) == {1: "decrypt-only", 2: "active"}
    for record_id, (_pin, badge) in made.items():
        assert version_of(raw(enc_app, "pin", record_id)) == 2
        assert read_contact(enc_app, record_id)["badge"] == badge
    # Running it again changes nothing and loses nothing.
    again = cli("keys", "rotate", "--resume")
    assert "0 values re-encrypted" in again.output


def test_rotation_while_users_create_and_update_loses_nothing(enc_app, cli):
    made = create_contacts(enc_app, 30)
    expected = {rid: pin for rid, (pin, _) in made.items()}
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(index: int) -> None:
        try:
            n = 0
            while not stop.is_set() and n < 40:
                n += 1
                with service_as(enc_app, None) as records:
                    created = records.create(
                        "contacts", {"last_name": f"W{index}-{n}", "pin": f"w{index}-{n}"}
                    )
                    target = sorted(made)[(index * 7 + n) % len(made)]
                    current = records.get("contacts", target)
                    new_pin = f"edited-{index}-{n}"
                    records.update("contacts", target, {"pin": new_pin}, version=current.version)
                with lock:
                    expected[created.id] = f"w{index}-{n}"
                    expected[target] = new_pin
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    result = cli("keys", "rotate", "--batch-size", "5")
    stop.set()
    for thread in threads:
        thread.join()
    assert result.exit_code == 0, result.output
    assert not errors, errors
    # A last pass for writes that landed after the rotation's final pass began.
    assert cli("keys", "rotate", "--resume").exit_code == 0

    with service_as(enc_app, None) as records:
        for record_id, pin in expected.items():
            assert records.get("contacts", record_id).get("pin") == pin
    for record_id in expected:
        assert version_of(raw(enc_app, "pin", record_id)) == 2
    assert "0 values" in cli("keys", "status").output.split("version 2")[0]


def test_rotation_can_retire_what_it_emptied(enc_app, cli):
    create_contacts(enc_app, 3)
    assert cli("keys", "rotate").exit_code == 0
    result = cli("keys", "rotate", "--retire-unused")
    assert result.exit_code == 0, result.output
    assert "Retired versions: 1, 2." in result.output
    assert _versions(enc_app) == {1: "retired", 2: "retired", 3: "active"}


def test_bad_arguments_are_one_line_refusals(enc_app, cli):
    bad = cli("keys", "rotate", "--batch-size", "0")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert cli("keys", "retire", "abc").exit_code == 2
