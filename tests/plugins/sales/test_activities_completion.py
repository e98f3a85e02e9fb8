"""Completion time follows "done": filled in when marked done, cleared when re-opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.api import ValidationFailed
from tests.core.data.ui_support import form_values, page, post, stored
from tests.plugins.sales.conftest import SAM, bearer, client_as, service_as, user_id


def task(app, *, done: bool = True, completed_at: datetime | None = None) -> int:
    with service_as(app, SAM) as service:
        values = {"kind": "task", "subject": "Send the brochure", "done": done}
        if completed_at is not None:
            values["completed_at"] = completed_at
        return service.create("activities", values).id


def test_marking_done_fills_in_the_time_and_keeps_a_given_one(sales_app):
    filled = stored(sales_app, "activities", task(sales_app))
    assert filled["completed_at"] is not None
    given = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    kept = stored(sales_app, "activities", task(sales_app, completed_at=given))
    assert kept["completed_at"] == given


def test_un_marking_done_through_the_service_clears_the_time(sales_app):
    record_id = task(sales_app)
    with service_as(sales_app, SAM) as service:
        current = service.get("activities", record_id)
        service.update("activities", record_id, {"done": False}, version=current.version)
        reopened = service.get("activities", record_id)
    assert reopened.get("done") is False and reopened.get("completed_at") is None
    # A new completion time given with the re-opening is still refused by the core rule.
    with service_as(sales_app, SAM) as service:
        current = service.get("activities", record_id)
        service.update("activities", record_id, {"done": True}, version=current.version)
        current = service.get("activities", record_id)
        later = current.get("completed_at") + timedelta(hours=2)
        with pytest.raises(ValidationFailed):
            service.update(
                "activities",
                record_id,
                {"done": False, "completed_at": later},
                version=current.version,
            )


def test_un_marking_done_in_the_edit_form_clears_the_time(sales_app):
    record_id = task(sales_app)
    client = client_as(sales_app, SAM)
    form = page(client.get(f"/o/activities/{record_id}/edit")).find(
        "form", class_="form record-form"
    )
    unchecked = [(k, v) for k, v in form_values(form) if k != "done"]
    assert any(k == "completed_at" and v for k, v in unchecked)  # the form echoes it
    assert post(client, f"/o/activities/{record_id}/edit", unchecked).status_code == 303
    saved = stored(sales_app, "activities", record_id)
    assert saved["done"] is False and saved["completed_at"] is None


def test_un_marking_done_through_the_api_clears_the_time(sales_app):
    record_id = task(sales_app)
    headers = bearer(sales_app, SAM)
    client = sales_app.test_client()
    current = client.get(f"/api/v1/activities/{record_id}", headers=headers).get_json()
    answer = client.patch(
        f"/api/v1/activities/{record_id}",
        json={"version": current["version"], "done": False},
        headers=headers,
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["completed_at"] is None
    assert stored(sales_app, "activities", record_id)["owner"] == user_id(sales_app, SAM)
