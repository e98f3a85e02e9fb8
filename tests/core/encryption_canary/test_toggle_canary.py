"""Turning an existing field encrypted leaves no copy of its plain values on disk."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import text

from bastion.db import db
from bastion.keys.cipher import version_of
from tests.core.encryption.conftest import raw, set_raw
from tests.core.encryption.test_field_toggle import _change, _contacts, nick_app  # noqa: F401


def _database_files(app) -> list[Path]:
    with app.app_context():
        database = Path(db.engine.url.database or "")
    return [p for p in (database, Path(f"{database}-wal")) if p.exists()]


def test_no_plain_value_is_left_in_the_database_files(nick_app):  # noqa: F811
    made = _contacts(nick_app, 3)
    canary = f"canary{secrets.token_hex(12)}"
    victim = next(iter(made))
    # Written without an audit entry: entries made before the change keep their values.
    set_raw(nick_app, "nickname", victim, canary)
    for _ in range(3):  # old copies in several pages and WAL frames
        set_raw(nick_app, "nickname", victim, canary)

    with nick_app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
    if sqlite:
        assert any(canary.encode() in p.read_bytes() for p in _database_files(nick_app))

    _change(nick_app, {"encrypted": True})

    stored = raw(nick_app, "nickname", victim)
    assert version_of(stored) == 1 and canary not in stored
    if sqlite:
        for path in _database_files(nick_app):
            assert canary.encode() not in path.read_bytes(), path.name
    else:
        with nick_app.app_context():
            vacuumed = db.session.execute(
                text("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'obj_contacts'")
            ).scalar()
        assert vacuumed  # the table's dead row versions (the plain values) are gone
