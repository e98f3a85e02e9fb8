"""The forecast page's defaults and reading aids (UX review B4): it looks ahead (this
quarter and the next three, or this month and the next five), leaves out rows whose
amounts are all zero, links owners to their opportunities and marks the columns a phone
folds away. The JSON API keeps its documented default (the current quarter).
"""

from __future__ import annotations

from datetime import date

import pytest

from bastion.api import Filter
from bastion_sales.forecast.periods import Period, period_of, period_range, utc_today
from tests.plugins.sales.conftest import MARIA, NINA, SAM, client_as, service_as, user_id
from tests.plugins.sales.test_forecast_http import M1, QUARTER, _api, make_deals


@pytest.fixture
def deals(sales_app):
    return make_deals(sales_app)


def test_ranges_look_ahead_only_when_asked():
    today = date(2026, 11, 5)
    assert [p.key for p in period_range("quarter", today=today, ahead=True)] == [
        "2026-Q4",
        "2027-Q1",
        "2027-Q2",
        "2027-Q3",
    ]
    months = [p.key for p in period_range("month", today=today, ahead=True)]
    assert months == ["2026-11", "2026-12", "2027-01", "2027-02", "2027-03", "2027-04"]
    # An explicit range wins over the default either way.
    assert [p.key for p in period_range("quarter", "2026-Q1", ahead=True)] == ["2026-Q1"]
    assert [p.key for p in period_range("quarter", today=today)] == ["2026-Q4"]


def test_the_page_defaults_to_the_coming_quarters_the_api_to_this_one(sales_app, deals):
    html = client_as(sales_app, SAM).get("/sales/forecast").get_data(as_text=True)
    for ahead in range(4):
        assert f'data-period="{Period("quarter", QUARTER.index + ahead).key}"' in html
    assert f'data-period="{Period("quarter", QUARTER.index + 4).key}"' not in html
    assert 'data-period="all"' in html and "2,000.09" in html
    months = client_as(sales_app, SAM).get("/sales/forecast?period=month")
    first = period_of(utc_today(), "month")
    assert f'data-period="{first.key}"' in months.get_data(as_text=True)
    assert f'data-period="{Period("month", first.index + 5).key}"' in months.get_data(as_text=True)
    data = _api(sales_app, SAM)
    assert data["from"] == data["to"] == QUARTER.key


def test_rows_with_only_zero_amounts_are_left_out(sales_app, deals):
    nina = user_id(sales_app, NINA)
    with service_as(sales_app, None) as system:
        (stage,) = system.query(
            "pipeline_stages",
            filters=[Filter("pipeline", "eq", deals["pipeline"]), Filter("name", "eq", "Qualify")],
        ).records
        system.create(
            "opportunities",
            {
                "name": "Nothing yet",
                "owner": nina,
                "amount": {"amount": "0.00", "currency": "EUR"},
                "close_date": date(M1.year, M1.number, 20).isoformat(),
                "pipeline": deals["pipeline"],
                "stage": stage.id,
            },
        )
    # The API still reports the row (its count matters there) ...
    rows = _api(sales_app, MARIA)["periods"][0]["rows"]
    assert any(row["owner_id"] == nina for row in rows)
    # ... the page does not.
    html = client_as(sales_app, MARIA).get("/sales/forecast").get_data(as_text=True)
    assert f'data-group="{nina}"' not in html
    assert f'data-group="{deals["sam"]}"' in html


def test_owners_link_to_their_opportunities_and_detail_columns_fold(sales_app, deals):
    html = client_as(sales_app, SAM).get("/sales/forecast").get_data(as_text=True)
    assert f"/opportunities?owner={deals['sam']}" in html
    assert 'id="forecast-all-columns"' in html and "sales-forecast__detail" in html
    team = client_as(sales_app, MARIA).get("/sales/forecast?by=team").get_data(as_text=True)
    assert "?owner=" not in team
