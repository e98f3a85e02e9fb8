"""Key operations racing writers and each other: nothing erased that a value needs."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from bastion.db import db
from bastion.keys import rotation
from bastion.keys.cipher import EnvelopeCipher, version_of
from bastion.keys.keyring import DATA, KeyringError, keyring
from bastion.keys.locks import hold_writer_lock, rotation_lock
from bastion.keys.models import EncryptionJob, EncryptionKey
from tests.core.encryption.conftest import create_contacts, raw, read_contact


def _run(app, work, outcome: dict) -> threading.Thread:
    def target() -> None:
        with app.app_context():
            try:
                outcome["value"] = work()
            except Exception as exc:  # the test looks at it
                outcome["error"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_retire_waits_for_a_writer_that_encrypted_under_the_old_version(enc_app):
    """A writer read version 1 before the rotation and commits after it: retiring must
    see its value, not erase the key under it."""
    (record_id, _), *_ = create_contacts(enc_app, 1).items()
    with enc_app.app_context():
        rotation.rotate()
    assert version_of(raw(enc_app, "pin", record_id)) == 2

    encrypted = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        hold_writer_lock()
        token = EnvelopeCipher().encrypt(
            "late", context=f"contacts.pin:{record_id}", version=1
        )  # as if version 1 had been read just before the rotation committed
        db.session.execute(
            text("UPDATE obj_contacts SET pin = :v WHERE id = :id"), {"v": token, "id": record_id}
        )
        encrypted.set()
        release.wait(10)
        db.session.commit()

    writer_outcome: dict = {}
    writer = _run(enc_app, slow_writer, writer_outcome)
    assert encrypted.wait(10)
    retire_outcome: dict = {}
    retirer = _run(enc_app, lambda: rotation.retire(1), retire_outcome)
    time.sleep(0.5)
    assert retirer.is_alive(), "retire did not wait for the uncommitted writer"
    release.set()
    writer.join(10)
    retirer.join(20)
    assert "error" not in writer_outcome
    error = retire_outcome.get("error")
    assert isinstance(error, KeyringError) and "still encrypts 1 values" in str(error)
    assert read_contact(enc_app, record_id)["pin"] == "late"


def test_a_writer_holds_the_lock_once_per_transaction(enc_app):
    with enc_app.app_context():
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        from sqlalchemy import event

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            cipher = EnvelopeCipher()
            cipher.encrypt("a", context="x")
            cipher.encrypt("b", context="y")
            locks = [s for s in statements if "advisory" in s or "BEGIN IMMEDIATE" in s]
            assert len(locks) == (1 if db.engine.dialect.name in {"postgresql", "sqlite"} else 0)
            db.session.commit()
            cipher.encrypt("c", context="z")  # a new transaction takes it again
            locks = [s for s in statements if "advisory" in s or "BEGIN IMMEDIATE" in s]
            assert len(locks) == 2
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
            db.session.rollback()


def test_a_second_rotation_at_the_same_time_is_refused(enc_app, cli):
    create_contacts(enc_app, 2)
    with enc_app.app_context():
        with rotation_lock():  # another process is rotating
            with pytest.raises(KeyringError, match="Another rotation is running"):
                rotation.rotate()
            refused = cli("keys", "rotate")
            assert refused.exit_code == 1 and "Another rotation is running" in refused.output
            assert "Traceback" not in refused.output
        versions = db.session.scalars(
            select(EncryptionKey.version).where(EncryptionKey.purpose == DATA)
        ).all()
        assert versions == [1]
        # Once it ended, rotating works.
        assert rotation.rotate().version == 2


def test_a_rotation_marks_only_its_own_job_and_resume_commits_its_job(enc_app):
    create_contacts(enc_app, 2)
    with enc_app.app_context():
        keyring().new_data_version()  # an interrupted rotation with no job row
        result = rotation.rotate(resume=True)
        assert result.version == 2
        db.session.rollback()
        jobs = db.session.execute(
            select(EncryptionJob.target_version, EncryptionJob.state).where(
                EncryptionJob.kind == "rotate"
            )
        ).all()
        assert jobs == [(2, "done")]


def test_a_racing_new_version_is_a_clear_refusal(enc_app, monkeypatch):
    with enc_app.app_context():
        ring = keyring()
        original = ring._new_row
        # Another process made version 2 first; this one computed 2 as well.
        with db.engine.begin() as connection:
            from sqlalchemy.orm import Session

            other = Session(bind=connection)
            other.add(original(DATA, 2, b"\0" * 32))
            other.execute(
                text("UPDATE encryption_keys SET state = 'decrypt-only' WHERE version = 1")
            )
            other.flush()
        monkeypatch.setattr(ring, "_new_row", lambda purpose, version, key: original(DATA, 2, key))
        with pytest.raises(KeyringError, match="at the same time"):
            ring.new_data_version()
