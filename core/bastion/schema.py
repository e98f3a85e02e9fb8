"""The core's tables, migrated with Alembic so an installed Bastion upgrades in place."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.db import db

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision this installed version ships (read from disk once)."""
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision() -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade() -> None:
    """Bring the core tables to the newest revision (inside an app context)."""
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_current() -> bool:
    return current_revision() == head_revision()
