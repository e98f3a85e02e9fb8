"""A field migration is done only when no value is left in the old form."""

from __future__ import annotations

from sqlalchemy import select

from bastion.db import db
from bastion.keys import fields as key_fields
from bastion.keys.cipher import version_of
from bastion.keys.models import EncryptionJob
from tests.core.encryption.conftest import raw, set_raw
from tests.core.encryption.test_field_toggle import _change, _contacts, nick_app  # noqa: F401


def _stale_writes_after_passes(monkeypatch, app, record_id: int, passes: int) -> list[int]:
    """After each of the first ``passes`` passes, a process that has not seen the change
    yet writes plain text behind the pass."""
    real = key_fields.rewrite
    done: list[int] = []

    def rewrite(*args, **kwargs):
        yield from real(*args, **kwargs)
        if len(done) < passes:
            done.append(1)
            set_raw(app, "nickname", record_id, f"stale-{len(done)}")

    monkeypatch.setattr(key_fields, "rewrite", rewrite)
    monkeypatch.setattr(key_fields, "PASS_PAUSE_SECONDS", 0)
    return done


def _job_states(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(EncryptionJob.state).order_by(EncryptionJob.id)))


def test_values_written_behind_every_pass_are_still_migrated(nick_app, monkeypatch):  # noqa: F811
    made = _contacts(nick_app, 4)
    monkeypatch.setattr(key_fields, "start_background", lambda app=None: None)
    _change(nick_app, {"encrypted": True}, background=False)
    victim = next(iter(made))
    stale = _stale_writes_after_passes(monkeypatch, nick_app, victim, passes=4)
    with nick_app.app_context():
        results = key_fields.run_pending(batch_size=2)
    assert len(stale) == 4
    assert [r.finished for r in results] == [True]
    for record_id in made:
        assert version_of(raw(nick_app, "nickname", record_id)) == 1
    assert _job_states(nick_app) == ["done"]


def test_a_job_that_keeps_finding_old_values_stays_running(nick_app, monkeypatch, cli):  # noqa: F811
    made = _contacts(nick_app, 2)
    monkeypatch.setattr(key_fields, "start_background", lambda app=None: None)
    _change(nick_app, {"encrypted": True}, background=False)
    victim = next(iter(made))
    monkeypatch.setattr(key_fields, "MAX_PASSES", 3)
    _stale_writes_after_passes(monkeypatch, nick_app, victim, passes=3)
    with nick_app.app_context():
        (result,) = key_fields.run_pending()
    assert not result.finished and result.incomplete
    assert _job_states(nick_app) == ["running"]
    # Reads accept the plain value while the job runs; the next run finishes it.
    assert raw(nick_app, "nickname", victim) == "stale-3"
    resumed = cli("keys", "migrate")
    assert resumed.exit_code == 0 and "done" in resumed.output
    assert version_of(raw(nick_app, "nickname", victim)) == 1
    assert _job_states(nick_app) == ["done"]
