"""`bastion backup`, `backup verify` and `restore` through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bastion.audit.models import AuditEntry
from bastion.backup.archive import read_archive
from bastion.backup.keysource import MasterKeySource
from bastion.backup.manifest import Manifest
from bastion.db import db
from bastion.keys.master import load_master_key
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, dispose, sign_in
from tests.core.backup.conftest import (
    CANARY,
    MFA_EMAIL,
    current_code,
    restore_args,
    restored_app,
)
from tests.core.data.conftest import bearer


def said(result) -> list[str]:
    """What the command printed, without the JSON log lines that share the output."""
    return [line for line in result.output.splitlines() if not line.startswith('{"time"')]


def _api_records(app, object_name: str) -> list[dict]:
    client = app.test_client()
    headers = bearer(app, ADMIN_EMAIL)
    response = client.get(f"/api/v1/{object_name}?limit=200&sort=id", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    rows = body["data"] if isinstance(body, dict) else body
    return [{k: v for k, v in row.items() if k != "_links"} for row in rows]


def _actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_a_backup_restores_to_an_identical_system(source, run, tmp_path, target_url):
    # A signed checkpoint in the audit folder: it travels, and the restored chain matches it.
    assert run("audit", "checkpoint").exit_code == 0
    archive = tmp_path / "nightly.bbak"
    made = run("backup", "--to", str(archive))
    assert made.exit_code == 0, made.output
    assert f"Wrote {archive}" in made.output
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "backup.create" in _actions(source.app)
    # Encrypted field values are ciphertext in the database, and the archive is encrypted.
    assert CANARY.encode() not in archive.read_bytes()

    checked = run("backup", "verify", str(archive))
    assert checked.exit_code == 0, checked.output
    assert said(checked)[-1].startswith("OK ")
    assert "backup.verify" in _actions(source.app)

    before = {name: _api_records(source.app, name) for name in ("accounts", "contacts")}
    target = tmp_path / "restored"
    restored = run(*restore_args(archive, target, source.data_dir, target_url))
    assert restored.exit_code == 0, restored.output
    assert "Audit chain: OK" in restored.output
    assert said(restored)[-1] == "OK"
    assert "MISMATCH" not in restored.output

    app = restored_app(target, target_url)
    try:
        # Same records, same values through the API, encrypted ones included.
        after = {name: _api_records(app, name) for name in ("accounts", "contacts")}
        assert after == before
        pins = {row["id"]: row.get("pin") for row in after["contacts"] if row.get("pin")}
        assert pins == source.pins
        # The search index was rebuilt from the restored records.
        found = app.test_client().get(
            "/api/v1/search", query_string={"q": "Northwind"}, headers=bearer(app, ADMIN_EMAIL)
        )
        assert found.status_code == 200, found.get_data(as_text=True)
        assert any(hit["object"] == "accounts" for hit in found.get_json()["data"])
        # Sign-in works, with the second factor of a user who had MFA on.
        client = app.test_client()
        assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 302
        mfa_client = app.test_client()
        response = sign_in(mfa_client, MFA_EMAIL, ADMIN_PASSWORD)
        assert response.headers["Location"] == "/login/code"
        from tests.conftest import csrf_token

        token = csrf_token(mfa_client, "/login/code")
        done = mfa_client.post(
            "/login/code", data={"code": current_code(source.mfa_secret), "csrf_token": token}
        )
        assert done.status_code == 302 and done.headers["Location"] != "/login/code"
        # The restore is in the restored chain (the API tokens and sign-ins follow it).
        actions = _actions(app)
        assert actions.count("backup.restore") == 1
        assert "backup.create" not in actions  # written after the snapshot, in the source
    finally:
        dispose(app)
    assert (target / "audit" / "checkpoints.jsonl").read_text() == (
        source.data_dir / "audit" / "checkpoints.jsonl"
    ).read_text()
    verified = run("--data-dir", str(target), "audit", "verify", env=_target_env(target_url))
    assert verified.exit_code == 0, verified.output
    assert said(verified)[-1].startswith("OK ")
    # Secret files are made anew (session key) or copied from what was given (master key).
    assert stat.S_IMODE((target / "secrets" / "master.key").stat().st_mode) == 0o600
    assert (target / "secrets" / "session.key").read_text() != (
        source.data_dir / "secrets" / "session.key"
    ).read_text()


def _target_env(url: str | None) -> dict[str, str]:
    # The source's BASTION_DATA_DIR / DATABASE_URL must not leak into the restored system.
    return {"BASTION_DATA_DIR": "", "BASTION_DATABASE_URL": url or ""}


def test_the_archive_holds_no_secret_files_and_a_complete_manifest(source, run, tmp_path):
    archive = tmp_path / "b.bbak"
    assert run("backup", "--to", str(archive)).exit_code == 0
    extracted = tmp_path / "x"
    with source.app.app_context():
        keys = MasterKeySource(load_master_key(source.app.extensions["bastion"].settings))
    result = read_archive(archive, keys, lambda name: extracted / name)
    manifest: Manifest = result.manifest
    names = {member.name for member in manifest.members}
    assert manifest.database_member in names and "definitions.json" in names
    assert not any(name.startswith("secrets/") or "key" in name.split("/")[-1] for name in names)
    secrets_dir = source.data_dir / "secrets"
    secret_values = [p.read_text().strip().encode() for p in secrets_dir.iterdir() if p.is_file()]
    for path in extracted.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert CANARY.encode() not in content, path
            assert not any(value in content for value in secret_values), path
    with source.app.app_context():
        contacts = db.session.scalar(select(func.count()).select_from(db.table("obj_contacts")))
        head = db.session.scalar(select(func.max(AuditEntry.seq)))
    assert manifest.record_counts["contacts"] == contacts
    assert manifest.audit_head["seq"] <= head
    assert manifest.schema_revision and manifest.database_kind in {"sqlite", "postgresql"}
    definitions = (extracted / "definitions.json").read_text()
    assert '"name": "pin"' in definitions and '"encrypted": true' in definitions


def test_a_passphrase_archive_opens_only_with_the_passphrase(
    source, run, tmp_path, passphrase_file, target_url
):
    archive = tmp_path / "offsite.bbak"
    made = run("backup", "--to", str(archive), "--passphrase-file", str(passphrase_file))
    assert made.exit_code == 0, made.output
    assert "passphrase" in made.output

    ok = run("backup", "verify", str(archive), "--passphrase-file", str(passphrase_file))
    assert ok.exit_code == 0 and said(ok)[-1].startswith("OK "), ok.output
    without = run("backup", "verify", str(archive))
    assert without.exit_code != 0
    assert "protected by a passphrase" in without.output
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase at all\n")
    refused = run("backup", "verify", str(archive), "--passphrase-file", str(wrong))
    assert refused.exit_code != 0
    assert "does not open with the passphrase" in refused.output

    # Off-site, the master key comes from the environment rather than a key file.
    target = tmp_path / "from-offsite"
    args = restore_args(archive, target, source.data_dir, target_url)
    key_file = args.pop(args.index("--master-key-file") + 1)
    args.remove("--master-key-file")
    master_hex = Path(key_file).read_text().strip()
    restored = run(
        *args,
        "--passphrase-file",
        str(passphrase_file),
        env={"BASTION_MASTER_KEY": master_hex},
    )
    assert restored.exit_code == 0, restored.output
    assert "Audit chain: OK" in restored.output
    assert not (target / "secrets" / "master.key").exists()

    missing = run(*restore_args(archive, tmp_path / "no-key", source.data_dir, target_url)[:4])
    assert missing.exit_code != 0
    assert "needs the installation's master key" in missing.output
    assert not (tmp_path / "no-key").exists()


def test_verify_names_a_flipped_byte_a_truncation_and_a_wrong_master_key(source, run, tmp_path):
    archive = tmp_path / "b.bbak"
    assert run("backup", "--to", str(archive)).exit_code == 0
    data = archive.read_bytes()

    flipped = tmp_path / "flipped.bbak"
    middle = len(data) // 2
    flipped.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    result = run("backup", "verify", str(flipped))
    assert result.exit_code != 0
    assert "fails authentication" in result.output

    truncated = tmp_path / "truncated.bbak"
    truncated.write_bytes(data[:-100])
    result = run("backup", "verify", str(truncated))
    assert result.exit_code != 0
    assert "fails authentication" in result.output or "truncated" in result.output

    appended = tmp_path / "appended.bbak"
    appended.write_bytes(data + b"more")
    assert run("backup", "verify", str(appended)).exit_code != 0

    other_key = tmp_path / "other.key"
    other_key.write_text("ab" * 32 + "\n")
    other_key.chmod(0o600)
    result = run("backup", "verify", str(archive), "--master-key-file", str(other_key))
    assert result.exit_code != 0
    assert "master key" in result.output and "original master key" in result.output

    header_edit = tmp_path / "header.bbak"
    header_edit.write_bytes(data.replace(b'"chunk_size":1048576', b'"chunk_size":1048575', 1))
    result = run("backup", "verify", str(header_edit))
    assert result.exit_code != 0
    assert "header was altered" in result.output

    assert run("backup", "verify", str(tmp_path / "other.key")).exit_code != 0
    with source.app.app_context():
        outcomes = list(
            db.session.scalars(
                select(AuditEntry.outcome).where(AuditEntry.action == "backup.verify")
            )
        )
    assert outcomes and set(outcomes) == {"failure"}


def test_restore_refuses_a_non_empty_folder_and_a_bad_archive_creating_nothing(
    source, run, tmp_path, target_url
):
    archive = tmp_path / "b.bbak"
    assert run("backup", "--to", str(archive)).exit_code == 0

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = run(*restore_args(archive, occupied, source.data_dir, target_url))
    assert result.exit_code != 0
    assert "is not empty" in result.output
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]

    damaged = tmp_path / "damaged.bbak"
    data = archive.read_bytes()
    damaged.write_bytes(data[: len(data) - 40])
    target = tmp_path / "fresh"
    result = run(*restore_args(damaged, target, source.data_dir, target_url))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert not target.exists()
    assert not list(tmp_path.glob(".bastion-restore-*"))
    if target_url:
        import psycopg

        plain = target_url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as conn:
            count = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'restored'"
            ).fetchone()[0]
        assert count == 0


def test_restore_refuses_a_master_key_that_is_not_the_archives(source, run, tmp_path, target_url):
    archive = tmp_path / "b.bbak"
    assert run("backup", "--to", str(archive)).exit_code == 0
    other_key = tmp_path / "other.key"
    other_key.write_text("cd" * 32 + "\n")
    other_key.chmod(0o600)
    target = tmp_path / "fresh"
    args = restore_args(archive, target, source.data_dir, target_url)
    args[args.index("--master-key-file") + 1] = str(other_key)
    result = run(*args)
    assert result.exit_code != 0
    assert "original master key" in result.output
    assert not target.exists()


def test_backup_of_an_uninitialized_folder_and_to_an_existing_file_is_refused(
    source, run, tmp_path
):
    existing = tmp_path / "taken.bbak"
    existing.write_text("keep me")
    result = run("backup", "--to", str(existing))
    assert result.exit_code != 0 and "already exists" in result.output
    assert existing.read_text() == "keep me"
    with source.app.app_context():
        refused = db.session.execute(
            select(AuditEntry.outcome, AuditEntry.changes).where(
                AuditEntry.action == "backup.create"
            )
        ).one()
    assert refused.outcome == "failure" and "already exists" in refused.changes
    result = run("--data-dir", str(tmp_path / "nothing"), "backup")
    assert result.exit_code != 0 and "not initialized" in result.output


def test_default_backup_path_is_in_the_data_directory(source, run):
    first = run("backup")
    second = run("backup")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    made = sorted((source.data_dir / "backups").glob("bastion-*.bbak"))
    assert len(made) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in made)
    assert stat.S_IMODE((source.data_dir / "backups").stat().st_mode) == 0o700


def test_settings_travel_and_point_at_the_restored_database(source, run, tmp_path, target_url):
    config = source.data_dir / "bastion.toml"
    old_url = "postgresql+psycopg://old-host/bastion" if target_url else None
    lines = ['phone_region = "DE"']
    if old_url:
        lines.insert(0, f'database_url = "{old_url}"')
    config.write_text("\n".join(lines) + '\n[plugin_settings]\ndatabase_url = "kept"\n')
    config.chmod(0o600)
    archive = tmp_path / "b.bbak"
    made = run("backup", "--to", str(archive))
    assert made.exit_code == 0, made.output
    target = tmp_path / "restored"
    restored = run(*restore_args(archive, target, source.data_dir, target_url))
    assert restored.exit_code == 0, restored.output
    written = (target / "bastion.toml").read_text()
    assert 'phone_region = "DE"' in written
    assert 'database_url = "kept"' in written  # a plugin's table keeps its own keys
    assert "old-host" not in written
    if target_url:
        assert f'database_url = "{target_url}"' in written
    assert stat.S_IMODE((target / "bastion.toml").stat().st_mode) == 0o600


def test_a_missing_pg_dump_is_named(source, run, tmp_path, monkeypatch):
    if source.app.extensions["bastion"].settings.is_sqlite:
        pytest.skip("SQLite backups need no external program")
    monkeypatch.setattr("bastion.backup.snapshot.shutil.which", lambda _name: None)
    result = run("backup", "--to", str(tmp_path / "b.bbak"))
    assert result.exit_code != 0
    assert "pg_dump is not installed" in result.output
    assert not (tmp_path / "b.bbak").exists()
    assert not list(tmp_path.glob(".bastion-backup-*"))


def test_archived_audit_entries_travel_with_the_backup(source, run, tmp_path, target_url):
    archived = run("audit", "archive", "--before", "2999-01-01")
    assert archived.exit_code == 0, archived.output
    files = list((source.data_dir / "audit" / "archives").iterdir())
    assert files
    archive = tmp_path / "b.bbak"
    assert run("backup", "--to", str(archive)).exit_code == 0
    target = tmp_path / "restored"
    restored = run(*restore_args(archive, target, source.data_dir, target_url))
    assert restored.exit_code == 0, restored.output
    for original in files:
        copy = target / "audit" / "archives" / original.name
        assert copy.read_bytes() == original.read_bytes()
        checked = run(
            "--data-dir",
            str(target),
            "audit",
            "verify",
            "--archive",
            str(copy),
            env=_target_env(target_url),
        )
        assert checked.exit_code == 0, checked.output
    verified = run("--data-dir", str(target), "audit", "verify", env=_target_env(target_url))
    assert verified.exit_code == 0, verified.output
