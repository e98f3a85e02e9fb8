"""Forecast, quotas and the sales dashboard cards through HTTP, on the demo's teams.

Known deals in the current quarter's first two months (amounts in EUR):

SAM (Sales North)                        SVEN (Sales South)
  1000.10 @10% pipeline  month 1           1000.10 @90% commit   month 1
   333.33 @25% best case month 1 (x2)       333.33 @10% pipeline month 2
   333.33 @90% commit    month 2            200.00 won           month 1
   500.00 @25% omitted   month 2
   777.77 won            month 2
   250.00 lost           month 1
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from bastion_sales.forecast.periods import current_quarter, period_of, utc_today
from tests.conftest import csrf_token
from tests.plugins.sales.conftest import (
    MARIA,
    NINA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)

QUARTER = current_quarter()
M1, M2 = QUARTER.months()[0], QUARTER.months()[1]


def _eur(amount: str) -> dict:
    return {"amount": amount, "currency": "EUR"}


@pytest.fixture
def deals(sales_app):
    return make_deals(sales_app)


def make_deals(sales_app) -> dict:
    """The deals of the module docstring; the ids of Sam, Sven and the pipeline."""
    sam, sven = user_id(sales_app, SAM), user_id(sales_app, SVEN)
    with service_as(sales_app, None) as system:
        pipeline = system.create(
            "pipelines", {"name": "Forecast test", "is_default": True, "active": True}
        ).id
        stages = {}
        for position, (name, probability, outcome, category) in enumerate(
            [
                ("Qualify", 10, "open", "pipeline"),
                ("Propose", 50, "open", "best_case"),
                ("Won", 100, "won", "commit"),
                ("Lost", 0, "lost", "omitted"),
            ]
        ):
            stages[name] = system.create(
                "pipeline_stages",
                {
                    "name": name,
                    "pipeline": pipeline,
                    "position": position,
                    "probability": probability,
                    "outcome": outcome,
                    "forecast_category": category,
                },
            ).id
        rows = [
            (sam, "1000.10", 10, "pipeline", "Qualify", M1),
            (sam, "333.33", 25, "best_case", "Propose", M1),
            (sam, "333.33", 25, "best_case", "Propose", M1),
            (sam, "333.33", 90, "commit", "Propose", M2),
            (sam, "500.00", 25, "omitted", "Propose", M2),
            (sam, "777.77", None, None, "Won", M2),
            (sam, "250.00", None, None, "Lost", M1),
            (sven, "1000.10", 90, "commit", "Propose", M1),
            (sven, "333.33", 10, "pipeline", "Qualify", M2),
            (sven, "200.00", None, None, "Won", M1),
        ]
        for number, (owner, amount, probability, category, stage, month) in enumerate(rows):
            values = {
                "name": f"Deal {number}",
                "owner": owner,
                "amount": _eur(amount),
                "close_date": date(month.year, month.number, 10 + number).isoformat(),
                "pipeline": pipeline,
                "stage": stages[stage],
            }
            if probability is not None:
                values["probability"] = probability
                values["forecast_category"] = category
            if stage == "Lost":
                values["close_reason"] = "Budget cut"
            system.create("opportunities", values)
    return {"sam": sam, "sven": sven, "pipeline": pipeline}


def _api(sales_app, email, **params):
    client = sales_app.test_client()
    response = client.get(
        "/api/v1/opportunities/forecast", query_string=params, headers=bearer(sales_app, email)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _rows(data, key="overall"):
    section = data[key] if key == "overall" else key
    return {row["name"]: row for row in section["rows"]}


def test_rep_forecast_sums_are_exact_and_own_team_only(sales_app, deals):
    data = _api(sales_app, SAM, period="quarter", by="owner")
    assert data["from"] == data["to"] == QUARTER.key
    (section,) = data["periods"]
    rows = {row["name"]: row for row in section["rows"]}
    assert all("Sven" not in name for name in rows)
    (sam,) = [row for row in section["rows"] if row["owner_id"] == deals["sam"]]
    assert sam["currency"] == "EUR"
    assert sam["pipeline"] == {"amount": "1000.10", "weighted": "100.01", "count": 1}
    # 2 x 333.33 x 25% = 166.665 -> 166.67 (half up, rounded once).
    assert sam["best_case"] == {"amount": "666.66", "weighted": "166.67", "count": 2}
    assert sam["commit"] == {"amount": "333.33", "weighted": "300.00", "count": 1}
    assert sam["total"] == {"amount": "2000.09", "weighted": "566.67", "count": 4}
    assert sam["omitted"]["amount"] == "500.00"
    assert sam["won"] == {"amount": "777.77", "count": 1}
    assert all(row["owner_id"] != deals["sven"] for row in section["rows"])
    (total,) = section["totals"]
    assert total["total"] == sam["total"] and total["won"] == sam["won"]  # lost left out


def test_months_split_the_quarter(sales_app, deals):
    data = _api(sales_app, SAM, period="month")
    assert [p["period"] for p in data["periods"]] == [m.key for m in QUARTER.months()]
    first, second, third = data["periods"]
    (row1,) = first["rows"]
    assert row1["total"] == {"amount": "1666.76", "weighted": "266.68", "count": 3}
    (row2,) = second["rows"]
    assert row2["commit"]["weighted"] == "300.00"  # 299.997
    assert row2["won"]["amount"] == "777.77" and row2["omitted"]["amount"] == "500.00"
    assert third["rows"] == []
    (overall,) = data["overall"]["totals"]
    assert overall["total"]["weighted"] == "566.67"


def test_manager_sees_both_teams_by_team(sales_app, deals):
    data = _api(sales_app, MARIA, period="quarter", by="team")
    rows = {row["name"]: row for row in data["periods"][0]["rows"]}
    assert set(rows) == {"Sales North", "Sales South"}
    assert rows["Sales North"]["total"]["weighted"] == "566.67"
    assert rows["Sales South"]["commit"] == {"amount": "1000.10", "weighted": "900.09", "count": 1}
    assert rows["Sales South"]["total"]["weighted"] == "933.42"  # 933.423
    assert rows["Sales South"]["won"]["amount"] == "200.00"
    (total,) = data["periods"][0]["totals"]
    # 100.01 + 166.665 + 299.997 + 900.09 + 33.333 = 1500.095 -> 1500.10
    assert total["total"] == {"amount": "3333.52", "weighted": "1500.10", "count": 6}
    assert total["won"]["amount"] == "977.77"
    owners = _api(sales_app, MARIA, by="owner")["periods"][0]["rows"]
    assert {row["owner_id"] for row in owners} == {deals["sam"], deals["sven"]}


def test_forecast_page_scope_and_htmx(sales_app, deals):
    sam_page = client_as(sales_app, SAM).get("/sales/forecast").get_data(as_text=True)
    assert "Sam" in sam_page and "Sven" not in sam_page
    assert "566.67" in sam_page and "2,000.09" in sam_page and "1,500.10" not in sam_page
    maria = client_as(sales_app, MARIA)
    page = maria.get("/sales/forecast?by=team").get_data(as_text=True)
    assert "Sales North" in page and "Sales South" in page and "1,500.10" in page
    fragment = maria.get(
        "/sales/forecast?period=month&by=owner&partial=results", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    html = fragment.get_data(as_text=True)
    # The page's month view starts at this month (and looks five months ahead).
    this_month = period_of(utc_today(), "month")
    assert "<html" not in html and 'id="forecast-results"' in html and this_month.label in html
    assert "partial" not in fragment.headers["HX-Push-Url"]


def test_bad_ranges_are_clear_4xx(sales_app, deals):
    client = client_as(sales_app, SAM)
    response = client.get("/sales/forecast?period=quarter&from=2020-Q1&to=2026-Q4")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "at most 8 quarters" in body and 'value="2020-Q1"' in body  # input kept
    api = sales_app.test_client().get(
        "/api/v1/opportunities/forecast?period=month&from=2026-13",
        headers=bearer(sales_app, SAM),
    )
    assert api.status_code == 400
    assert "2026-13" in api.get_data(as_text=True)


def _post_quota(client, owner, period, amount):
    return client.post(
        "/sales/quotas",
        data={
            "csrf_token": csrf_token(client, "/sales/quotas"),
            "owner": str(owner),
            "period": period,
            "amount": amount,
            "currency": "EUR",
        },
    )


def _owner_row(page: str, owner: int) -> str:
    return re.search(rf'data-owner="{owner}".*?</tr>', page, re.S).group(0)


def test_quotas_attainment_and_duplicates(sales_app, deals):
    maria = client_as(sales_app, MARIA)
    assert _post_quota(maria, deals["sam"], QUARTER.key, "1000.00").status_code == 302
    assert _post_quota(maria, deals["sven"], M1.key, "150.00").status_code == 302
    assert _post_quota(maria, deals["sven"], M2.key, "100.00").status_code == 302
    again = _post_quota(maria, deals["sam"], QUARTER.key, "2000.00")
    assert again.status_code == 422
    assert f"already has a quota for {QUARTER.key}" in again.get_data(as_text=True)
    assert 'value="2000.00"' in again.get_data(as_text=True)  # nothing typed is lost
    # A rep only reads quotas.
    sam = client_as(sales_app, SAM)
    refused = _post_quota(sam, deals["sam"], M1.key, "1.00")
    assert refused.status_code == 403
    with service_as(sales_app, None) as system:
        assert system.count("sales_quotas") == 3

    page = maria.get(f"/sales/quotas?period={QUARTER.key}").get_data(as_text=True)
    sam_row = _owner_row(page, deals["sam"])
    assert "1,000.00" in sam_row and "777.77" in sam_row and "77.8%" in sam_row
    sven_row = _owner_row(page, deals["sven"])
    # No quarter quota: the sum of its month quotas (150 + 100), 200 / 250 = 80.0%.
    assert "250.00" in sven_row and "80.0%" in sven_row and "sum of months" in sven_row
    assert re.search(r"Sales North.*?77\.8%", page, re.S)
    month = maria.get(f"/sales/quotas?period={M1.key}").get_data(as_text=True)
    sven_month = _owner_row(month, deals["sven"])
    assert "133.3%" in sven_month  # 200 / 150

    # Through the API too, the duplicate is refused with the field's message.
    api = sales_app.test_client().post(
        "/api/v1/sales_quotas",
        json={"owner": deals["sven"], "period": M1.key, "amount": _eur("5.00")},
        headers=bearer(sales_app, MARIA),
    )
    assert api.status_code == 422 and "already has a quota" in api.get_data(as_text=True)


def test_dashboard_widgets_show_scope_figures(sales_app, deals):
    with service_as(sales_app, MARIA) as maria_service:
        maria_service.create(
            "sales_quotas", {"owner": deals["sam"], "period": QUARTER.key, "amount": _eur("1000")}
        )
        maria_service.create(
            "sales_quotas", {"owner": deals["sven"], "period": QUARTER.key, "amount": _eur("250")}
        )
    sam_home = client_as(sales_app, SAM).get("/").get_data(as_text=True)
    assert "Pipeline by stage" in sam_home and "Won this quarter vs quota" in sam_home
    qualify = re.search(r'data-stage="Qualify" data-count="(\d+)".*?</li>', sam_home, re.S)
    propose = re.search(r'data-stage="Propose" data-count="(\d+)".*?</li>', sam_home, re.S)
    assert qualify.group(1) == "1" and "1,000.10" in qualify.group(0)
    assert propose.group(1) == "4" and "1,499.99" in propose.group(0)
    me = re.search(r'data-who="me".*?</p>', sam_home, re.S).group(0)
    assert "777.77" in me and "1,000.00" in me and "77.8%" in me
    assert 'data-who="team"' not in sam_home

    maria_home = client_as(sales_app, MARIA).get("/").get_data(as_text=True)
    propose = re.search(r'data-stage="Propose" data-count="(\d+)".*?</li>', maria_home, re.S)
    assert propose.group(1) == "5" and "2,500.09" in propose.group(0)
    team = re.search(r'data-who="team".*?</p>', maria_home, re.S).group(0)
    # 977.77 / 1250.00 = 78.2%
    assert "977.77" in team and "1,250.00" in team and "78.2%" in team


def test_nav_and_permission(sales_app, deals):
    home = client_as(sales_app, NINA).get("/").get_data(as_text=True)
    assert "/sales/forecast" in home
    # Nina (Sales North) sees Sam's deals, never Sven's.
    data = _api(sales_app, NINA)
    assert {row["owner_id"] for row in data["periods"][0]["rows"]} == {deals["sam"]}


def test_quota_edit_conflict_scope_and_delete(sales_app, deals):
    from tests.plugins.sales.conftest import ADMIN

    maria = client_as(sales_app, MARIA)
    assert _post_quota(maria, deals["sam"], M1.key, "100.00").status_code == 302
    assert _post_quota(maria, deals["sam"], M2.key, "200.00").status_code == 302
    # Someone outside Maria's teams: the core refuses the owner, the form keeps the input.
    outsider = _post_quota(maria, user_id(sales_app, ADMIN), M1.key, "5.00")
    assert outsider.status_code == 422
    assert "may not create records for that owner" in outsider.get_data(as_text=True)
    with service_as(sales_app, None) as system:
        first, second = system.query("sales_quotas", sort="period").records
    token = csrf_token(maria, "/sales/quotas")
    changed = maria.post(
        f"/sales/quotas/{first.id}",
        data={
            "csrf_token": token,
            "amount": "150.50",
            "currency": "EUR",
            "version": first.version,
            "view": QUARTER.key,
        },
    )
    assert changed.status_code == 302
    stale = maria.post(
        f"/sales/quotas/{first.id}",
        data={
            "csrf_token": token,
            "amount": "1.00",
            "currency": "EUR",
            "version": first.version,
            "view": QUARTER.key,
        },
    )
    assert stale.status_code == 409
    # Moving a quota onto a period its owner already has is a duplicate too.
    with service_as(sales_app, MARIA) as service:
        from bastion.api import ValidationFailed

        with pytest.raises(ValidationFailed) as refused:
            service.update("sales_quotas", second.id, {"period": M1.key}, version=second.version)
        assert "already has a quota" in refused.value.errors["period"]
    with service_as(sales_app, None) as system:
        assert str(system.get("sales_quotas", first.id)["amount"].amount) == "150.50"
    gone = maria.post(
        f"/sales/quotas/{second.id}/delete",
        data={"csrf_token": token, "version": second.version, "view": QUARTER.key},
    )
    assert gone.status_code == 302
    with service_as(sales_app, None) as system:
        assert system.count("sales_quotas") == 1
    # Sam reads his own quota (and attainment) but gets no forms.
    page = client_as(sales_app, SAM).get("/sales/quotas").get_data(as_text=True)
    assert "150.50" in page and 'id="quota-form"' not in page and "/delete" not in page


def test_htmx_bad_range_swaps_a_message(sales_app, deals):
    response = client_as(sales_app, SAM).get(
        "/sales/forecast?period=month&from=2026-01&to=2030-01&partial=results",
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200  # htmx swaps nothing on a 4xx
    assert "at most 24 months" in response.get_data(as_text=True)
