"""A backup taken while another thread writes is one consistent state of the database."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from bastion.audit.models import AuditEntry
from bastion.db import db
from tests.conftest import dispose
from tests.core.backup.conftest import restore_args, restored_app
from tests.core.data.conftest import service_as


def test_a_backup_during_writes_is_consistent(source, run, tmp_path, target_url):
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() and n < 2_000:
                with service_as(source.app, None) as records:
                    written.append(records.create("accounts", {"name": f"Busy {n}"}).id)
                n += 1
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20 and thread.is_alive():
            stop.wait(0.01)
        archive = tmp_path / "busy.bbak"
        made = run("backup", "--to", str(archive))
        during = len(written)
        while len(written) < during + 20 and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert made.exit_code == 0, made.output
    assert len(written) > during, "the writer kept writing after the backup"

    target = tmp_path / "restored"
    restored = run(*restore_args(archive, target, source.data_dir, target_url))
    assert restored.exit_code == 0, restored.output
    assert "MISMATCH" not in restored.output and "Audit chain: OK" in restored.output

    app = restored_app(target, target_url)
    try:
        with app.app_context():
            accounts = db.session.scalar(select(func.count()).select_from(db.table("obj_accounts")))
            created = db.session.scalar(
                select(func.count()).where(
                    AuditEntry.action == "record.create", AuditEntry.object_type == "accounts"
                )
            )
    finally:
        dispose(app)
    with source.app.app_context():
        total = db.session.scalar(select(func.count()).select_from(db.table("obj_accounts")))
    # Every record in the copy has its audit entry and no entry lacks its record: the
    # records and the audit chain come from the same instant.
    assert accounts == created
    # Some of the writer's records made it into the copy, the later ones did not.
    assert total - len(written) < accounts < total
