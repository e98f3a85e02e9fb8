"""Logging activities on sales records: the quick form, completion time, last activity.

A lead's or opportunity's ``last_activity_at`` is the latest time of its activities
that count (every activity except an open task; its time is ``completed_at``, else
``created_at``), kept up to date on create, update and delete.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import NINA, SAM, client_as, service_as, user_id

pytestmark = pytest.mark.usefixtures("sales_app")


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def make_lead(app, owner: str = SAM, **values) -> int:
    with service_as(app, None) as system:
        record = system.create(
            "leads",
            {
                "last_name": "Lovelace",
                "company": "Analytical Engines",
                "owner": user_id(app, owner),
                **values,
            },
        )
        return record.id


def make_opportunity(app, owner: str = SAM, **values) -> int:
    with service_as(app, None) as system:
        record = system.create(
            "opportunities",
            {
                "name": "Engine upgrade",
                "close_date": date.today() + timedelta(days=30),
                "owner": user_id(app, owner),
                **values,
            },
        )
        return record.id


def read(app, object_name: str, record_id: int):
    with service_as(app, None) as system:
        return system.get(object_name, record_id)


def log_activity(client, object_name: str, record_id: int, **fields):
    path = f"/o/{object_name}/{record_id}"
    data = {"csrf_token": token(client, path), **fields}
    return client.post(f"{path}/activities", data=data)


def activities_of(app, object_name: str, record_id: int):
    with service_as(app, None) as system:
        return system.query(
            "activities", filters=[_related(object_name, record_id)], sort="id"
        ).records


def _related(object_name: str, record_id: int):
    from bastion.api import Filter

    return Filter("related_to", "eq", f"{object_name}:{record_id}")


def close_to_now(moment: datetime | None) -> bool:
    return moment is not None and abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


def test_the_lead_page_offers_the_quick_form_with_every_kind(sales_app):
    lead = make_lead(sales_app)
    html = client_as(sales_app, SAM).get(f"/o/leads/{lead}").get_data(as_text=True)
    assert "Log an activity" in html
    for kind in ("call", "meeting", "email", "note", "task"):
        assert f'value="{kind}"' in html
    assert 'name="subject"' in html and 'name="due_at"' in html and 'name="done"' in html


def test_logging_a_done_call_from_a_lead_sets_its_last_activity(sales_app):
    lead = make_lead(sales_app)
    assert read(sales_app, "leads", lead).get("last_activity_at") is None
    client = client_as(sales_app, SAM)
    response = log_activity(client, "leads", lead, kind="call", subject="Intro call", done="true")
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    [call] = activities_of(sales_app, "leads", lead)
    assert call.get("kind") == "call" and call.get("done") is True
    assert close_to_now(call.get("completed_at"))  # filled in when marked done
    assert read(sales_app, "leads", lead).get("last_activity_at") == call.get("completed_at")
    # The page shows it in the timeline.
    assert "Intro call" in client.get(f"/o/leads/{lead}").get_data(as_text=True)


def test_the_quick_form_through_htmx_answers_the_timeline(sales_app):
    lead = make_lead(sales_app)
    client = client_as(sales_app, SAM)
    path = f"/o/leads/{lead}"
    response = client.post(
        f"{path}/activities",
        data={"csrf_token": token(client, path), "kind": "email", "subject": "Sent brochure"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Sent brochure" in response.get_data(as_text=True)
    # A logged (not done) email counts from its creation time.
    [email] = activities_of(sales_app, "leads", lead)
    assert read(sales_app, "leads", lead).get("last_activity_at") == email.get("created_at")


def test_an_open_task_is_not_activity(sales_app):
    lead = make_lead(sales_app)
    client = client_as(sales_app, SAM)
    response = log_activity(
        client, "leads", lead, kind="task", subject="Call back", due_at="2030-01-02T09:00"
    )
    assert response.status_code == 303
    assert read(sales_app, "leads", lead).get("last_activity_at") is None


def test_the_quick_form_refuses_a_missing_subject_and_keeps_the_input(sales_app):
    lead = make_lead(sales_app)
    client = client_as(sales_app, SAM)
    response = log_activity(client, "leads", lead, kind="meeting", subject="")
    assert response.status_code == 422
    assert "Subject" in response.get_data(as_text=True)
    assert activities_of(sales_app, "leads", lead) == []


def test_logging_a_meeting_from_an_opportunity_sets_its_last_activity(sales_app):
    opportunity = make_opportunity(sales_app)
    client = client_as(sales_app, SAM)
    html = client.get(f"/o/opportunities/{opportunity}").get_data(as_text=True)
    assert "Log an activity" in html
    response = log_activity(
        client, "opportunities", opportunity, kind="meeting", subject="Demo", done="true"
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    assert close_to_now(read(sales_app, "opportunities", opportunity).get("last_activity_at"))


def test_last_activity_follows_updates_moves_and_deletes(sales_app):
    lead, other = make_lead(sales_app), make_lead(sales_app, last_name="Byron")
    two_days_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    five_days_ago = two_days_ago - timedelta(days=3)
    with service_as(sales_app, SAM) as service:
        early = service.create(
            "activities",
            {
                "kind": "call",
                "subject": "Early",
                "done": True,
                "completed_at": five_days_ago,
                "related_to": f"leads:{lead}",
            },
        )
        late = service.create(
            "activities",
            {
                "kind": "call",
                "subject": "Late",
                "done": True,
                "completed_at": two_days_ago,
                "related_to": f"leads:{lead}",
            },
        )
    assert read(sales_app, "leads", lead).get("last_activity_at") == two_days_ago
    with service_as(sales_app, SAM) as service:  # moved to the other lead
        service.update(
            "activities", late.id, {"related_to": f"leads:{other}"}, version=late.version
        )
    assert read(sales_app, "leads", lead).get("last_activity_at") == five_days_ago
    assert read(sales_app, "leads", other).get("last_activity_at") == two_days_ago
    with service_as(sales_app, None) as system:  # reps may not delete activities
        system.delete("activities", early.id)
    assert read(sales_app, "leads", lead).get("last_activity_at") is None


def test_users_cannot_write_last_activity_themselves(sales_app):
    from bastion.api import ValidationFailed

    lead = make_lead(sales_app)
    with service_as(sales_app, SAM) as service:
        record = service.get("leads", lead)
        with pytest.raises(ValidationFailed):
            service.update(
                "leads", lead, {"last_activity_at": datetime.now(UTC)}, version=record.version
            )


def test_activities_on_other_objects_leave_sales_records_alone(sales_app):
    lead = make_lead(sales_app)
    with service_as(sales_app, SAM) as service:
        account = service.create("accounts", {"name": "Difference Engines"})
        activity = service.create(
            "activities",
            {
                "kind": "call",
                "subject": "Hello",
                "done": True,
                "related_to": f"accounts:{account.id}",
            },
        )
    assert activity.get("completed_at") is not None
    assert read(sales_app, "leads", lead).get("last_activity_at") is None


def test_a_quote_page_offers_the_quick_form(sales_app):
    opportunity = make_opportunity(sales_app, owner=NINA)
    with service_as(sales_app, None) as system:
        book = system.create("price_books", {"name": "Standard", "currency": "EUR"})
        quote = system.create(
            "quotes",
            {
                "opportunity": opportunity,
                "price_book": book.id,
                "title": "Engine quote",
                "owner": user_id(sales_app, NINA),
            },
        )
    client = client_as(sales_app, NINA)
    assert "Log an activity" in client.get(f"/o/quotes/{quote.id}").get_data(as_text=True)
    response = log_activity(client, "quotes", quote.id, kind="note", subject="Sent for review")
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    [note] = activities_of(sales_app, "quotes", quote.id)
    assert note.get("kind") == "note"
