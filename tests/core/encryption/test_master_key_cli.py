"""The master key through the CLI: created by init, from the environment, checked, refused."""

from __future__ import annotations

import os
import secrets
import stat

from bastion.keys.master import ENV_VARIABLE
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.core.conftest import run_init


def _key_file(data_dir):
    return data_dir / "secrets" / "master.key"


def test_init_creates_a_0600_master_key_that_check_confirms(cli, data_dir):
    assert run_init(cli).exit_code == 0
    path = _key_file(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    checked = cli("check")
    assert checked.exit_code == 0, checked.output
    assert "ok: the master key unwraps the data keys" in checked.output
    assert path.read_text().strip() not in checked.output


def test_a_master_key_from_the_environment_needs_no_file(cli, data_dir):
    key = {ENV_VARIABLE: secrets.token_hex(32)}
    result = cli(
        "init",
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password-file",
        "-",
        input=ADMIN_PASSWORD,
        env=key,
    )
    assert result.exit_code == 0, result.output
    assert not _key_file(data_dir).exists()
    assert cli("keys", "status", env=key).exit_code == 0
    assert "warning" not in cli("check", env=key).output
    missing = cli("keys", "status")
    assert missing.exit_code == 1
    assert "does not exist" in missing.output and ENV_VARIABLE in missing.output
    assert "Traceback" not in missing.output
    malformed = cli("keys", "status", env={ENV_VARIABLE: "not-hex"})
    assert malformed.exit_code == 1 and "64 hexadecimal characters" in malformed.output


def test_a_wrong_master_key_is_a_clear_error(cli, data_dir):
    assert run_init(cli).exit_code == 0
    path = _key_file(data_dir)
    path.write_text(secrets.token_hex(32) + "\n")
    result = cli("keys", "status")
    assert result.exit_code == 1
    assert "not the master key this database was set up with" in result.output
    assert "Traceback" not in result.output
    checked = cli("check")
    assert checked.exit_code == 1
    assert "problem: The master key from the file" in checked.output


def test_a_master_key_others_can_read_is_refused_and_reported(cli, data_dir):
    assert run_init(cli).exit_code == 0
    path = _key_file(data_dir)
    os.chmod(path, 0o644)
    refused = cli("keys", "status")
    assert refused.exit_code == 1 and f"chmod 600 {path}" in refused.output
    checked = cli("check")
    assert checked.exit_code == 1 and f"chmod 600 {path}" in checked.output


def test_check_reports_a_missing_master_key(cli, data_dir):
    assert run_init(cli).exit_code == 0
    _key_file(data_dir).unlink()
    checked = cli("check")
    assert checked.exit_code == 1
    assert "master key file" in checked.output and "does not exist" in checked.output
