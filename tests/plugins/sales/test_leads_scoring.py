"""Lead scoring through HTTP: rules edited on the settings page, scores recalculated when
the lead or its activities change, contributions shown on the lead, the rescore command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import ADMIN, SAM, SVEN, bearer, client_as, service_as

SCORING = "/sales/settings/scoring"


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def add_rule(client, **fields):
    data = {"csrf_token": token(client, SCORING), "active": "true", **fields}
    return client.post(SCORING, data=data)


def standard_rules(client) -> None:
    for fields in (
        {"name": "Banking", "kind": "field_value", "field": "industry", "operator": "eq",
         "value": "Banking", "points": "20"},
        {"name": "Meeting held", "kind": "activity", "activity_kind": "meeting", "points": "15"},
        {"name": "Gone quiet", "kind": "inactivity", "days": "30", "points": "-10"},
    ):  # fmt: skip
        response = add_rule(client, **fields)
        assert response.status_code == 303, response.get_data(as_text=True)[:2000]


def lead_score(app, lead_id: int) -> int:
    with service_as(app, None) as system:
        return system.get("leads", lead_id)["score"]


def test_admin_edits_rules_and_bad_rules_are_refused(sales_app):
    admin = client_as(sales_app, ADMIN)
    page = admin.get(SCORING)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<option value="industry">Industry</option>' in html  # fields by label
    assert 'href="/sales/settings"' in html  # back to the sales settings page
    standard_rules(admin)
    listed = admin.get(SCORING).get_data(as_text=True)
    assert "Banking" in listed and "Meeting held" in listed and "+20" in listed
    # A field rule needs an existing, comparable lead field and a fitting value.
    bad = add_rule(admin, name="X", kind="field_value", field="converted_account",
                   operator="eq", value="1", points="5")  # fmt: skip
    assert bad.status_code == 422 and "a rule cannot test it" in bad.get_data(as_text=True)
    bad = add_rule(admin, name="X", kind="field_value", field="industry", operator="eq",
                   value="Bakery", points="5")  # fmt: skip
    assert bad.status_code == 422 and "no option" in bad.get_data(as_text=True)
    assert add_rule(admin, name="X", kind="activity", points="5").status_code == 422
    assert add_rule(admin, name="X", kind="inactivity", points="5").status_code == 422
    # Edit and delete.
    with service_as(sales_app, None) as system:
        rule = system.query("lead_scoring_rules", sort="id").records[0]
    path = f"{SCORING}/{rule.id}"
    form = {"csrf_token": token(admin, path), "version": str(rule.version), "name": "Banks",
            "kind": "field_value", "field": "industry", "operator": "eq", "value": "Banking",
            "points": "25", "active": "true"}  # fmt: skip
    assert admin.post(path, data=form).status_code == 303
    with service_as(sales_app, None) as system:
        assert system.get("lead_scoring_rules", rule.id)["points"] == 25
    stale = admin.post(path, data=form)
    assert stale.status_code == 409
    # Without a version: a clear 422, nothing saved.
    unversioned = admin.post(path, data={**form, "version": "", "points": "1"})
    assert unversioned.status_code == 422
    assert "did not say which version" in unversioned.get_data(as_text=True)
    # Delete sends the version shown on the list: a stale or missing one is refused.
    listed = admin.get(SCORING).get_data(as_text=True)
    assert f'name="version" value="{rule.version + 1}"' in listed
    csrf = token(admin, SCORING)
    missing = admin.post(f"{path}/delete", data={"csrf_token": csrf})
    assert missing.status_code == 422 and "did not say which version" in missing.get_data(
        as_text=True
    )
    stale = admin.post(f"{path}/delete", data={"csrf_token": csrf, "version": str(rule.version)})
    assert stale.status_code == 409
    deleted = admin.post(
        f"{path}/delete", data={"csrf_token": csrf, "version": str(rule.version + 1)}
    )
    assert deleted.status_code == 303
    with service_as(sales_app, None) as system:
        assert system.count("lead_scoring_rules") == 2


def test_the_settings_page_needs_sales_configure(sales_app):
    rep = client_as(sales_app, SAM)
    assert rep.get(SCORING).status_code == 403
    assert rep.get("/sales/settings/assignment").status_code == 403


def test_score_follows_the_lead_and_its_activities(sales_app):
    standard_rules(client_as(sales_app, ADMIN))
    headers = bearer(sales_app, SAM)
    api = sales_app.test_client()
    created = api.post(
        "/api/v1/leads",
        json={"last_name": "Byron", "company": "Bank of Ada", "industry": "Banking"},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    lead = created.get_json()
    assert lead["score"] == 20
    # Editing the lead recalculates it.
    changed = api.patch(
        f"/api/v1/leads/{lead['id']}",
        json={"version": lead["version"], "industry": "Retail"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["score"] == 0
    # A user cannot write the score.
    refused = api.patch(
        f"/api/v1/leads/{lead['id']}",
        json={"version": changed.get_json()["version"], "score": 99},
        headers=headers,
    )
    assert refused.status_code == 422
    # Logging a meeting held, through the API, adds the activity rule's points.
    meeting = api.post(
        "/api/v1/activities",
        json={
            "kind": "meeting",
            "subject": "First meeting",
            "done": True,
            "related_to": {"object": "leads", "id": lead["id"]},
        },
        headers=headers,
    )
    assert meeting.status_code == 201, meeting.get_json()
    assert lead_score(sales_app, lead["id"]) == 15
    # Deleting it takes them away again.
    gone = api.delete(
        f"/api/v1/activities/{meeting.get_json()['id']}", headers=bearer(sales_app, ADMIN)
    )
    assert gone.status_code in (200, 204)
    assert lead_score(sales_app, lead["id"]) == 0
    # An open task is no meeting held; a planned meeting marked done later is.
    planned = api.post(
        "/api/v1/activities",
        json={"kind": "meeting", "subject": "Demo", "related_to": f"leads:{lead['id']}"},
        headers=headers,
    ).get_json()
    assert lead_score(sales_app, lead["id"]) == 0
    done = api.patch(
        f"/api/v1/activities/{planned['id']}",
        json={"version": planned["version"], "done": True},
        headers=headers,
    )
    assert done.status_code == 200, done.get_json()
    assert lead_score(sales_app, lead["id"]) == 15
    # The lead's page shows each contributing rule and the total.
    page = client_as(sales_app, SAM).get(f"/o/leads/{lead['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="lead-score"' in html and "Meeting held" in html and "+15" in html
    assert "Banking" not in html.split('id="lead-score"')[1].split("</table>")[0]


def test_rule_edits_apply_at_the_next_rescore(sales_app, cli):
    admin = client_as(sales_app, ADMIN)
    standard_rules(admin)
    with service_as(sales_app, None) as system:
        quiet = system.create("leads", {"last_name": "Quiet", "industry": "Banking"}).id
        converted = system.create(
            "leads", {"last_name": "Done", "industry": "Banking", "status": "converted"}
        ).id
    assert lead_score(sales_app, quiet) == 20
    # Forty days pass without activity.
    with sales_app.app_context():
        from bastion.data.catalog import current_catalog
        from bastion.db import db

        table = current_catalog().table("leads")
        past = datetime.now(UTC) - timedelta(days=40)
        db.session.execute(update(table).values(created_at=past))
        db.session.commit()
    result = cli("sales", "rescore")
    assert result.exit_code == 0, result.output
    assert "Rescored 1 open leads; 1 changed." in result.output
    assert lead_score(sales_app, quiet) == 10
    assert lead_score(sales_app, converted) == 20  # converted leads are left alone
    # The panel computes from the current rules and says when the stored score is older.
    with service_as(sales_app, None) as system:
        rule = system.query("lead_scoring_rules", sort="id").records[0]
        system.update("lead_scoring_rules", rule.id, {"points": 30}, version=rule.version)
    html = admin.get(f"/o/leads/{quiet}").get_data(as_text=True)
    assert 'data-score="20"' in html and "The stored score (10)" in html
    assert cli("sales", "rescore").exit_code == 0
    assert lead_score(sales_app, quiet) == 20


def test_reps_see_scores_only_of_leads_in_their_scope(sales_app):
    with service_as(sales_app, None) as system:
        from tests.plugins.sales.conftest import user_id

        lead = system.create("leads", {"last_name": "Secret", "owner": user_id(sales_app, SAM)})
    assert client_as(sales_app, SVEN).get(f"/o/leads/{lead.id}").status_code == 404


pytestmark = pytest.mark.usefixtures("sales_app")


def test_the_panel_does_not_tell_the_value_of_a_hidden_field(sales_app):
    from tests.core.data.conftest import set_field_access
    from tests.plugins.sales.conftest import user_id

    standard_rules(client_as(sales_app, ADMIN))
    with service_as(sales_app, None) as system:
        lead = system.create(
            "leads",
            {"last_name": "Hidden", "industry": "Banking", "owner": user_id(sales_app, SAM)},
        )
    set_field_access(sales_app, "sales_rep", "leads", "industry", "hidden")
    html = client_as(sales_app, SAM).get(f"/o/leads/{lead.id}").get_data(as_text=True)
    panel = html.split('id="lead-score"')[1].split("</table>")[0]
    assert "Rules on fields you cannot see" in panel and "+20" in panel
    assert "Banking" not in panel
    # Not even the rule's id: the rules themselves are not for reps either.
    with service_as(sales_app, None) as system:
        banking = system.query("lead_scoring_rules", sort="id").records[0].id
    assert f'data-rule="{banking}"' not in panel and "data-rule=" not in panel
    assert "sales-score__hidden" in panel
    api = sales_app.test_client()
    rules = api.get("/api/v1/lead_scoring_rules", headers=bearer(sales_app, SAM))
    assert rules.status_code == 403
    assert (
        api.get(f"/api/v1/lead_scoring_rules/{banking}", headers=bearer(sales_app, SAM)).status_code
        == 403
    )
    admin = client_as(sales_app, ADMIN).get(f"/o/leads/{lead.id}").get_data(as_text=True)
    assert "industry is Banking" in admin
