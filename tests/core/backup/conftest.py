"""A demo-like installation to back up, and a place to restore it to.

The source has the demo organization's records, an encrypted custom field on contacts
with values in it, a user with MFA on, and the audit entries all that wrote. On
PostgreSQL a restore goes into a fresh database whose schema has another name than
the source's, so the schema rename is exercised too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bastion import mfa
from bastion.cli import main as bastion_cli
from bastion.config import load_settings
from bastion.data import definitions
from bastion.db import db
from bastion.demo_records import load_demo_records
from bastion.models import User
from tests.conftest import (
    ADMIN_PASSWORD,
    BACKEND,
    FAST_HASHING,
    POSTGRES_ADMIN_URL,
    dispose,
    make_app,
)
from tests.core.data.conftest import service_as

MFA_EMAIL = "mfa.backup@example.com"
CANARY = "canary-7Q3-national-id"
PIN = {"name": "pin", "label": "PIN", "type": "text", "encrypted": True}
PASSPHRASE = "a long off-site passphrase for tests"


@dataclass
class Source:
    app: object
    data_dir: Path
    mfa_secret: str
    #: contact id -> PIN (the encrypted field)
    pins: dict[int, str]


@pytest.fixture
def source(settings) -> Iterator[Source]:
    app = make_app(settings, demo=True)
    with app.app_context():
        load_demo_records()
    with app.test_request_context():
        definitions.add_field("contacts", PIN)
    pins = {}
    with service_as(app, None) as records:
        for n in range(3):
            pin = f"{CANARY}-{n}"
            made = records.create("contacts", {"last_name": f"Backup{n}", "pin": pin})
            pins[made.id] = pin
    secret = mfa.new_secret()
    with app.test_request_context():
        from bastion.identity import create_user

        user = create_user(
            app.extensions["bastion.passwords"],
            email=MFA_EMAIL,
            password=ADMIN_PASSWORD,
            name="MFA User",
            roles=[],
        )
        db.session.flush()
        # The codes of the last two steps count as used: the sign-in uses the current one.
        mfa.enable_mfa(user, secret, mfa.current_step() - 2)
        db.session.commit()
    yield Source(app, settings.data_dir, secret, pins)
    dispose(app)


@pytest.fixture
def target_url() -> Iterator[str | None]:
    """Where a PostgreSQL backup is restored: an empty schema in a new database."""
    if BACKEND != "postgresql":
        yield None
        return
    import psycopg

    name = f"bastion_restore_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "restored"')
    driver = base.replace("postgresql://", "postgresql+psycopg://")
    yield f"{driver}/{name}?options=-csearch_path%3Drestored"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    return path


@pytest.fixture
def run(bastion_env):
    """`bastion ...` in-process with the source installation's environment."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(bastion_cli, list(args), env={**bastion_env, **(env or {})})

    return invoke


def restore_args(archive: Path, target: Path, source_dir: Path, url: str | None) -> list[str]:
    args = [
        "restore",
        str(archive),
        "--data-dir",
        str(target),
        "--master-key-file",
        str(source_dir / "secrets" / "master.key"),
    ]
    if url:
        args += ["--database-url", url]
    return args


def restored_app(target: Path, url: str | None):
    """The application of a restored data directory (its bastion.toml names the database)."""
    from bastion.app import create_app

    settings = load_settings(target, environ={}, overrides=dict(FAST_HASHING))
    if url:
        assert settings.database_url == url
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def current_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))
