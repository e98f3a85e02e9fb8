"""A backup taken before `bastion upgrade` (an older schema revision) is migrated on restore."""

from __future__ import annotations

from alembic import command

from bastion import schema
from bastion.db import db
from tests.core.backup.conftest import restore_args
from tests.core.backup.test_backup_restore import said

OLDER = "0005"


def test_an_older_backup_is_migrated_on_restore(source, run, tmp_path, target_url):
    with source.app.app_context():
        head = schema.head_revision()
        assert head != OLDER
        # The database as an older Bastion left it, before `bastion upgrade` ran.
        config = schema._config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, OLDER)
        assert schema.current_revision() == OLDER
    archive = tmp_path / "older.bbak"
    made = run("backup", "--to", str(archive))
    assert made.exit_code == 0, made.output
    assert f"at revision {OLDER}" in made.output

    target = tmp_path / "restored"
    restored = run(*restore_args(archive, target, source.data_dir, target_url))
    assert restored.exit_code == 0, restored.output
    lines = said(restored)
    assert f"Schema migrated: {OLDER} -> {head}." in lines
    assert "Audit chain: OK" in restored.output
    assert "MISMATCH" not in restored.output
    assert lines[-1] == "OK"
