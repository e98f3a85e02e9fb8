"""Settings: defaults, then bastion.toml in the data directory, then BASTION_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from bastion.config import ConfigError, Settings, load_settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD


def write_toml(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "bastion.toml").write_text(text, encoding="utf-8")


def test_defaults_without_file_or_environment(tmp_path):
    settings = load_settings(tmp_path, environ={})
    assert settings.data_dir == tmp_path
    assert settings.database_url == ""
    assert settings.effective_database_url == f"sqlite:///{(tmp_path / 'bastion.db').resolve()}"
    assert settings.is_sqlite
    assert settings.log_level == "INFO"
    assert settings.secure_cookies == "auto"
    assert settings.trusted_proxy_count == 0
    assert settings.session_idle_minutes == 30
    assert settings.session_absolute_hours == 12
    assert settings.password_min_length == 12
    assert settings.secrets_dir == tmp_path / "secrets"
    assert settings.extra == {}


def test_data_dir_comes_from_the_environment_when_not_given(tmp_path):
    settings = load_settings(environ={"BASTION_DATA_DIR": str(tmp_path / "elsewhere")})
    assert settings.data_dir == tmp_path / "elsewhere"


def test_file_in_the_data_dir_is_read(tmp_path):
    write_toml(
        tmp_path,
        'log_level = "DEBUG"\nsession_idle_minutes = 10\nsecure_cookies = "always"\n'
        'crm_region = "north"\n',
    )
    settings = load_settings(tmp_path, environ={})
    assert settings.log_level == "DEBUG"
    assert settings.session_idle_minutes == 10
    assert settings.secure_cookies == "always"
    # Unknown keys are kept for plugins, not rejected.
    assert settings.extra == {"crm_region": "north"}


def test_environment_overrides_the_file(tmp_path):
    write_toml(tmp_path, 'log_level = "DEBUG"\nsession_idle_minutes = 10\n')
    settings = load_settings(
        tmp_path,
        environ={"BASTION_LOG_LEVEL": "WARNING", "BASTION_PASSWORD_MIN_LENGTH": "16"},
    )
    assert settings.log_level == "WARNING"
    assert settings.password_min_length == 16
    assert settings.session_idle_minutes == 10  # not overridden: the file's value stays


def test_unrelated_environment_variables_are_ignored(tmp_path):
    settings = load_settings(tmp_path, environ={"BASTION_NO_SUCH_THING": "1", "LOG_LEVEL": "X"})
    assert settings == load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"BASTION_SESSION_IDLE_MINUTES": "soon"},
            "The setting BASTION_SESSION_IDLE_MINUTES has the value 'soon', "
            "which is not a valid int.",
        ),
        (
            {"BASTION_LOG_LEVEL": "LOUD"},
            "log_level is 'LOUD'; use DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        ),
        (
            {"BASTION_SECURE_COOKIES": "sometimes"},
            "secure_cookies is 'sometimes'; use auto, always or never.",
        ),
        (
            {"BASTION_DATABASE_URL": "mysql://db/crm"},
            "database_url must start with sqlite:// or postgresql+psycopg://; "
            "'mysql' databases are not supported.",
        ),
        (
            {"BASTION_DATABASE_URL": "postgresql://db/crm"},
            "database_url must name the psycopg driver: write postgresql+psycopg://...",
        ),
        ({"BASTION_PASSWORD_MIN_LENGTH": "6"}, "password_min_length cannot be below 8."),
        ({"BASTION_TRUSTED_PROXY_COUNT": "-1"}, "trusted_proxy_count cannot be negative."),
        ({"BASTION_ARGON2_TIME_COST": "0"}, "argon2_time_cost must be at least 1."),
    ],
)
def test_bad_environment_values_are_refused_with_a_sentence(tmp_path, environ, expected):
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ=environ)
    assert str(caught.value) == expected


def test_bad_value_in_the_file_names_the_setting(tmp_path):
    write_toml(tmp_path, 'session_absolute_hours = "a day"\n')
    with pytest.raises(ConfigError, match=r"session_absolute_hours .* not a valid int\."):
        load_settings(tmp_path, environ={})


def test_a_boolean_is_not_accepted_as_a_number(tmp_path):
    write_toml(tmp_path, "trusted_proxy_count = true\n")
    with pytest.raises(ConfigError, match="trusted_proxy_count"):
        load_settings(tmp_path, environ={})


def test_malformed_toml_is_reported_with_the_file_name(tmp_path):
    write_toml(tmp_path, "log_level = \n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    message = str(caught.value)
    assert str(tmp_path / "bastion.toml") in message
    assert "is not valid TOML" in message


def test_the_file_cannot_move_the_data_dir(tmp_path):
    write_toml(tmp_path, 'data_dir = "/somewhere/else"\n')
    with pytest.raises(ConfigError, match="cannot move the data directory"):
        load_settings(tmp_path, environ={})


def test_settings_are_immutable(tmp_path):
    settings = load_settings(tmp_path, environ={})
    assert isinstance(settings, Settings)
    with pytest.raises(AttributeError):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_the_cli_reports_a_config_error_as_a_problem(cli, bastion_env):
    bastion_env["BASTION_LOG_LEVEL"] = "LOUD"
    result = cli("check")
    assert result.exit_code == 1
    assert "problem: log_level is 'LOUD'" in result.output
    assert "Traceback" not in result.output


def test_database_url_selects_the_database(cli, bastion_env, data_dir, database_url, tmp_path):
    # On PostgreSQL the fixture's URL; on SQLite a file outside the data directory.
    url = database_url or f"sqlite:///{tmp_path / 'elsewhere.db'}"
    bastion_env["BASTION_DATABASE_URL"] = url
    result = cli(
        "init", "--admin-email", ADMIN_EMAIL, "--admin-password-file", "-", input=ADMIN_PASSWORD
    )
    assert result.exit_code == 0, result.output
    assert not (data_dir / "bastion.db").exists()
    engine = create_engine(url)
    try:
        assert {"users", "roles", "plugin_state"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    check = cli("check")
    assert check.exit_code == 0, check.output
    expected = "postgresql" if database_url else "sqlite"
    assert f"ok: database reachable ({expected})" in check.output


def test_an_sqlite_too_old_for_returning_is_refused_up_front(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ConfigError, match=r"SQLite 3\.34\.1; Bastion needs 3\.35 or newer"):
        load_settings(tmp_path, environ={})
    # PostgreSQL does not care which SQLite Python has.
    url = "postgresql+psycopg://postgres@127.0.0.1/test"
    assert load_settings(tmp_path, environ={"BASTION_DATABASE_URL": url}).database_url == url
