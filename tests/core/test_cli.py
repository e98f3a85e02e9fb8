"""`bastion check`, `plugins`, `upgrade` and the commands plugins add."""

from __future__ import annotations

import json

import pytest

from bastion import schema
from tests.conftest import sign_in
from tests.core.conftest import UNREACHABLE_DATABASE, run_init


@pytest.fixture
def installed(cli, data_dir):
    result = run_init(cli)
    assert result.exit_code == 0, result.output
    return data_dir


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


def test_check_passes_on_a_good_installation(cli, installed):
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert problems(result.output) == []
    assert "ok: secret files are readable only by their owner" in result.output
    assert "ok: database reachable" in result.output
    assert f"ok: schema at revision {_head()}" in result.output


def test_check_reports_a_session_key_others_can_read(cli, installed):
    key = installed / "secrets" / "session.key"
    key.chmod(0o644)
    result = cli("check")
    assert result.exit_code == 1
    assert problems(result.output) == [
        f"problem: The secret file {key} has mode 644, so other users can read it; "
        f"run `chmod 600 {key}`."
    ]


def test_check_reports_an_open_secrets_folder_and_key_one_sentence_each(cli, installed):
    folder = installed / "secrets"
    (folder / "session.key").chmod(0o640)
    folder.chmod(0o755)
    try:
        result = cli("check")
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 1
    found = problems(result.output)
    assert len(found) == 2
    assert any(f"run `chmod 700 {folder}`" in line for line in found)
    assert any("run `chmod 600" in line for line in found)


def test_check_reports_an_unreachable_database(cli, bastion_env, installed):
    bastion_env["BASTION_DATABASE_URL"] = UNREACHABLE_DATABASE
    result = cli("check")
    assert result.exit_code == 1
    assert problems(result.output) == [
        "problem: The database is not reachable (OperationalError); check "
        "BASTION_DATABASE_URL and that the server is running."
    ]
    assert "nobody" not in result.output


def test_check_reports_an_uninitialized_directory(cli, data_dir):
    result = cli("check")
    assert result.exit_code == 1
    assert f"problem: {data_dir} is not initialized; run `bastion init`." in result.output


def test_commands_that_need_an_installation_refuse_without_one(cli, data_dir):
    for args in (("plugins", "list"), ("upgrade",)):
        result = cli(*args)
        assert result.exit_code == 1
        assert f"{data_dir} is not initialized; run `bastion init` first." in result.output


def test_plugins_list_disable_and_enable(cli, installed, settings, app_for):
    listed = cli("plugins", "list")
    assert listed.exit_code == 0, listed.output
    assert _status_line(listed.output).split()[:2] == ["status", "enabled"]

    disabled = cli("plugins", "disable", "status")
    assert disabled.exit_code == 0, disabled.output
    assert "Disabled: status." in disabled.output
    assert _status_line(cli("plugins", "list").output).split()[:2] == ["status", "disabled"]
    assert "Already disabled: status." in cli("plugins", "disable", "status").output

    # A running server sees the change on its next request: the routes are gone.
    client = app_for(settings).test_client()
    sign_in(client)
    assert client.get("/status/").status_code == 404

    enabled = cli("plugins", "enable", "status")
    assert enabled.exit_code == 0, enabled.output
    assert "Enabled: status." in enabled.output
    assert _status_line(cli("plugins", "list").output).split()[:2] == ["status", "enabled"]
    assert client.get("/status/").status_code == 200


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_unknown_plugin_names_are_refused(cli, installed, action):
    result = cli("plugins", action, "status", "nosuchplugin")
    assert result.exit_code == 1
    assert "No plugin named nosuchplugin is installed. Installed plugins: " in result.output
    assert "status" in result.output.split("Installed plugins: ", 1)[1]
    # Refused as a whole: the known name in the same command did not change either.
    assert _status_line(cli("plugins", "list").output).split()[:2] == ["status", "enabled"]


def test_plugins_enable_needs_a_name(cli, installed):
    result = cli("plugins", "enable")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_upgrade_is_idempotent(cli, installed, settings, app_for):
    head = _head()
    for _ in range(2):
        result = cli("upgrade")
        assert result.exit_code == 0, result.output
        assert f"Schema: {head} -> {head}." in result.output
        assert "Enabled new plugins" not in result.output
    client = app_for(settings).test_client()
    assert sign_in(client).status_code == 302  # the data survived
    assert cli("check").exit_code == 0


def test_upgrade_keeps_an_administrators_choice(cli, installed):
    assert cli("plugins", "disable", "status").exit_code == 0
    assert cli("upgrade").exit_code == 0
    # A known plugin that was switched off is not switched back on by an upgrade.
    assert _status_line(cli("plugins", "list").output).split()[:2] == ["status", "disabled"]


def test_plugin_commands_appear_while_the_plugin_is_enabled(cli, installed):
    assert _lists_command(cli("--help").output, "status")
    result = cli("status", "--json")
    report = json.loads(result.stdout)
    assert report["database_reachable"] is True
    assert report["schema_current"] is True
    assert report["plugins_enabled"] >= 1
    # The command's contract: exit 0 when healthy, 1 otherwise.
    assert result.exit_code == (0 if report["healthy"] else 1)

    assert cli("plugins", "disable", "status").exit_code == 0
    gone = cli("status", "--json")
    assert gone.exit_code == 2
    assert "No such command 'status'" in gone.output
    assert not _lists_command(cli("--help").output, "status")


def _lists_command(help_text: str, name: str) -> bool:
    commands = help_text.split("Commands:", 1)[1]
    return any(line.split()[:1] == [name] for line in commands.splitlines())


def _status_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("status ")]
    assert len(lines) == 1, output
    return lines[0]


def _head() -> str:
    return schema.head_revision()
