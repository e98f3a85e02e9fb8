"""`bastion init`: data directory, secrets, schema and first administrator, no prompts."""

from __future__ import annotations

import stat

import pytest
from sqlalchemy import create_engine, inspect, select

from bastion.db import db
from bastion.models import User
from bastion.provision import is_initialized
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in
from tests.core.conftest import run_init


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def table_names(settings) -> set[str]:
    engine = create_engine(settings.effective_database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_init_creates_everything_without_prompting(cli, data_dir, settings, app_for):
    result = run_init(cli)
    assert result.exit_code == 0, result.output
    assert f"Initialized {data_dir}." in result.output
    enabled_line = next(x for x in result.output.splitlines() if x.startswith("Enabled plugins:"))
    assert "status" in enabled_line
    # The password came from stdin: nothing was asked interactively.
    assert "password" not in result.stdout.lower()

    assert is_initialized(data_dir)
    assert mode(data_dir) == 0o700
    secrets_dir = data_dir / "secrets"
    assert mode(secrets_dir) == 0o700
    session_key = secrets_dir / "session.key"
    assert mode(session_key) == 0o600
    assert len(session_key.read_text().strip()) == 64  # 32 random bytes, hex
    # Data keys exist only wrapped by the master key, in the database.
    assert not (secrets_dir / "credentials.key").exists()
    assert {"users", "roles", "role_permissions", "plugin_state"} <= table_names(settings)

    client = app_for(settings).test_client()
    assert sign_in(client).status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["--admin-password-file", "-"], "--admin-email"),
        (["--admin-email", ADMIN_EMAIL], "--admin-password-file"),
    ],
)
def test_init_without_a_terminal_never_waits_for_an_answer(cli, data_dir, args, missing):
    result = cli("init", *args, input=ADMIN_PASSWORD)
    assert result.exit_code == 2
    assert f"Give {missing} (there is no terminal to ask on)." in result.output
    assert not data_dir.exists()


def test_init_reads_the_password_from_a_file(cli, tmp_path, settings, app_for):
    secret = tmp_path / "admin-password"
    secret.write_text("a different long passphrase\n")
    result = cli("init", "--admin-email", "Root@Example.COM", "--admin-password-file", str(secret))
    assert result.exit_code == 0, result.output
    client = app_for(settings).test_client()
    # The trailing newline of the file is not part of the password; the email is normalized.
    assert sign_in(client, "root@example.com", "a different long passphrase").status_code == 302


def test_init_refuses_an_initialized_directory(cli, data_dir):
    assert run_init(cli).exit_code == 0
    key_before = (data_dir / "secrets" / "session.key").read_text()
    again = run_init(cli, email="other@example.com")
    assert again.exit_code == 1
    assert f"{data_dir} is already initialized. Use --force to wipe and initialize it again." in (
        again.output
    )
    assert (data_dir / "secrets" / "session.key").read_text() == key_before


def test_init_with_force_starts_over(cli, data_dir, settings, app_for):
    assert run_init(cli).exit_code == 0
    key_before = (data_dir / "secrets" / "session.key").read_text()
    result = run_init(cli, "--force", email="second@example.com", password="another passphrase!")
    assert result.exit_code == 0, result.output
    assert (data_dir / "secrets" / "session.key").read_text() != key_before

    client = app_for(settings).test_client()
    assert sign_in(client).status_code == 401  # the first administrator is gone
    assert sign_in(client, "second@example.com", "another passphrase!").status_code == 302
    app = client.application
    with app.app_context():
        assert db.session.scalars(select(User.email)).all() == ["second@example.com"]


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", ADMIN_PASSWORD, "'not-an-email' is not a valid email address"),
        (ADMIN_EMAIL, "short", "The password must be at least 12 characters long."),
        (ADMIN_EMAIL, "", "The password must be at least 12 characters long."),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing_behind(
    cli, data_dir, settings, email, password, message
):
    result = run_init(cli, email=email, password=password)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not data_dir.exists()
    if not settings.is_sqlite:
        assert table_names(settings) == set()
    # A corrected second attempt works: nothing half-made is in the way.
    retry = run_init(cli)
    assert retry.exit_code == 0, retry.output
