"""Smaller hardening: reserved context names, busy databases, the key file's creation."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest
from sqlalchemy.exc import OperationalError

from bastion.data import definitions
from bastion.data.definitions import DefinitionError
from bastion.keys import master, rotation
from tests.core.encryption.conftest import create_contacts


def test_no_object_can_be_named_like_mfa_contexts(app):
    with app.test_request_context(), pytest.raises(DefinitionError, match="reserved"):
        definitions.create_object(
            {"name": "mfa", "label": "Mfa", "fields": [{"name": "pending", "label": "P"}]}
        )


def test_a_locked_database_is_a_one_line_refusal(enc_app, cli, monkeypatch):
    create_contacts(enc_app, 1)

    def locked(version: int) -> None:
        raise OperationalError("UPDATE ...", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(rotation, "retire", locked)
    result = cli("keys", "retire", "1")
    assert result.exit_code == 1
    assert "The database is busy" in result.output
    assert "Traceback" not in result.output and "UPDATE" not in result.output


def test_the_key_file_is_created_once_and_never_replaced(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "master.key"
    assert master.create_key_file(path) is True
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert master.create_key_file(path) is False
    assert path.read_text() == first

    # Another process creates the file between our check and our link: theirs is kept.
    other = tmp_path / "race" / "master.key"
    other.parent.mkdir(mode=0o700)
    real_link = os.link

    def racing_link(src, dst, *args, **kwargs):
        other.write_text("theirs\n")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(master.os, "link", racing_link)
    assert master.create_key_file(other) is False
    assert other.read_text() == "theirs\n"
    assert sorted(p.name for p in other.parent.iterdir()) == ["master.key"]  # no temp left


def test_retiring_version_1_removes_a_leftover_credentials_key(enc_app, cli, settings):
    from bastion.keys.keyring import DATA, keyring

    create_contacts(enc_app, 1)
    leftover = settings.secrets_dir / "credentials.key"
    with enc_app.app_context():
        leftover.write_text(keyring().key(DATA, 1).hex() + "\n")
    assert cli("keys", "rotate").exit_code == 0
    assert leftover.exists()  # version 1 is still decrypt-only
    retired = cli("keys", "retire", "1")
    assert retired.exit_code == 0, retired.output
    assert not leftover.exists()
