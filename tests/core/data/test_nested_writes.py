"""A plugin's record hooks writing other records through a system service: in the same
transaction, audited, rolled back with the change that set them off, and each nested
write running its own object's hooks, without endless recursion."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.audit.models import AuditEntry
from bastion.db import db
from bastion.runtime import platform
from tests.core.data.conftest import SAM, bearer, service_as, user_id
from tests.core.data.record_plugin import BEHAVIOUR, CALLS, DEALS, LOGS, PLUGIN, running_app


@pytest.fixture
def rt_app(settings, monkeypatch):
    yield from running_app(settings, monkeypatch)


def _records(app, object_name: str) -> list[dict]:
    with service_as(app, None) as system:
        page = system.query(object_name, sort="id", limit=100)
        return [{**r.values, "version": r.version} for r in page.records]


def _audited(app) -> list[tuple[str, str, str, str | None]]:
    """(action, object, actor, request id) of the record entries, in chain order."""
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type.in_([DEALS, LOGS]))
            .order_by(AuditEntry.seq)
        )
        return [(e.action, e.object_type, e.actor, e.request_id) for e in rows]


def test_a_hook_creates_and_updates_another_record_in_the_same_transaction(rt_app):
    BEHAVIOUR.update({"log_on_changed", "update_log_on_changed"})
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    created = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Nested"})
    assert created.status_code == 201, created.get_data(as_text=True)
    deal_id = created.get_json()["id"]

    (log,) = _records(rt_app, LOGS)
    assert log["message"] == "updated by hook" and log["version"] == 2
    assert log["deal"] == deal_id
    assert log["stamp"] == "stamped"  # the log's own record_changing hook ran
    log_id = log["id"]
    calls = list(CALLS)
    assert calls == [
        ("changing", DEALS, "create", None),
        ("changed", DEALS, "create", deal_id),
        ("changing", LOGS, "create", None),
        ("changed", LOGS, "create", log_id),
        ("changing", LOGS, "update", log_id),
        ("changed", LOGS, "update", log_id),
    ]
    entries = _audited(rt_app)
    sam_actor = f"user:{user_id(rt_app, SAM)}"
    assert [(a, o, actor) for a, o, actor, _ in entries] == [
        ("record.create", DEALS, sam_actor),
        ("record.create", LOGS, "system"),
        ("record.update", LOGS, "system"),
    ]
    assert len({request for *_, request in entries}) == 1  # one request did all three

    # An update of the deal sets the hook off again, as Sam's API call.
    patched = api.patch(f"/api/v1/{DEALS}/{deal_id}", headers=sam, json={"version": 1, "units": 4})
    assert patched.status_code == 200, patched.get_data(as_text=True)
    assert len(_records(rt_app, LOGS)) == 2


def test_nested_writes_roll_back_with_the_outer_change(rt_app):
    BEHAVIOUR.add("log_on_changed")
    with service_as(rt_app, SAM) as sam, pytest.raises(RuntimeError), sam.atomic():
        sam.create(DEALS, {"name": "Undone"})
        raise RuntimeError("the caller gives up")
    assert _records(rt_app, DEALS) == [] and _records(rt_app, LOGS) == []
    assert _audited(rt_app) == []

    # A write the hook made while checking a change that is then refused goes too.
    BEHAVIOUR.clear()
    BEHAVIOUR.update({"log_on_changing", "refuse_deal"})
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    refused = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Refused"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"name": "Refused by the test plugin."}
    assert ("changing", LOGS, "create", None) in CALLS  # it was written, then undone
    assert _records(rt_app, DEALS) == [] and _records(rt_app, LOGS) == []
    assert _audited(rt_app) == []

    # Without the refusal the hook's record written while checking stays, with the deal.
    BEHAVIOUR.discard("refuse_deal")
    kept = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Kept"})
    assert kept.status_code == 201, kept.get_data(as_text=True)
    assert [log["message"] for log in _records(rt_app, LOGS)] == ["changing create"]


def test_a_refused_nested_write_leaves_the_outer_change_whole(rt_app):
    # The hook catches the refusal of its own write; the database (PostgreSQL too) goes
    # on with the outer change, and the hook's other write stays.
    BEHAVIOUR.update({"log_on_changed", "bad_nested"})
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    created = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Whole"})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert ("nested_refused", LOGS, "create", None) in CALLS
    assert [deal["name"] for deal in _records(rt_app, DEALS)] == ["Whole"]
    assert [log["message"] for log in _records(rt_app, LOGS)] == [
        f"create {created.get_json()['id']}"
    ]


def test_a_hook_that_sets_itself_off_is_cut_short(rt_app):
    BEHAVIOUR.update({"log_on_changed", "loop"})
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    created = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Loop"})
    # The deal is write 1; each log one level deeper, until the limit refuses one. The
    # logs are the plugin's own object, so the refusal stops the whole change.
    assert created.status_code == 422, created.get_data(as_text=True)
    assert "levels deep" in created.get_data(as_text=True)
    assert _records(rt_app, DEALS) == [] and _records(rt_app, LOGS) == []
    failures = platform(rt_app).registry.failures_by_plugin()[PLUGIN]
    assert any("levels deep" in str(failure) for failure in failures)


@pytest.mark.parametrize("hook", ["changing", "changed"])
def test_the_declaring_plugins_failure_refuses_the_write(rt_app, hook):
    # Its hooks keep the object's computed values right: a crash must not save a record
    # whose computed values are stale.
    BEHAVIOUR.update({"log_on_changed", f"crash_on_{hook}"})
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    created = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Crash"})
    assert created.status_code == 422, created.get_data(as_text=True)
    body = created.get_json()
    assert "could not process this change, so nothing was saved" in body["detail"]
    assert "boom" not in created.get_data(as_text=True)  # the cause is for administrators
    assert _records(rt_app, DEALS) == [] and _records(rt_app, LOGS) == []
    failures = platform(rt_app).registry.failures_by_plugin()[PLUGIN]
    assert any("boom" in str(failure) for failure in failures)


def test_another_plugins_failure_leaves_the_write_alone(rt_app):
    # Contacts belong to the core: the test plugin crashing on them is its own problem.
    BEHAVIOUR.add("crash_on_contacts")
    api, sam = rt_app.test_client(), bearer(rt_app, SAM)
    created = api.post("/api/v1/contacts", headers=sam, json={"last_name": "Whole"})
    assert created.status_code == 201, created.get_data(as_text=True)
    failures = platform(rt_app).registry.failures_by_plugin()[PLUGIN]
    assert any("boom" in str(failure) for failure in failures)
