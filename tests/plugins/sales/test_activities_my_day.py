"""The "My day" page, its "Done" button and "New task" form, and the open-tasks card."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import ADMIN, NINA, SAM, SVEN, client_as, service_as, user_id

GROUPS = ("overdue", "today", "upcoming", "undated")


def token(client, path: str = "/sales/my-day") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def groups(html: str) -> dict[str, str]:
    """The HTML of each group section of the page, by key."""
    found = {}
    for key in GROUPS:
        start = html.index(f'id="my-day-{key}"')
        ends = [html.find(f'id="my-day-{other}"', start + 1) for other in GROUPS]
        ends = [e for e in ends if e > start]
        found[key] = html[start : min(ends) if ends else len(html)]
    return found


def where(html: str, subject: str) -> list[str]:
    return [key for key, part in groups(html).items() if subject in part]


def add(app, owner: str, subject: str, due: datetime | None, **values) -> int:
    with service_as(app, None) as system:
        return system.create(
            "activities",
            {
                "kind": "task",
                "subject": subject,
                "due_at": due,
                "owner": user_id(app, owner),
                **values,
            },
        ).id


def set_time_zone(app, email: str, zone: str) -> None:
    from bastion.db import db
    from bastion.models import User

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        user.time_zone = zone
        db.session.commit()


def test_my_day_groups_open_activities_by_due_date(sales_app):
    now = datetime.now(UTC)
    add(sales_app, SAM, "Yesterday task", now - timedelta(days=1))
    add(sales_app, SAM, "Today task", now)
    add(sales_app, SAM, "Next week task", now + timedelta(days=5))
    add(sales_app, SAM, "Someday task", None)
    add(sales_app, SAM, "Far away task", now + timedelta(days=40))
    add(sales_app, SAM, "Finished task", now, done=True)
    add(sales_app, NINA, "Nina's task", now)
    client = client_as(sales_app, SAM)
    response = client.get("/sales/my-day")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert where(html, "Yesterday task") == ["overdue"]
    assert where(html, "Today task") == ["today"]
    assert where(html, "Next week task") == ["upcoming"]
    assert where(html, "Someday task") == ["undated"]
    assert "Far away task" not in html and "1 more open activity is due later" in html
    assert "Finished task" not in html and "Nina&#39;s task" not in html
    assert "Nina's task" not in html
    assert 'href="/sales/my-day"' in html  # the navigation entry


def test_my_day_uses_the_users_time_zone(sales_app):
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its day differs from UTC's for hours
    set_time_zone(sales_app, SAM, "Pacific/Kiritimati")
    today = datetime.now(zone).date()
    midnight = datetime.combine(today, time.min, tzinfo=zone)
    add(sales_app, SAM, "Just before midnight", (midnight - timedelta(minutes=1)).astimezone(UTC))
    add(sales_app, SAM, "Just after midnight", (midnight + timedelta(minutes=1)).astimezone(UTC))
    html = client_as(sales_app, SAM).get("/sales/my-day").get_data(as_text=True)
    assert where(html, "Just before midnight") == ["overdue"]
    assert where(html, "Just after midnight") == ["today"]
    assert "00:01" in groups(html)["today"]  # shown in local time
    assert "Pacific/Kiritimati" in html


def test_the_related_record_is_named_and_linked(sales_app):
    with service_as(sales_app, None) as system:
        lead = system.create(
            "leads", {"last_name": "Hopper", "company": "Navy", "owner": user_id(sales_app, SAM)}
        )
    add(sales_app, SAM, "Call Grace", None, related_to=f"leads:{lead.id}")
    html = client_as(sales_app, SAM).get("/sales/my-day").get_data(as_text=True)
    part = groups(html)["undated"]
    assert f'href="/o/leads/{lead.id}"' in part and "Hopper" in part


def test_done_marks_the_activity_done_and_leaves_the_list(sales_app):
    activity = add(sales_app, SAM, "Send the contract", datetime.now(UTC))
    client = client_as(sales_app, SAM)
    response = client.post(
        f"/sales/my-day/{activity}/done", data={"csrf_token": token(client), "version": "1"}
    )
    assert response.status_code == 303
    with service_as(sales_app, None) as system:
        record = system.get("activities", activity)
    assert record.get("done") is True and record.get("completed_at") is not None
    assert record.version == 2
    html = client.get("/sales/my-day").get_data(as_text=True)
    assert "Send the contract" not in html.split('id="my-day"', 1)[1]


def test_done_through_htmx_answers_the_lists_and_refuses_a_stale_version(sales_app):
    first = add(sales_app, SAM, "First thing", datetime.now(UTC))
    add(sales_app, SAM, "Second thing", datetime.now(UTC))
    client = client_as(sales_app, SAM)
    csrf = token(client)
    headers = {"HX-Request": "true"}
    response = client.post(
        f"/sales/my-day/{first}/done", data={"csrf_token": csrf, "version": "1"}, headers=headers
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="my-day"' in html and "<html" not in html
    assert "Done: “First thing”" in html and "Second thing" in html
    assert f"my-day-item-{first}" not in html
    # The same button again, with the version it showed: someone changed it meanwhile.
    response = client.post(
        f"/sales/my-day/{first}/done", data={"csrf_token": csrf, "version": "1"}, headers=headers
    )
    assert response.status_code == 409
    assert "changed by someone else" in response.get_data(as_text=True)


def test_done_on_another_teams_activity_is_not_found(sales_app):
    theirs = add(sales_app, SVEN, "Sven's call", datetime.now(UTC))
    client = client_as(sales_app, SAM)
    response = client.post(
        f"/sales/my-day/{theirs}/done", data={"csrf_token": token(client), "version": "1"}
    )
    assert response.status_code == 404
    with service_as(sales_app, None) as system:
        assert system.get("activities", theirs).get("done") is False


def test_new_task_is_created_for_me_and_related_to_a_record(sales_app):
    with service_as(sales_app, None) as system:
        lead = system.create(
            "leads",
            {"last_name": "Turing", "company": "Bletchley", "owner": user_id(sales_app, SAM)},
        )
    client = client_as(sales_app, SAM)
    page = client.get("/sales/my-day").get_data(as_text=True)
    assert f'value="leads:{lead.id}"' in page  # offered among my open leads
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/sales/my-day/tasks",
        data={
            "csrf_token": token(client),
            "subject": "Prepare proposal",
            "due_at": tomorrow,
            "related_to": f"leads:{lead.id}",
        },
    )
    assert response.status_code == 303
    with service_as(sales_app, None) as system:
        [task] = system.query("activities", filters=[], sort="-id", limit=1).records
    assert task.get("subject") == "Prepare proposal" and task.get("kind") == "task"
    assert task.get("owner") == user_id(sales_app, SAM) and task.get("done") is False
    assert str(task.get("related_to")) == f"leads:{lead.id}"
    html = client.get("/sales/my-day").get_data(as_text=True)
    assert where(html, "Prepare proposal") in (["today"], ["upcoming"])


def test_new_task_shows_errors_next_to_the_fields_and_keeps_the_input(sales_app):
    client = client_as(sales_app, SAM)
    response = client.post(
        "/sales/my-day/tasks",
        data={"csrf_token": token(client), "subject": "", "due_at": "tomorrow-ish"},
    )
    assert response.status_code == 422
    assert "Give the task a subject." in response.get_data(as_text=True)
    response = client.post(
        "/sales/my-day/tasks",
        data={"csrf_token": token(client), "subject": "Keep me", "due_at": "tomorrow-ish"},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Keep me"' in html and 'id="task-due-error"' in html
    response = client.post(
        "/sales/my-day/tasks",
        data={"csrf_token": token(client), "subject": "Linked", "related_to": "leads:999999"},
    )
    assert response.status_code == 422
    assert 'id="task-related-error"' in response.get_data(as_text=True)


def test_my_day_needs_a_sign_in(sales_app):
    response = sales_app.test_client().get("/sales/my-day")
    assert response.status_code in (302, 303) and "/login" in response.headers["Location"]


def test_the_dashboard_shows_my_open_tasks(sales_app):
    now = datetime.now(UTC)
    add(sales_app, SAM, "Late report", now - timedelta(days=2))
    add(sales_app, SAM, "Tomorrow's demo", now + timedelta(days=1))
    add(sales_app, SAM, "Whenever", None)
    add(sales_app, NINA, "Not mine", now)
    html = client_as(sales_app, SAM).get("/").get_data(as_text=True)
    assert "My open tasks" in html
    assert re.search(r"<strong>3</strong>\s*open tasks", html)
    assert "Late report" in html and "Tomorrow&#39;s demo" in html and "Not mine" not in html
    late = html.index("Late report")
    assert "my-tasks__item--overdue" in html[html.rindex("<li", 0, late) : late]
    assert "Overdue" in html
    # The administrator has no open tasks: the card says so.
    admin = client_as(sales_app, ADMIN).get("/").get_data(as_text=True)
    assert re.search(r"<strong>0</strong>\s*open tasks", admin)


@pytest.mark.parametrize("email", [SAM, ADMIN])
def test_my_day_is_offered_in_the_navigation(sales_app, email):
    html = client_as(sales_app, email).get("/").get_data(as_text=True)
    assert 'href="/sales/my-day"' in html


def test_logged_calls_and_notes_stay_off_my_day_unless_they_have_a_due_date(sales_app):
    now = datetime.now(UTC)
    add(sales_app, SAM, "Logged call", None, kind="call")
    add(sales_app, SAM, "Note to self", None, kind="note")
    add(sales_app, SAM, "Planned call", now, kind="call")
    add(sales_app, SAM, "Real task", None)
    client = client_as(sales_app, SAM)
    html = client.get("/sales/my-day").get_data(as_text=True)
    assert "Logged call" not in html and "Note to self" not in html
    assert where(html, "Planned call") == ["today"] and where(html, "Real task") == ["undated"]
    dashboard = client.get("/").get_data(as_text=True)
    assert re.search(r"<strong>1</strong>\s*open task\b", dashboard)  # tasks only


def test_a_long_overdue_list_does_not_hide_today(sales_app, monkeypatch):
    from bastion_sales.activities import my_day

    monkeypatch.setattr(my_day, "GROUP_LIMIT", 2)
    now = datetime.now(UTC)
    for n in range(3):
        add(sales_app, SAM, f"Old chore {n}", now - timedelta(days=10 + n))
    add(sales_app, SAM, "Today's call", now)
    html = client_as(sales_app, SAM).get("/sales/my-day").get_data(as_text=True)
    assert where(html, "Today&#39;s call") == ["today"]
    assert "Only the first entries are listed" in html


@pytest.mark.parametrize(
    "related", ["leads:²", "leads:٣", "leads:99999999999999999999", "accounts:1", "nonsense"]
)
def test_odd_related_to_values_are_refused_cleanly(sales_app, related):
    client = client_as(sales_app, SAM)
    assert client.get("/sales/my-day", query_string={"related_to": related}).status_code == 200
    response = client.post(
        "/sales/my-day/tasks",
        data={"csrf_token": token(client), "subject": "Odd", "related_to": related},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="task-related-error"' in html and 'value="Odd"' in html
    with service_as(sales_app, None) as system:
        assert system.count("activities") == 0


@pytest.mark.parametrize("version", ["²", "99999999999999999999", "", "one"])
def test_done_with_an_odd_version_is_refused_cleanly(sales_app, version):
    activity = add(sales_app, SAM, "Odd version", datetime.now(UTC))
    client = client_as(sales_app, SAM)
    response = client.post(
        f"/sales/my-day/{activity}/done", data={"csrf_token": token(client), "version": version}
    )
    assert response.status_code == 303  # back to the page with the message
    assert "version" in client.get("/sales/my-day").get_data(as_text=True).lower()
    with service_as(sales_app, None) as system:
        assert system.get("activities", activity).get("done") is False


def test_new_task_offers_only_my_own_open_records(sales_app):
    with service_as(sales_app, None) as system:
        mine = system.create(
            "leads", {"last_name": "Mine", "company": "A", "owner": user_id(sales_app, SAM)}
        ).id
        colleague = system.create(
            "leads", {"last_name": "Colleague", "company": "B", "owner": user_id(sales_app, NINA)}
        ).id
        other_team = system.create(
            "leads", {"last_name": "South", "company": "C", "owner": user_id(sales_app, SVEN)}
        ).id
    html = client_as(sales_app, SAM).get("/sales/my-day").get_data(as_text=True)
    assert f'value="leads:{mine}"' in html
    assert f'value="leads:{colleague}"' not in html
    assert f'value="leads:{other_team}"' not in html


def test_an_out_of_scope_related_record_is_named_without_a_link(sales_app):
    with service_as(sales_app, None) as system:
        south = system.create(
            "leads", {"last_name": "Secret", "company": "South", "owner": user_id(sales_app, SVEN)}
        ).id
    add(sales_app, SAM, "Ask Sven", None, related_to=f"leads:{south}")
    part = groups(client_as(sales_app, SAM).get("/sales/my-day").get_data(as_text=True))["undated"]
    assert f"Lead #{south}" in part
    assert f'href="/o/leads/{south}"' not in part and "Secret" not in part


def test_done_is_not_offered_to_a_user_who_may_not_edit_activities(sales_app):
    from bastion.db import db
    from bastion.models import Role, RoleObjectRule

    activity = add(sales_app, SAM, "Look only", datetime.now(UTC))
    with sales_app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        rule = db.session.get(RoleObjectRule, (role.id, "activities"))
        rule.can_edit = False
        db.session.commit()
    client = client_as(sales_app, SAM)
    html = client.get("/sales/my-day").get_data(as_text=True)
    assert "Look only" in html and f"/sales/my-day/{activity}/done" not in html
    csrf = token(client)
    plain = client.post(f"/sales/my-day/{activity}/done", data={"csrf_token": csrf})
    assert plain.status_code == 403
    htmx = client.post(
        f"/sales/my-day/{activity}/done",
        data={"csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert htmx.status_code == 403 and htmx.headers["HX-Redirect"] == "/sales/my-day"
    assert "You may not change activities." in client.get("/sales/my-day").get_data(as_text=True)
    with service_as(sales_app, None) as system:
        assert system.get("activities", activity).get("done") is False
