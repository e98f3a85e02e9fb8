"""Leads UI after the walkthrough: the convert page preselects the likely duplicates, the
scoring page rescores open leads now (under the job lock), the rule forms' defaults and
choices, and the converted lead's panel linking to the records it became."""

from __future__ import annotations

import pytest

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import ADMIN, NINA, SAM, SVEN, client_as, service_as, user_id

pytestmark = pytest.mark.usefixtures("sales_app")
SCORING = "/sales/settings/scoring"
ASSIGNMENT = "/sales/settings/assignment"


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def make_lead(app, **values) -> int:
    with service_as(app, None) as system:
        base = {
            "first_name": "Grace",
            "last_name": "Hopper",
            "company": "Acme Bank",
            "email": "grace@acme.example",
            "owner": user_id(app, SAM),
        }
        return system.create("leads", {**base, **values}).id


def checked(html: str, input_id: str) -> bool:
    start = html.index(f'id="{input_id}"')
    tag = html[html.rindex("<input", 0, start) : html.index(">", start)]
    return " checked" in tag


# ------------------------------------------------------------------ L1: convert page


def test_convert_page_preselects_the_account_with_the_same_name(sales_app):
    with service_as(sales_app, None) as system:
        owner = user_id(sales_app, SAM)
        similar = system.create("accounts", {"name": "Acme Bank Holdings", "owner": owner}).id
        same = system.create("accounts", {"name": "ACME Bank ", "owner": owner}).id
        contact = system.create(
            "contacts",
            {"last_name": "Hopper", "email": "grace@acme.example", "account": same, "owner": owner},
        ).id
    lead_id = make_lead(sales_app)
    rep = client_as(sales_app, SAM)
    html = rep.get(f"/sales/leads/{lead_id}/convert").get_data(as_text=True)
    assert f'id="account-{similar}"' in html  # offered, not chosen
    assert checked(html, f"account-{same}")
    assert not checked(html, "account-new") and not checked(html, f"account-{similar}")
    assert checked(html, f"contact-{contact}")  # same email, of the chosen account
    # Submitting the page as shown links the existing records.
    form = {"csrf_token": token(rep, f"/sales/leads/{lead_id}/convert"),
            "account": str(same), "contact": str(contact)}  # fmt: skip
    assert rep.post(f"/sales/leads/{lead_id}/convert", data=form).status_code == 303
    with service_as(sales_app, None) as system:
        lead = system.get("leads", lead_id)
        assert lead["converted_account"] == same and lead["converted_contact"] == contact
        assert system.count("accounts") == 2


def test_convert_page_keeps_new_when_nothing_matches_exactly(sales_app):
    with service_as(sales_app, None) as system:
        owner = user_id(sales_app, SAM)
        other = system.create("accounts", {"name": "Umbrella"}).id
        system.create(
            "contacts",
            {"last_name": "Hopper", "email": "grace@acme.example", "account": other,
             "owner": owner},
        )  # fmt: skip
        similar = system.create("accounts", {"name": "Acme Bank Holdings", "owner": owner}).id
    lead_id = make_lead(sales_app)
    html = client_as(sales_app, SAM).get(f"/sales/leads/{lead_id}/convert").get_data(as_text=True)
    assert f'id="account-{similar}"' in html
    assert checked(html, "account-new")
    # The only contact with the email belongs to another account: not preselected.
    assert checked(html, "contact-new")


# ------------------------------------------------------------------ L2: scoring page


def banking_rule(app, points: int = 20) -> int:
    with service_as(app, None) as system:
        return system.create(
            "lead_scoring_rules",
            {"name": "Banking", "kind": "field_value", "field": "industry", "operator": "eq",
             "value": "Banking", "points": points, "active": True},
        ).id  # fmt: skip


def test_rescore_now_recalculates_open_leads_and_shows_counts(sales_app):
    rule_id = banking_rule(sales_app)
    bank = make_lead(sales_app, industry="Banking")
    make_lead(sales_app, last_name="Other", email="o@example.com", company="Other")
    done = make_lead(sales_app, last_name="Done", email="d@example.com", industry="Banking",
                     status="converted")  # fmt: skip
    with service_as(sales_app, None) as system:
        rule = system.get("lead_scoring_rules", rule_id)
        system.update("lead_scoring_rules", rule_id, {"points": 35}, version=rule.version)
        assert system.get("leads", bank)["score"] == 20  # stale until rescored
    admin = client_as(sales_app, ADMIN)
    page = admin.get(SCORING).get_data(as_text=True)
    assert 'id="rescore-now"' in page and "`" not in page
    response = admin.post(
        f"{SCORING}/rescore", data={"csrf_token": token(admin, SCORING)}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "Rescored 2 open leads; 1 changed." in response.get_data(as_text=True)
    with service_as(sales_app, None) as system:
        assert system.get("leads", bank)["score"] == 35
        assert system.get("leads", done)["score"] == 20  # converted leads are left alone


def test_rescore_now_is_refused_while_another_run_holds_the_lock(sales_app):
    from bastion.api import job_lock

    bank = make_lead(sales_app, industry="Banking")
    banking_rule(sales_app)
    admin = client_as(sales_app, ADMIN)
    csrf = token(admin, SCORING)
    with sales_app.app_context(), job_lock("sales-rescore"):
        response = admin.post(f"{SCORING}/rescore", data={"csrf_token": csrf},
                              follow_redirects=True)  # fmt: skip
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Another rescoring run is in progress" in html and "Rescored" not in html
    with service_as(sales_app, None) as system:
        assert system.get("leads", bank)["score"] == 0  # nothing was done


def test_rescore_now_sends_large_runs_to_the_command(sales_app, monkeypatch):
    from bastion_sales.leads import rules_views

    monkeypatch.setattr(rules_views, "WEB_LIMIT", 1)
    make_lead(sales_app)
    make_lead(sales_app, last_name="Two", email="two@example.com")
    admin = client_as(sales_app, ADMIN)
    response = admin.post(f"{SCORING}/rescore", data={"csrf_token": token(admin, SCORING)},
                          follow_redirects=True)  # fmt: skip
    html = response.get_data(as_text=True)
    assert "There are 2 open leads" in html and "bastion sales rescore" in html


def test_rescore_now_needs_sales_configure(sales_app):
    rep = client_as(sales_app, SAM)
    csrf = token(rep, "/")
    assert rep.post(f"{SCORING}/rescore", data={"csrf_token": csrf}).status_code == 403


def test_rule_forms_mark_fields_by_kind(sales_app):
    admin = client_as(sales_app, ADMIN)
    html = admin.get(SCORING).get_data(as_text=True)
    assert 'data-rule-switch="kind"' in html
    assert 'data-field="days" data-show-for="inactivity"' in html
    assert 'data-field="field" data-show-for="field_value"' in html
    html = admin.get(ASSIGNMENT).get_data(as_text=True)
    assert 'data-rule-switch="method"' in html
    assert 'data-field="team" data-show-for="round_robin"' in html


# ------------------------------------------------------------------ L2: assignment page


def position_default(html: str) -> str:
    form = html.split('id="add-heading"')[1]
    start = form.index('name="position"')
    tag = form[form.rindex("<input", 0, start) : form.index(">", start)]
    return tag.split('value="')[1].split('"')[0]


def test_assignment_form_defaults_after_the_last_rule_and_offers_users(sales_app):
    admin = client_as(sales_app, ADMIN)
    assert position_default(admin.get(ASSIGNMENT).get_data(as_text=True)) == "10"
    with service_as(sales_app, None) as system:
        for position in (10, 35):
            system.create(
                "lead_assignment_rules",
                {"name": f"R{position}", "position": position, "method": "round_robin",
                 "team": "Sales North", "active": True},
            )  # fmt: skip
    html = admin.get(ASSIGNMENT).get_data(as_text=True)
    assert position_default(html) == "45"
    # "Assign to" is a select of the teams' active members, by email.
    assert '<select id="rule-assignee" name="assignee"' in html
    for email in (SAM, NINA, SVEN):
        assert f'<option value="{email}">' in html
    form = {"csrf_token": token(admin, ASSIGNMENT), "name": "Berlin", "position": "5",
            "method": "territory", "territory_field": "city", "territory_value": "Berlin",
            "assignee": NINA, "active": "true"}  # fmt: skip
    response = admin.post(ASSIGNMENT, data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    with service_as(sales_app, None) as system:
        rule = system.query("lead_assignment_rules", sort="position").records[0]
        assert rule["assignee"] == NINA
    edit = admin.get(f"{ASSIGNMENT}/{rule.id}").get_data(as_text=True)
    assert f'<option value="{NINA}" selected>' in edit


# ------------------------------------------------------------------ L3: converted lead


def test_converted_lead_links_to_the_records_it_became(sales_app):
    lead_id = make_lead(sales_app)
    rep = client_as(sales_app, SAM)
    before = rep.get(f"/o/leads/{lead_id}").get_data(as_text=True)
    assert 'id="lead-converted"' not in before
    form = {"csrf_token": token(rep, f"/sales/leads/{lead_id}/convert"), "account": "new",
            "contact": "new", "create_opportunity": "true", "opportunity_name": "Core banking",
            "close_date": "2027-01-31"}  # fmt: skip
    assert rep.post(f"/sales/leads/{lead_id}/convert", data=form).status_code == 303
    with service_as(sales_app, None) as system:
        lead = system.get("leads", lead_id)
    html = rep.get(f"/o/leads/{lead_id}").get_data(as_text=True)
    panel = html.split('id="lead-converted"')[1].split("</div>")[0]
    assert "Converted on" in panel
    assert f'href="/o/accounts/{lead["converted_account"]}">Acme Bank</a>' in panel
    assert f'href="/o/contacts/{lead["converted_contact"]}"' in panel
    assert f'href="/o/opportunities/{lead["converted_opportunity"]}">Core banking</a>' in panel
