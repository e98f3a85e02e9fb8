"""Leads: the reviewer's findings, each with the test that would have caught it.

Deleting and merging scored leads, the converted status kept to conversion, inactivity
measured like the activities area measures it, scores kept current under concurrent
writes, the rescore command's failures, conversion edge cases and the rules pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    NINA,
    SAM,
    bearer,
    client_as,
    service_as,
    user_id,
)

pytestmark = pytest.mark.usefixtures("sales_app")
SCORING = "/sales/settings/scoring"
ASSIGNMENT = "/sales/settings/assignment"


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def add_scoring_rule(app, **fields) -> None:
    admin = client_as(app, ADMIN)
    data = {"csrf_token": token(admin, SCORING), "active": "true", **fields}
    response = admin.post(SCORING, data=data)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]


def meeting_rule(app) -> None:
    add_scoring_rule(app, name="Meeting held", kind="activity", activity_kind="meeting",
                     points="15")  # fmt: skip


def new_lead(app, as_user: str = SAM, **values) -> dict:
    response = app.test_client().post(
        "/api/v1/leads", json={"last_name": "Lovelace", **values}, headers=bearer(app, as_user)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def log_activity(app, lead_id: int, as_user: str = SAM, **values) -> dict:
    body = {"kind": "meeting", "subject": "Met", "done": True, "related_to": f"leads:{lead_id}"}
    response = app.test_client().post(
        "/api/v1/activities", json={**body, **values}, headers=bearer(app, as_user)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def lead(app, lead_id: int):
    with service_as(app, None) as system:
        return system.get("leads", lead_id)


def age_leads(app, days: int) -> None:
    """Move every lead's creation ``days`` into the past (time passing)."""
    with app.app_context():
        from bastion.data.catalog import current_catalog
        from bastion.db import db

        table = current_catalog().table("leads")
        past = datetime.now(UTC) - timedelta(days=days)
        db.session.execute(update(table).values(created_at=past))
        db.session.commit()


# --------------------------------------------------------------- 1: delete and merge


def test_a_scored_lead_can_be_deleted_and_merged(sales_app):
    meeting_rule(sales_app)
    api = sales_app.test_client()
    admin = bearer(sales_app, ADMIN)
    doomed = new_lead(sales_app, last_name="Doomed")
    log_activity(sales_app, doomed["id"])
    current = lead(sales_app, doomed["id"])
    assert current["score"] == 15
    gone = api.delete(f"/api/v1/leads/{doomed['id']}?version={current.version}", headers=admin)
    assert gone.status_code == 204, gone.get_json()
    # Merge: both leads' meetings end up on the master, which keeps its score.
    master = new_lead(sales_app, last_name="Master")
    other = new_lead(sales_app, last_name="Other")
    log_activity(sales_app, master["id"])
    moved = log_activity(sales_app, other["id"])
    assert lead(sales_app, other["id"])["score"] == 15
    version = lead(sales_app, master["id"]).version
    merged = api.post(
        f"/api/v1/leads/{master['id']}/merge",
        json={"ids": [other["id"]], "version": version},
        headers=admin,
    )
    assert merged.status_code == 200, merged.get_json()
    assert merged.get_json()["score"] == 15
    with service_as(sales_app, None) as system:
        assert system.get("activities", moved["id"])["related_to"].id == master["id"]
        assert system.count("leads") == 1


# --------------------------------------------------------------- 2: the converted status


def test_converted_is_set_only_by_conversion_and_never_undone(sales_app):
    api = sales_app.test_client()
    headers = bearer(sales_app, SAM)
    created = new_lead(sales_app, company="Hand Made Ltd", email="hand@made.example")
    by_hand = api.patch(
        f"/api/v1/leads/{created['id']}",
        json={"version": created["version"], "status": "converted"},
        headers=headers,
    )
    assert by_hand.status_code == 422, by_hand.get_json()
    assert "Convert" in by_hand.get_json()["errors"]["status"]
    born = api.post(
        "/api/v1/leads", json={"last_name": "Born", "status": "converted"}, headers=headers
    )
    assert born.status_code == 422 and "status" in born.get_json()["errors"]
    # The real conversion still sets it (as the rep, through their own service).
    converted = api.post(f"/api/v1/leads/{created['id']}/convert", json={}, headers=headers)
    assert converted.status_code == 201, converted.get_json()
    after = lead(sales_app, created["id"])
    assert after["status"] == "converted" and after["converted_account"] is not None
    # Setting it back is refused; other fields of a converted lead stay editable.
    back = api.patch(
        f"/api/v1/leads/{created['id']}",
        json={"version": after.version, "status": "working"},
        headers=headers,
    )
    assert back.status_code == 422 and "stays Converted" in back.get_json()["errors"]["status"]
    note = api.patch(
        f"/api/v1/leads/{created['id']}",
        json={"version": after.version, "description": "Signed in person"},
        headers=headers,
    )
    assert note.status_code == 200, note.get_json()
    # The system (demo data, jobs) may still write any status.
    with service_as(sales_app, None) as system:
        made = system.create("leads", {"last_name": "Imported", "status": "converted"})
        assert made["status"] == "converted"


def test_the_form_refuses_a_converted_status_too(sales_app):
    client = client_as(sales_app, SAM)
    data = {"csrf_token": token(client, "/o/leads/new"), "last_name": "Form", "status": "converted"}
    response = client.post("/o/leads/new", data=data)
    assert response.status_code == 422
    assert "Convert button" in response.get_data(as_text=True)


# --------------------------------------------------------------- 4: inactivity


def test_an_open_task_does_not_cancel_the_inactivity_rule(sales_app, cli):
    add_scoring_rule(sales_app, name="Gone quiet", kind="inactivity", days="30", points="-10")
    created = new_lead(sales_app)
    age_leads(sales_app, 40)
    # A follow-up task (open) is a plan, not contact: the lead is still quiet. (Time
    # passing reaches scores through the scheduled rescore.)
    log_activity(sales_app, created["id"], kind="task", subject="Follow up", done=False,
                 due_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())  # fmt: skip
    assert cli("sales", "rescore").exit_code == 0
    quiet = lead(sales_app, created["id"])
    assert quiet["last_activity_at"] is None
    assert quiet["score"] == -10
    # A call made is contact: the rule no longer applies.
    log_activity(sales_app, created["id"], kind="call", subject="Called")
    called = lead(sales_app, created["id"])
    assert called["last_activity_at"] is not None
    assert called["score"] == 0


# --------------------------------------------------------------- 5: concurrent writes


def test_a_lead_changed_meanwhile_is_rescored_not_left_stale(sales_app, monkeypatch):
    from bastion_sales.leads import scores

    meeting_rule(sales_app)
    created = new_lead(sales_app)
    call = log_activity(sales_app, created["id"], kind="call", subject="Call")
    assert lead(sales_app, created["id"])["score"] == 0
    real = scores.score_lead
    raced: list[int] = []

    def racing(service, lead_id, values, **options):
        """Another transaction writes the lead between rescore's read and its write."""
        if lead_id == created["id"] and not raced:
            from bastion.data.catalog import current_catalog
            from bastion.db import db

            table = current_catalog().table("leads")
            db.session.execute(
                update(table).where(table.c.id == lead_id).values(version=table.c.version + 1)
            )
            raced.append(lead_id)
        return real(service, lead_id, values, **options)

    monkeypatch.setattr(scores, "score_lead", racing)
    # The call was a meeting after all: its time does not change, only the score does.
    changed = sales_app.test_client().patch(
        f"/api/v1/activities/{call['id']}",
        json={"version": call["version"], "kind": "meeting"},
        headers=bearer(sales_app, SAM),
    )
    assert changed.status_code == 200, changed.get_json()
    assert raced == [created["id"]]
    assert lead(sales_app, created["id"])["score"] == 15


# --------------------------------------------------------------- 7: the rescore command


def test_rescore_reports_failures_and_saves_the_rest(sales_app, cli, monkeypatch):
    import bastion_sales.leads.rescoring as leads_area
    from bastion.api import Conflict

    add_scoring_rule(sales_app, name="Gone quiet", kind="inactivity", days="30", points="-10")
    with service_as(sales_app, None) as system:
        first = system.create("leads", {"last_name": "First"}).id
        second = system.create("leads", {"last_name": "Second"}).id
    age_leads(sales_app, 40)
    real = leads_area.rescore

    def flaky(system, lead_id, **options):
        if lead_id == first:
            raise Conflict("Lead kept changing.")
        return real(system, lead_id, **options)

    monkeypatch.setattr(leads_area, "rescore", flaky)
    result = cli("sales", "rescore")
    assert result.exit_code == 1, result.output
    assert "Rescored 1 open leads; 1 changed. 1 failed." in result.output
    assert lead(sales_app, second)["score"] == -10
    assert lead(sales_app, first)["score"] == 0


def test_rescoring_a_lead_computes_its_score_once(sales_app, monkeypatch):
    from bastion_sales.leads import scores

    meeting_rule(sales_app)
    created = new_lead(sales_app)
    calls: list[int] = []
    real = scores.score_lead

    def counting(service, lead_id, values, **options):
        calls.append(lead_id)
        return real(service, lead_id, values, **options)

    with service_as(sales_app, None) as system:
        system.create(
            "activities",
            {"kind": "meeting", "subject": "Met", "done": True,
             "related_to": f"leads:{created['id']}"},
        )  # fmt: skip
        # Pretend the stored score is stale (as after a rule edit), then rescore.
        current = system.get("leads", created["id"])
        system.update("leads", created["id"], {"score": 0}, version=current.version)
        monkeypatch.setattr(scores, "score_lead", counting)
        assert scores.rescore(system, created["id"]) is True
        assert system.get("leads", created["id"])["score"] == 15
    assert calls == [created["id"]]  # the score write did not recompute it again


# --------------------------------------------------------------- 8, 9: conversion


def test_conversion_of_a_deactivated_owners_lead_gives_records_to_the_converter(sales_app):
    from bastion.db import db
    from bastion.models import User

    with service_as(sales_app, None) as system:
        lead_id = system.create(
            "leads",
            {"last_name": "Orphan", "company": "Orphan Works", "owner": user_id(sales_app, NINA)},
        ).id
    with sales_app.app_context():
        db.session.get(User, user_id(sales_app, NINA)).active = False
        db.session.commit()
    response = sales_app.test_client().post(
        f"/api/v1/leads/{lead_id}/convert",
        json={"create_opportunity": True},
        headers=bearer(sales_app, MARIA),
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    maria = user_id(sales_app, MARIA)
    with service_as(sales_app, None) as system:
        assert system.get("accounts", body["account_id"])["owner"] == maria
        assert system.get("contacts", body["contact_id"])["owner"] == maria
        assert system.get("opportunities", body["opportunity_id"])["owner"] == maria


def test_a_contact_of_another_account_is_refused(sales_app):
    with service_as(sales_app, SAM) as sam:
        chosen = sam.create("accounts", {"name": "Chosen AG"}).id
        other = sam.create("accounts", {"name": "Other AG"}).id
        contact = sam.create("contacts", {"last_name": "Elsewhere", "account": other}).id
    created = new_lead(sales_app, company="Unrelated", email="x@unrelated.example")
    api = sales_app.test_client()
    url = f"/api/v1/leads/{created['id']}/convert"
    headers = bearer(sales_app, SAM)
    refused = api.post(url, json={"account_id": chosen, "contact_id": contact}, headers=headers)
    assert refused.status_code == 422, refused.get_json()
    assert "another account" in refused.get_json()["errors"]["contact_id"]
    assert lead(sales_app, created["id"])["status"] == "new"  # rolled back
    linked = api.post(url, json={"account_id": other, "contact_id": contact}, headers=headers)
    assert linked.status_code == 200, linked.get_json()


# --------------------------------------------------------------- 10: the page's choices


def test_the_page_refuses_a_choice_that_is_no_record(sales_app):
    created = new_lead(sales_app, company="Choice Ltd")
    client = client_as(sales_app, SAM)
    path = f"/sales/leads/{created['id']}/convert"
    for bad in ("abc", "-1", "0"):
        form = {"csrf_token": token(client, path), "account": bad, "contact": "new"}
        page = client.post(path, data=form)
        assert page.status_code == 422, bad
        assert "Choose a new account or one of the accounts offered" in page.get_data(as_text=True)
    with service_as(sales_app, None) as system:
        assert system.count("accounts") == 0


# --------------------------------------------------------------- 13: assignment rules


def test_assignment_rules_check_the_field_and_warn_about_a_missing_team(sales_app):
    from bastion.db import db
    from bastion.models import Team

    admin = client_as(sales_app, ADMIN)
    data = {"csrf_token": token(admin, ASSIGNMENT), "active": "true", "name": "Big",
            "position": "1", "method": "territory", "territory_field": "employees",
            "territory_value": "10", "assignee": SAM}  # fmt: skip
    bad = admin.post(ASSIGNMENT, data=data)
    assert bad.status_code == 422 and "does not hold a territory" in bad.get_data(as_text=True)
    data = {"csrf_token": token(admin, ASSIGNMENT), "active": "true", "name": "North",
            "position": "2", "method": "round_robin", "team": "Sales North"}  # fmt: skip
    assert admin.post(ASSIGNMENT, data=data).status_code == 303
    assert 'data-warning="team"' not in admin.get(ASSIGNMENT).get_data(as_text=True)
    with sales_app.app_context():
        team = db.session.query(Team).filter_by(name="Sales North").one()
        team.name = "Northern Sales"
        db.session.commit()
    page = admin.get(ASSIGNMENT).get_data(as_text=True)
    assert 'data-warning="team"' in page and "There is no team named" in page


# --------------------------------------------------------------- 11: two conversions at once


def test_the_second_of_two_conversions_hears_converted_already(sales_app):
    from bastion.api import Conflict
    from bastion_sales.leads.conversion import convert

    created = new_lead(sales_app, company="Twice Ltd", email="twice@example.com")
    with service_as(sales_app, SAM) as sam:
        stale = sam.get("leads", created["id"])  # the second tab read it first
    first = sales_app.test_client().post(
        f"/api/v1/leads/{created['id']}/convert", json={}, headers=bearer(sales_app, SAM)
    )
    assert first.status_code == 201
    with service_as(sales_app, SAM) as sam:
        real_get = sam.get
        reads: list[int] = []

        def get(object_name, record_id, **options):
            if object_name == "leads" and not reads:
                reads.append(record_id)
                return stale
            return real_get(object_name, record_id, **options)

        sam.get = get
        with pytest.raises(Conflict) as refused:
            convert(sam, created["id"])
    assert "converted already" in refused.value.message
    with service_as(sales_app, None) as system:
        assert system.count("accounts") == 1
