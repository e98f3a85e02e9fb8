"""The audit trail in the database: written with the change, append-only, chained,
anchored by signed checkpoints, verified from the command line, archived with proof."""

from __future__ import annotations

import gzip
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bastion import audit
from bastion.audit.anchors import EVERY_ENTRIES, anchors_for
from bastion.audit.chain import entry_hash
from bastion.db import db
from tests.conftest import ADMIN_EMAIL, sign_in
from tests.core.audit.conftest import entries, tamper
from tests.core.data.conftest import bearer, service_as
from tests.core.data.ui_support import create


def _contacts(app, count: int) -> list[int]:
    return [create(app, ADMIN_EMAIL, "contacts", {"last_name": f"Audit {n}"}) for n in range(count)]


def _verify(cli, *args: str):
    result = cli("audit", "verify", *args)
    return result.exit_code, (result.output + (result.stderr if result.stderr_bytes else ""))


def test_record_changes_are_chained_with_their_values(app, cli):
    record_id = create(app, ADMIN_EMAIL, "contacts", {"last_name": "Lovelace", "first_name": "Ada"})
    with service_as(app, ADMIN_EMAIL) as records:
        record = records.get("contacts", record_id)
        records.update("contacts", record_id, {"first_name": "Augusta"}, version=record.version)

    created = entries(app, action="record.create", object_type="contacts")
    updated = entries(app, action="record.update", object_type="contacts")
    assert [e.object_id for e in created] == [str(record_id)]
    assert json.loads(updated[0].changes)["first_name"] == {"before": "Ada", "after": "Augusta"}
    assert updated[0].actor.startswith("user:") and updated[0].actor_user_id is not None

    chain = entries(app)
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(chain))
    assert _verify(cli) == (0, f"OK {len(chain)}\n")


def test_a_rolled_back_change_leaves_no_entry_but_a_security_event_stays(app):
    with service_as(app, ADMIN_EMAIL) as records, pytest.raises(RuntimeError), records.atomic():
        records.create("contacts", {"last_name": "Never saved"})
        audit.record("test.refused", object_type="contacts", outcome="refused")
        raise RuntimeError("the caller gives up")
    assert entries(app, action="record.create") == []
    [event] = entries(app, action="test.refused")
    assert event.outcome == "refused"


def test_an_event_in_a_request_that_never_commits_is_written_when_it_ends(app, client):
    response = sign_in(client, ADMIN_EMAIL, "not the password at all")
    assert response.status_code in (200, 401)
    [failure] = entries(app, action="auth.sign_in", outcome="failure")
    assert failure.client_addr == "127.0.0.1"
    assert failure.request_id and len(failure.request_id) >= 16


def test_entries_made_through_an_api_token_name_it(app, client):
    headers = bearer(app, ADMIN_EMAIL)
    response = client.post("/api/v1/contacts", json={"last_name": "Tokened"}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    [entry] = entries(app, action="record.create", object_type="contacts")
    assert entry.token_id is not None and entry.actor_user_id is not None
    assert entry.request_id == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET outcome = 'success'",
        "DELETE FROM audit_entries WHERE seq = 1",
        "UPDATE audit_head SET seq = seq",  # the head is not protected: allowed
    ],
)
def test_the_database_refuses_updates_and_deletes(app, statement):
    _contacts(app, 1)
    with app.app_context():
        if statement.startswith("UPDATE audit_head"):
            db.session.execute(text(statement))
            db.session.rollback()
            return
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()


def test_truncate_is_refused_on_postgresql(app):
    with app.app_context():
        if db.session.connection().dialect.name != "postgresql":
            pytest.skip("TRUNCATE is PostgreSQL's")
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("TRUNCATE audit_entries"))
        db.session.rollback()


@pytest.fixture
def chain(app, cli):
    """Twelve or so entries and a checkpoint of the head."""
    _contacts(app, 6)
    assert cli("audit", "checkpoint").exit_code == 0
    return entries(app)


def test_an_edited_entry_is_found(app, cli, chain):
    tamper(app, "UPDATE audit_entries SET object_id = '999' WHERE seq = 3")
    code, output = _verify(cli)
    assert code == 1 and "entry 3 was altered" in output


def test_a_deleted_entry_is_found(app, cli, chain):
    tamper(app, "DELETE FROM audit_entries WHERE seq = 4")
    code, output = _verify(cli)
    assert code == 1 and "entry 4 is missing" in output


def test_an_inserted_entry_is_found(app, cli, chain):
    head = chain[-1].seq
    # Make room after entry 3 and slip a forged entry in, chained to entry 3.
    tamper(
        app,
        "UPDATE audit_entries SET seq = seq + 1000000 WHERE seq > 3",
        "UPDATE audit_entries SET seq = seq - 999999 WHERE seq > 1000000",
        (
            "INSERT INTO audit_entries (seq, occurred_at, actor, action, outcome, prev_hash, "
            "hash) VALUES (4, '2026-01-01T00:00:00.000000Z', 'system', 'auth.sign_in', "
            "'success', :prev, :forged)",
            {"prev": chain[2].hash, "forged": "ab" * 32},
        ),
    )
    assert entries(app)[-1].seq == head + 1
    code, output = _verify(cli)
    assert code == 1 and "entry 4 was altered" in output


def test_reordered_entries_are_found(app, cli, chain):
    tamper(
        app,
        "UPDATE audit_entries SET seq = -1 WHERE seq = 3",
        "UPDATE audit_entries SET seq = 3 WHERE seq = 4",
        "UPDATE audit_entries SET seq = 4 WHERE seq = -1",
    )
    code, output = _verify(cli)
    assert code == 1 and "entry 3 does not follow entry 2" in output


def test_a_truncated_tail_is_found_against_the_checkpoint(app, cli, chain):
    head = chain[-1].seq
    tamper(app, ("DELETE FROM audit_entries WHERE seq > :last", {"last": head - 2}))
    code, output = _verify(cli)
    assert code == 1
    assert f"the chain ends at entry {head - 2}" in output and f"recorded entry {head}" in output


def test_a_chain_rewritten_with_the_key_is_found_by_the_checkpoint(app, cli, chain):
    with app.app_context():
        key = anchors_for(app).chain_key()
    columns = [column.name for column in chain[0].__table__.columns]
    rows = [{column: getattr(e, column) for column in columns} for e in chain]
    rows[4]["object_id"] = "forged"
    prev = rows[3]["hash"]
    updates = []
    for row in rows[4:]:
        row["prev_hash"] = prev
        prev = row["hash"] = entry_hash(row, prev, key)
        updates.append(
            (
                "UPDATE audit_entries SET object_id = :object_id, prev_hash = :prev_hash, "
                "hash = :hash WHERE seq = :seq",
                row,
            )
        )
    tamper(app, *updates)
    code, output = _verify(cli)
    assert code == 1 and "does not match the checkpoint" in output


def test_a_forged_checkpoint_is_found(app, cli, chain):
    path = anchors_for(app).checkpoints_path
    line = json.loads(path.read_text().splitlines()[-1])
    line["hash"] = "00" * 32
    with path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    code, output = _verify(cli)
    assert code == 1 and "signature does not match" in output


def test_a_checkpoint_is_written_every_thousand_entries(app):
    with service_as(app, ADMIN_EMAIL) as records:
        rows = [{"last_name": f"Bulk {n}"} for n in range(EVERY_ENTRIES + 5)]
        records.create_many("contacts", rows)
    path = anchors_for(app).checkpoints_path
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
    assert seqs and seqs[-1] >= EVERY_ENTRIES


def test_archiving_moves_old_entries_to_a_signed_file(app, cli, chain, tmp_path):
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    result = cli("audit", "archive", "--before", tomorrow, "--to", str(tmp_path))
    assert result.exit_code == 0, result.output
    [archive_file] = list(tmp_path.glob("audit-archive-*.jsonl.gz"))
    count = len(chain)
    assert f"Archived entries 1 to {count} ({count})" in result.output

    remaining = entries(app)
    assert [e.action for e in remaining] == ["audit.archive"] and remaining[0].seq == count + 1
    code, output = _verify(cli)
    assert code == 0 and "OK 1" in output.splitlines()
    # Kept outside the data directory: verify says where the archived range is.
    assert f"entries 1 to {count} are archived in {archive_file.name}" in output
    assert _verify(cli, "--archive", str(archive_file)) == (0, f"OK {count}\n")

    # The archive row lets exactly its range go; anything else is still refused.
    with app.app_context(), pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("DELETE FROM audit_entries WHERE seq = :seq"), {"seq": count + 1})

    lines = gzip.decompress(archive_file.read_bytes()).splitlines()
    lines[2] = lines[2].replace(b'"outcome":"success"', b'"outcome":"failure"', 1)
    archive_file.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    code, output = _verify(cli, "--archive", str(archive_file))
    assert code == 1 and "does not match its signed digest" in output


def test_archiving_needs_a_period(cli, app):
    result = cli("audit", "archive")
    assert result.exit_code != 0 and "No retention period is set" in result.output
    result = cli("audit", "archive", "--before", "yesterday")
    assert result.exit_code != 0 and "is not a date" in result.output


def test_concurrent_writers_keep_one_unbroken_chain(app, cli):
    import threading

    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                create(app, ADMIN_EMAIL, "contacts", {"last_name": f"Thread {n}-{i}"})
                with app.test_request_context():
                    audit.record("test.ping", object_id=f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(entries(app, action="record.create")) == 60
    assert len(entries(app, action="test.ping")) == 60
    code, output = _verify(cli)
    assert code == 0 and output.startswith("OK ")


def test_serving_processes_checkpoint_every_minute(app, monkeypatch):
    import threading

    from bastion.audit import anchors

    monkeypatch.setattr(anchors, "EVERY_SECONDS", 0.05)
    _contacts(app, 2)
    path = anchors_for(app).checkpoints_path
    assert not path.exists()  # far fewer than a thousand entries
    stop = threading.Event()
    thread = anchors.start_checkpointer(app, stop)
    try:
        for _ in range(100):
            if path.exists():
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join()
    [line] = path.read_text().splitlines()
    assert json.loads(line)["seq"] == entries(app)[-1].seq


def test_checkpoints_can_go_to_syslog(app, cli):
    _contacts(app, 1)
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    try:
        result = cli("audit", "checkpoint", env={"BASTION_AUDIT_SYSLOG": f"127.0.0.1:{port}"})
        assert result.exit_code == 0, result.output
        message = receiver.recv(4096).decode()
    finally:
        receiver.close()
    assert "bastion-audit-checkpoint" in message and '"sig":' in message


def test_a_forged_archive_record_does_not_hide_the_trail(app, cli, chain):
    head = chain[-1]
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO audit_archives (first_seq, last_seq, last_hash, file_name, "
                "file_sha256, created_at, signature) VALUES (1, :last, :hash, 'x', 'y', 'z', 'ab')"
            ),
            {"last": head.seq, "hash": head.hash},
        )
        db.session.execute(text("DELETE FROM audit_entries"))
        db.session.commit()
    code, output = _verify(cli)
    assert code == 1 and "archive record" in output and "signature does not match" in output


def test_insert_or_replace_cannot_rewrite_an_entry(app, chain):
    with app.app_context():
        if db.session.connection().dialect.name != "sqlite":
            pytest.skip("INSERT OR REPLACE is SQLite's")
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(
                text(
                    "INSERT OR REPLACE INTO audit_entries (seq, occurred_at, actor, action, "
                    "outcome, prev_hash, hash) VALUES (2, 'x', 'system', 'forged', 'success', "
                    "'0', '0')"
                )
            )
        db.session.rollback()


def test_a_missing_chain_key_is_never_made_up(app, cli, chain, settings):
    (settings.secrets_dir / "audit-chain.key").unlink()
    code, output = _verify(cli)
    assert code != 0 and "is missing" in output
    assert not (settings.secrets_dir / "audit-chain.key").exists()


def test_a_merge_ends_the_trail_of_each_record_merged_away(app):
    keep = create(app, ADMIN_EMAIL, "contacts", {"last_name": "Keep", "email": "k@example.com"})
    lose = create(app, ADMIN_EMAIL, "contacts", {"last_name": "Lose", "first_name": "Lou"})
    with service_as(app, ADMIN_EMAIL) as records:
        version = records.get("contacts", keep).version
        records.merge("contacts", keep, [lose], values={}, version=version)
    [merge] = entries(app, action="record.merge")
    assert json.loads(merge.changes)["merged_ids"] == [lose]
    [gone] = entries(app, action="record.delete", object_id=str(lose))
    changes = json.loads(gone.changes)
    assert changes["first_name"] == {"before": "Lou", "after": None}
    assert changes["_cause"] == {
        "action": "merge",
        "object": "contacts",
        "ids": [lose],
        "into": keep,
    }
