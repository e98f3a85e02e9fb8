"""Ids and versions typed into the sales forms: "²" passes str.isdigit() but not int(),
and 20 digits overflow a column. Each is a clear refusal, never a 500."""

from __future__ import annotations

import pytest

from tests.plugins.sales.conftest import MARIA, SAM, client_as
from tests.plugins.sales.test_forecast_http import _post_quota
from tests.plugins.sales.test_leads_conversion import make_lead, token

ODD_NUMBERS = ["²", "٣", "9" * 20, "-1", "0"]


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_convert_page_refuses_an_odd_account_choice(sales_app, odd):
    lead_id = make_lead(sales_app)
    client = client_as(sales_app, SAM)
    path = f"/sales/leads/{lead_id}/convert"
    form = {"csrf_token": token(client, path), "account": odd, "contact": "new"}
    response = client.post(path, data=form)
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert "Choose a new account or one of the accounts offered." in response.get_data(as_text=True)


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_quota_form_refuses_an_odd_owner(sales_app, odd):
    response = _post_quota(client_as(sales_app, MARIA), odd, "2026-Q4", "100.00")
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert "Choose whose quota this is." in response.get_data(as_text=True)
