"""`bastion sales follow-ups`: stale leads and open opportunities get one task each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bastion.api import Filter
from tests.plugins.sales.conftest import NINA, SAM, SVEN, service_as, user_id


def lead(app, owner: str, name: str, *, quiet_days: int | None, **values) -> int:
    with service_as(app, None) as system:
        record = system.create(
            "leads",
            {"last_name": name, "company": f"{name} Ltd", "owner": user_id(app, owner), **values},
        )
        if quiet_days is not None:
            call(system, "leads", record.id, quiet_days)
        return record.id


def call(system, object_name: str, record_id: int, days_ago: int) -> None:
    """A done call ``days_ago`` days ago: the record's last activity."""
    system.create(
        "activities",
        {
            "kind": "call",
            "subject": "Catch-up call",
            "done": True,
            "completed_at": datetime.now(UTC) - timedelta(days=days_ago),
            "related_to": f"{object_name}:{record_id}",
        },
    )


def opportunity(app, owner: str, name: str, *, quiet_days: int, **values) -> int:
    with service_as(app, None) as system:
        record = system.create(
            "opportunities",
            {
                "name": name,
                "close_date": date.today() + timedelta(days=30),
                "owner": user_id(app, owner),
                **values,
            },
        )
        call(system, "opportunities", record.id, quiet_days)
        return record.id


def age(app, object_name: str, record_id: int, days: int) -> None:
    """Pretend the record was created ``days`` ago (test set-up only)."""
    from bastion.data.catalog import current_catalog
    from bastion.db import db

    with app.test_request_context():
        table = current_catalog().table(object_name)
        db.session.execute(
            update(table)
            .where(table.c.id == record_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )
        db.session.commit()


def follow_ups(app) -> list:
    with service_as(app, None) as system:
        return system.query(
            "activities", filters=[Filter("subject", "startswith", "Follow up:")], sort="id"
        ).records


def test_follow_ups_go_to_stale_records_once(sales_app, cli):
    stale_lead = lead(sales_app, SAM, "Stale", quiet_days=30)
    lead(sales_app, SAM, "Fresh", quiet_days=2)
    lead(sales_app, SAM, "Dropped", quiet_days=30, status="unqualified")
    never = lead(sales_app, SVEN, "Never", quiet_days=None)  # no activity, created long ago
    age(sales_app, "leads", never, 40)
    young = lead(sales_app, SVEN, "Young", quiet_days=None)  # no activity, created today
    stale_deal = opportunity(sales_app, NINA, "Quiet deal", quiet_days=20)
    opportunity(sales_app, NINA, "Busy deal", quiet_days=1)

    dry = cli("sales", "follow-ups", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would create 3 tasks (2 for leads, 1 for opportunities)" in dry.output
    assert follow_ups(sales_app) == []

    first = cli("sales", "follow-ups")
    assert first.exit_code == 0, first.output
    assert "created 3 tasks" in first.output
    tasks = {str(t.get("related_to")): t for t in follow_ups(sales_app)}
    assert set(tasks) == {
        f"leads:{stale_lead}",
        f"leads:{never}",
        f"opportunities:{stale_deal}",
    }
    assert f"leads:{young}" not in tasks
    assert tasks[f"leads:{stale_lead}"].get("owner") == user_id(sales_app, SAM)
    assert tasks[f"leads:{never}"].get("owner") == user_id(sales_app, SVEN)
    assert tasks[f"opportunities:{stale_deal}"].get("owner") == user_id(sales_app, NINA)
    deal_task = tasks[f"opportunities:{stale_deal}"]
    # A neutral subject: no name or other personal data copied into the task.
    assert deal_task.get("subject") == "Follow up: no activity for 14 days"
    assert deal_task.get("kind") == "task" and deal_task.get("done") is False
    assert deal_task.get("due_at").date() == datetime.now(UTC).date()
    assert "Stale" not in tasks[f"leads:{stale_lead}"].get("subject")

    second = cli("sales", "follow-ups")
    assert second.exit_code == 0, second.output
    assert (
        "created 0 tasks" in second.output and "3 already have an open follow-up" in second.output
    )
    assert len(follow_ups(sales_app)) == 3


def test_closed_and_converted_records_are_skipped(sales_app, cli):
    lead(sales_app, SAM, "Converted", quiet_days=30, status="converted")
    opportunity(sales_app, NINA, "Won deal", quiet_days=30, outcome="won")
    opportunity(sales_app, NINA, "Lost deal", quiet_days=30, outcome="lost", close_reason="Price")
    result = cli("sales", "follow-ups")
    assert result.exit_code == 0, result.output
    assert "created 0 tasks" in result.output
    assert follow_ups(sales_app) == []


def test_a_done_follow_up_resets_the_clock(sales_app, cli):
    stale = lead(sales_app, SAM, "Sleepy", quiet_days=30)
    assert cli("sales", "follow-ups").exit_code == 0
    [task] = follow_ups(sales_app)
    with service_as(sales_app, SAM) as service:
        service.update("activities", task.id, {"done": True}, version=task.version)
        assert service.get("leads", stale).get("last_activity_at") is not None
    result = cli("sales", "follow-ups")
    assert "created 0 tasks" in result.output
    assert len(follow_ups(sales_app)) == 1


def test_the_follow_up_days_setting_is_used(sales_app, cli):
    from bastion.api import set_plugin_setting

    lead(sales_app, SAM, "Monthly", quiet_days=30)
    with sales_app.test_request_context():
        set_plugin_setting("sales", "follow_up_days", 45, actor=None)
    result = cli("sales", "follow-ups", "--dry-run")
    assert "(45 days without activity)" in result.output
    assert "would create 0 tasks" in result.output


def test_working_nurturing_and_qualified_leads_and_untouched_deals_get_tasks(sales_app, cli):
    ids = {status: lead(sales_app, SAM, status.title(), quiet_days=30, status=status)
           for status in ("working", "nurturing", "qualified")}  # fmt: skip
    with service_as(sales_app, None) as system:
        untouched = system.create(
            "opportunities",
            {"name": "Untouched", "close_date": date.today(), "owner": user_id(sales_app, NINA)},
        ).id
    age(sales_app, "opportunities", untouched, 40)
    result = cli("sales", "follow-ups")
    assert "created 4 tasks (3 for leads, 1 for opportunities)" in result.output, result.output
    linked = {str(t.get("related_to")) for t in follow_ups(sales_app)}
    assert linked == {f"leads:{i}" for i in ids.values()} | {f"opportunities:{untouched}"}


def test_a_renamed_task_still_covers_its_record(sales_app, cli):
    lead(sales_app, SAM, "Renamed", quiet_days=30)
    cli("sales", "follow-ups")
    [task] = follow_ups(sales_app)
    with service_as(sales_app, SAM) as service:
        service.update("activities", task.id, {"subject": "Ring them"}, version=task.version)
    result = cli("sales", "follow-ups")
    assert "created 0 tasks" in result.output and "1 already have" in result.output
    with service_as(sales_app, None) as system:
        assert system.count("activities", filters=[Filter("kind", "eq", "task")]) == 1


def test_a_reassigned_record_gets_a_task_for_its_new_owner(sales_app, cli):
    record = lead(sales_app, SAM, "Handover", quiet_days=30)
    cli("sales", "follow-ups")
    with service_as(sales_app, None) as system:
        current = system.get("leads", record)
        system.update("leads", record, {"owner": user_id(sales_app, NINA)}, version=current.version)
    result = cli("sales", "follow-ups")
    assert "created 1 tasks" in result.output, result.output
    owners = sorted(t.get("owner") for t in follow_ups(sales_app))
    assert owners == sorted([user_id(sales_app, SAM), user_id(sales_app, NINA)])
    assert "created 0 tasks" in cli("sales", "follow-ups").output


@pytest.mark.parametrize(
    ("object_name", "values"),
    [
        ("leads", {"status": "unqualified"}),
        ("opportunities", {"outcome": "lost", "close_reason": "Budget"}),
    ],
)
def test_closing_a_record_closes_its_open_follow_ups(sales_app, cli, object_name, values):
    if object_name == "leads":
        record = lead(sales_app, SAM, "Closing", quiet_days=30)
    else:
        record = opportunity(sales_app, SAM, "Closing deal", quiet_days=30)
    cli("sales", "follow-ups")
    [task] = follow_ups(sales_app)
    # An opportunity's outcome follows its stage (read-only for users): set it directly.
    with service_as(sales_app, SAM if object_name == "leads" else None) as service:
        before = service.get(object_name, record)
        service.update(object_name, record, values, version=before.version)
        closed = service.get("activities", task.id)
        assert closed.get("done") is True
        # Closing the task is housekeeping, not a contact with the record.
        after = service.get(object_name, record)
        assert after.get("last_activity_at") == before.get("last_activity_at")


def test_a_stale_looking_record_with_newer_activity_is_corrected_not_tasked(sales_app, cli):
    record = lead(sales_app, SAM, "Drifted", quiet_days=30)
    from bastion.data.catalog import current_catalog
    from bastion.db import db

    with service_as(sales_app, None) as system:
        # An activity written while the hook did not run (e.g. an SQL import).
        fresh = system.create("activities", {"kind": "note", "subject": "Met at fair",
                                             "related_to": f"leads:{record}"})  # fmt: skip
    with sales_app.test_request_context():
        table = current_catalog().table("leads")
        stale_time = datetime.now(UTC) - timedelta(days=30)
        db.session.execute(
            update(table).where(table.c.id == record).values(last_activity_at=stale_time)
        )
        db.session.commit()
    result = cli("sales", "follow-ups")
    assert "created 0 tasks" in result.output, result.output
    assert "1 records had newer activity" in result.output
    with service_as(sales_app, None) as system:
        assert system.get("leads", record).get("last_activity_at") == fresh.get("created_at")


def test_merging_refreshes_the_survivors_last_activity(sales_app):
    old = lead(sales_app, SAM, "Survivor", quiet_days=30)
    recent = lead(sales_app, SAM, "Merged away", quiet_days=1)
    with service_as(sales_app, None) as system:
        expected = system.get("leads", recent).get("last_activity_at")
        winner = system.get("leads", old)
        system.merge("leads", old, [recent], values={}, version=winner.version)
        assert system.get("leads", old).get("last_activity_at") == expected


def test_deactivated_and_missing_owners_are_listed_once(sales_app, cli):
    from bastion.db import db
    from bastion.models import User

    lead(sales_app, SVEN, "Orphan one", quiet_days=30)
    lead(sales_app, SVEN, "Orphan two", quiet_days=30)
    lead(sales_app, SAM, "Owned", quiet_days=30)
    with sales_app.app_context():
        user = db.session.scalar(select(User).where(User.email == SVEN))
        user.active = False
        db.session.commit()
    result = cli("sales", "follow-ups")
    assert result.exit_code == 0, result.output
    assert "created 1 tasks" in result.output
    assert "2 records belong to 1 deactivated or removed owners" in result.output
    assert result.output.count("#") == 1


def test_the_limit_caps_one_run_and_the_next_carries_on(sales_app, cli):
    for name in ("One", "Two", "Three"):
        lead(sales_app, SAM, name, quiet_days=30)
    first = cli("sales", "follow-ups", "--limit", "2")
    assert "created 2 tasks" in first.output and "Stopped at the --limit" in first.output
    second = cli("sales", "follow-ups", "--limit", "2")
    assert "created 1 tasks" in second.output, second.output
    assert len(follow_ups(sales_app)) == 3


def test_a_run_while_another_holds_the_lock_does_nothing(sales_app, cli):
    from bastion.api import job_lock

    lead(sales_app, SAM, "Locked out", quiet_days=30)
    with sales_app.app_context(), job_lock("sales-follow-ups"):
        result = cli("sales", "follow-ups")
    assert result.exit_code == 0, result.output
    assert "Another follow-ups run is in progress." in result.output
    assert follow_ups(sales_app) == []
    assert "created 1 tasks" in cli("sales", "follow-ups").output
