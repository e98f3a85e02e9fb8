"""deploy/backup.sh: a consistent database copy plus the secrets, readable by its owner only."""

from __future__ import annotations

import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import BACKEND
from tests.core.conftest import run_init

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backup(cli, bastion_env, data_dir, tmp_path):
    assert run_init(cli).exit_code == 0
    out = tmp_path / "backups"

    def run() -> Path:
        result = subprocess.run(
            [
                "bash",
                str(ROOT / "deploy" / "backup.sh"),
                "-d",
                str(data_dir),
                "-o",
                str(out),
                "-e",
                str(tmp_path / "no-env-file"),
                "-p",
                sys.executable,
            ],
            env={**bastion_env, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        (archive,) = out.glob("bastion-backup-*.tar.gz")
        return archive

    return run


def test_backup_archive_holds_database_and_secrets_for_the_owner_only(backup, data_dir, tmp_path):
    if BACKEND == "postgresql" and not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    archive = backup()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    checksum = archive.with_name(archive.name + ".sha256").read_text()
    assert checksum.split()[1] == archive.name

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "restored", filter="data")
    (folder,) = (tmp_path / "restored").iterdir()
    manifest = (folder / "MANIFEST").read_text()
    assert f"database_backend={BACKEND}" in manifest
    key = folder / "data" / "secrets" / "session.key"
    assert key.read_text() == (data_dir / "secrets" / "session.key").read_text()
    assert not (folder / "data" / "bastion.db").exists()  # the live file is never copied

    if BACKEND == "sqlite":
        with sqlite3.connect(folder / "database.sqlite3") as copy:
            emails = [row[0] for row in copy.execute("SELECT email FROM users")]
        assert emails == ["admin@example.com"]
    else:
        listing = subprocess.run(
            ["pg_restore", "--list", str(folder / "database.pgdump")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"TABLE \S+ users \S+$", listing, re.MULTILINE), listing
