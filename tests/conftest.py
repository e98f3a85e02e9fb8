"""Shared fixtures: an initialized Bastion on SQLite or PostgreSQL, a client, the CLI.

The database backend comes from BASTION_TEST_DATABASE ("sqlite", the default, or
"postgresql"). On PostgreSQL a fresh database is created for the session and every test
gets its own schema in it; both are dropped afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from bastion.app import create_app
from bastion.cli import main as bastion_cli
from bastion.config import Settings, load_settings
from bastion.db import db
from bastion.provision import initialize, prepare_data_dir

BACKEND = os.environ.get("BASTION_TEST_DATABASE", "sqlite")
POSTGRES_ADMIN_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
# Cheap Argon2 parameters keep the suite fast; production defaults are tested separately.
FAST_HASHING = {"argon2_time_cost": "1", "argon2_memory_kib": "1024", "argon2_parallelism": "1"}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def pytest_report_header(config: pytest.Config) -> str:
    return f"bastion test database: {BACKEND}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    if BACKEND != "postgresql":
        yield None
        return
    import psycopg

    name = f"bastion_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_database: str | None) -> Iterator[str]:
    """Empty for the data directory's SQLite file, or a PostgreSQL URL with a private schema."""
    if postgres_database is None:
        yield ""
        return
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = postgres_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{postgres_database}?options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def bastion_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """Environment for running the `bastion` command against this test's installation."""
    env = {f"BASTION_{k.upper()}": v for k, v in FAST_HASHING.items()}
    env["BASTION_DATA_DIR"] = str(data_dir)
    if database_url:
        env["BASTION_DATABASE_URL"] = database_url
    return env


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    overrides: dict[str, Any] = dict(FAST_HASHING)
    if database_url:
        overrides["database_url"] = database_url
    return load_settings(data_dir, environ={}, overrides=overrides)


def make_app(settings: Settings, *, demo: bool = False, **kwargs: Any):
    """An initialized installation (schema, secrets, administrator) and its app."""
    prepare_data_dir(settings.data_dir, force=False)
    app = create_app(settings, **kwargs)
    app.config["TESTING"] = True
    initialize(app, admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, demo=demo)
    return app


def dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(settings: Settings):
    application = make_app(settings)
    yield application
    dispose(application)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli(bastion_env: dict[str, str]):
    """Run `bastion ...` in-process against this test's installation."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        return runner.invoke(
            bastion_cli, list(args), env={**bastion_env, **(env or {})}, input=input
        )

    return run


def csrf_token(client, path: str = "/login") -> str:
    page = client.get(path)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD, **fields: str):
    """Post the sign-in form (with a fresh CSRF token and any extra fields, e.g. next)."""
    token = csrf_token(client)
    data = {"email": email, "password": password, "csrf_token": token, **fields}
    return client.post("/login", data=data)


@pytest.fixture
def admin_client(client):
    response = sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
