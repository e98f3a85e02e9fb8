"""Lead conversion through HTTP (page and API): new or existing account and contact, an
optional opportunity, one transaction, refused twice or outside the user's scope."""

from __future__ import annotations

import pytest

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import (
    MARIA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)

pytestmark = pytest.mark.usefixtures("sales_app")


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def make_lead(app, owner: str = SAM, **values) -> int:
    with service_as(app, None) as system:
        return system.create(
            "leads",
            {
                "first_name": "Grace",
                "last_name": "Hopper",
                "company": "Acme Bank",
                "email": "grace@acme.example",
                "phone": "+49 30 1234567",
                "industry": "Banking",
                "city": "Berlin",
                "country": "Germany",
                "title": "CTO",
                "owner": user_id(app, owner),
                **values,
            },
        ).id


def get(app, object_name: str, record_id: int):
    with service_as(app, None) as system:
        return system.get(object_name, record_id)


def count(app, object_name: str) -> int:
    with service_as(app, None) as system:
        return system.count(object_name)


def convert(app, lead_id: int, body, email: str = SAM):
    return app.test_client().post(
        f"/api/v1/leads/{lead_id}/convert", json=body, headers=bearer(app, email)
    )


def test_api_converts_into_new_records_with_an_opportunity(sales_app):
    lead_id = make_lead(sales_app)
    response = convert(
        sales_app,
        lead_id,
        {
            "create_opportunity": True,
            "opportunity": {
                "name": "Core banking",
                "amount": "12000.50",
                "close_date": "2027-01-31",
            },
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) >= {"account_id", "contact_id", "opportunity_id"}
    account = get(sales_app, "accounts", body["account_id"])
    assert account["name"] == "Acme Bank" and account["industry"] == "Banking"
    assert account["city"] == "Berlin" and account["owner"] == user_id(sales_app, SAM)
    contact = get(sales_app, "contacts", body["contact_id"])
    assert (contact["last_name"], contact["email"]) == ("Hopper", "grace@acme.example")
    assert contact["account"] == account.id
    opportunity = get(sales_app, "opportunities", body["opportunity_id"])
    assert opportunity["name"] == "Core banking"
    assert str(opportunity["amount"].amount) == "12000.50"
    assert opportunity["account"] == account.id and opportunity["primary_contact"] == contact.id
    assert opportunity["lead"] == lead_id
    lead = get(sales_app, "leads", lead_id)
    assert lead["status"] == "converted" and lead["converted_at"] is not None
    assert (lead["converted_account"], lead["converted_contact"]) == (account.id, contact.id)
    assert lead["converted_opportunity"] == opportunity.id
    # Twice is refused, with a clear message, and nothing more is created.
    again = convert(sales_app, lead_id, {"create_opportunity": True})
    assert again.status_code == 409
    assert "converted already" in again.get_json()["detail"]
    assert count(sales_app, "accounts") == 1 and count(sales_app, "opportunities") == 1


def test_api_without_opportunity_answers_null(sales_app):
    lead_id = make_lead(sales_app, company="Solo GmbH", email="solo@example.com")
    response = convert(sales_app, lead_id, {})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["opportunity_id"] is None
    assert count(sales_app, "opportunities") == 0


def test_duplicate_account_is_offered_and_linked(sales_app):
    with service_as(sales_app, SAM) as sam:
        existing = sam.create("accounts", {"name": "ACME Bank"}).id
    lead_id = make_lead(sales_app)
    found = convert(sales_app, lead_id, {"create_opportunity": False})
    assert found.status_code == 409, found.get_json()
    problem = found.get_json()
    assert [m["id"] for m in problem["matches"]] == [existing]
    assert problem["matches"][0]["object"] == "accounts"
    assert count(sales_app, "contacts") == 0 and get(sales_app, "leads", lead_id)["status"] == "new"
    linked = convert(sales_app, lead_id, {"account_id": existing})
    assert linked.status_code == 201, linked.get_json()
    assert linked.get_json()["account_id"] == existing
    assert count(sales_app, "accounts") == 1
    assert get(sales_app, "contacts", linked.get_json()["contact_id"])["account"] == existing


def test_duplicate_account_can_be_created_anyway(sales_app):
    with service_as(sales_app, SAM) as sam:
        sam.create("accounts", {"name": "Acme Bank"})
    lead_id = make_lead(sales_app)
    response = convert(sales_app, lead_id, {"allow_duplicates": True})
    assert response.status_code == 201
    assert count(sales_app, "accounts") == 2


def test_the_page_offers_the_existing_account_and_converts(sales_app):
    with service_as(sales_app, SAM) as sam:
        existing = sam.create("accounts", {"name": "Acme Bank", "city": "Berlin"}).id
    lead_id = make_lead(sales_app)
    client = client_as(sales_app, SAM)
    detail = client.get(f"/o/leads/{lead_id}").get_data(as_text=True)
    assert f"/sales/leads/{lead_id}/convert" in detail  # the record action
    path = f"/sales/leads/{lead_id}/convert"
    page = client.get(path).get_data(as_text=True)
    assert "Link to existing account “Acme Bank”" in page
    form = {"csrf_token": token(client, path), "account": str(existing), "contact": "new"}
    response = client.post(path, data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    assert response.headers["Location"].endswith(f"/o/accounts/{existing}")
    lead = get(sales_app, "leads", lead_id)
    assert lead["converted_account"] == existing and lead["converted_opportunity"] is None
    # Converted: no more "Convert" action, and the page sends the user back.
    detail = client.get(f"/o/leads/{lead_id}").get_data(as_text=True)
    assert f"/sales/leads/{lead_id}/convert" not in detail
    assert client.get(path).status_code == 303


def test_the_page_with_a_new_opportunity_opens_it(sales_app):
    lead_id = make_lead(sales_app, company="Globex", email="g@globex.example")
    client = client_as(sales_app, SAM)
    path = f"/sales/leads/{lead_id}/convert"
    form = {
        "csrf_token": token(client, path),
        "account": "new",
        "contact": "new",
        "create_opportunity": "true",
        "opportunity_name": "Globex deal",
        "amount": "500",
        "close_date": "2027-02-01",
    }
    response = client.post(path, data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    opportunity_id = get(sales_app, "leads", lead_id)["converted_opportunity"]
    assert response.headers["Location"].endswith(f"/o/opportunities/{opportunity_id}")


def test_a_failure_rolls_everything_back(sales_app):
    lead_id = make_lead(sales_app)
    response = convert(
        sales_app,
        lead_id,
        {"create_opportunity": True, "opportunity": {"name": "Bad", "amount": "-5"}},
    )
    assert response.status_code == 422, response.get_json()
    assert "amount" in response.get_json()["errors"]
    assert count(sales_app, "accounts") == 0 and count(sales_app, "contacts") == 0
    assert count(sales_app, "opportunities") == 0
    lead = get(sales_app, "leads", lead_id)
    assert lead["status"] == "new" and lead["converted_at"] is None
    # The page keeps what was typed and says what is wrong.
    client = client_as(sales_app, SAM)
    path = f"/sales/leads/{lead_id}/convert"
    form = {"csrf_token": token(client, path), "account": "new", "contact": "new",
            "create_opportunity": "true", "opportunity_name": "Kept", "amount": "-5"}  # fmt: skip
    page = client.post(path, data=form)
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and 'value="Kept"' in html
    assert 'name="create_opportunity" value="true" checked' in html
    form.pop("create_opportunity")
    form["amount"] = "abc"  # ignored: no opportunity asked; the account fails instead
    form["account"] = "999999"
    page = client.post(path, data=form)
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "no account 999999" in html
    assert 'name="create_opportunity" value="true" checked' not in html
    assert count(sales_app, "accounts") == 0


def test_bad_input_is_a_422_problem(sales_app):
    lead_id = make_lead(sales_app)
    for body in (
        {"account_id": "x"},
        {"create_opportunity": "yes"},
        {"opportunity": {"name": "A", "amount": 10.5}},
        {"surprise": 1},
        [1, 2],
        {"account_id": 999999},
        {"contact_id": 999999},
    ):
        response = convert(sales_app, lead_id, body)
        assert response.status_code == 422, (body, response.get_json())
        assert response.get_json()["errors"]
    assert count(sales_app, "accounts") == 0


def test_a_rep_cannot_convert_another_teams_lead(sales_app):
    lead_id = make_lead(sales_app, owner=SAM)
    assert convert(sales_app, lead_id, {}, email=SVEN).status_code == 404
    sven = client_as(sales_app, SVEN)
    assert sven.get(f"/sales/leads/{lead_id}/convert").status_code == 404
    assert count(sales_app, "accounts") == 0
    # Their manager may.
    response = convert(sales_app, lead_id, {}, email=MARIA)
    assert response.status_code == 201, response.get_json()
    assert get(sales_app, "accounts", response.get_json()["account_id"])["owner"] == user_id(
        sales_app, SAM
    )


def test_a_duplicate_found_at_conversion_is_offered_on_the_page(sales_app):
    with service_as(sales_app, SAM) as sam:
        holding = sam.create(
            "accounts", {"name": "Acme Holding", "website": "https://acme.example"}
        ).id
    lead_id = make_lead(sales_app, website="http://www.acme.example/")
    client = client_as(sales_app, SAM)
    path = f"/sales/leads/{lead_id}/convert"
    form = {"csrf_token": token(client, path), "account": "new", "contact": "new"}
    page = client.post(path, data=form)
    html = page.get_data(as_text=True)
    assert page.status_code == 409, html[:2000]
    assert "A similar account exists already" in html
    assert f'value="{holding}"' in html and 'id="convert-anyway"' in html
    assert count(sales_app, "accounts") == 1
    anyway = client.post(path, data={**form, "create_anyway": "1"})
    assert anyway.status_code == 303
    assert count(sales_app, "accounts") == 2
