"""Forecast and quotas: the reviewer's findings, each through HTTP on the demo's teams.

Uses the deals of ``test_forecast_http`` (Sam in Sales North, Sven in Sales South,
current quarter; see that module's docstring for the figures).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from bastion.api import Filter
from bastion.db import db
from bastion_sales.forecast import people, periods
from tests.core.data.conftest import set_field_access
from tests.plugins.sales.conftest import (
    ADMIN,
    MARIA,
    NINA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)
from tests.plugins.sales.test_forecast_http import (
    M1,
    M2,
    QUARTER,
    _api,
    _eur,
    _owner_row,
    _post_quota,
    make_deals,
)

SOFIA = "sofia.support@example.com"


@pytest.fixture
def deals(sales_app):
    return make_deals(sales_app)


def _get(sales_app, email, path, **params):
    return sales_app.test_client().get(path, query_string=params, headers=bearer(sales_app, email))


def _stage(sales_app, pipeline: int, name: str) -> int:
    with service_as(sales_app, None) as system:
        (stage,) = system.query(
            "pipeline_stages",
            filters=[Filter("pipeline", "eq", pipeline), Filter("name", "eq", name)],
        ).records
        return stage.id


def _deal(sales_app, deals, owner, day: date, *, amount=None, stage="Qualify", **extra):
    values = {
        "name": f"Extra {owner} {day} {stage}",
        "owner": owner,
        "close_date": day.isoformat(),
        "pipeline": deals["pipeline"],
        "stage": _stage(sales_app, deals["pipeline"], stage),
        **extra,
    }
    if amount is not None:
        values["amount"] = _eur(amount)
    with service_as(sales_app, None) as system:
        return system.create("opportunities", values).id


# ------------------------------------------------------------------ 1, 10: too many groups


def test_too_many_groups_falls_back_per_period_then_explains(sales_app, deals, monkeypatch):
    from bastion.data.records import aggregate

    expected = _api(sales_app, SAM, period="month")
    # Sam's open deals make 4 groups over the quarter, 2 per month: the range is split.
    monkeypatch.setattr(aggregate, "MAX_GROUPS", 3)
    assert _api(sales_app, SAM, period="month") == expected
    # Even one period is too many: a clear message, never a 500.
    monkeypatch.setattr(aggregate, "MAX_GROUPS", 1)
    # The page's default months start today; ask for the quarter's months explicitly.
    months = f"from={QUARTER.months()[0].key}&to={QUARTER.months()[-1].key}"
    page = client_as(sales_app, SAM).get(f"/sales/forecast?period=month&{months}")
    assert page.status_code == 400
    body = page.get_data(as_text=True)
    assert "more than 1 groups" in body and "Choose a shorter range" in body
    fragment = client_as(sales_app, SAM).get(
        f"/sales/forecast?period=month&{months}&partial=results", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200 and "Choose a shorter range" in fragment.get_data(
        as_text=True
    )
    api = _get(sales_app, SAM, "/api/v1/opportunities/forecast", period="month")
    assert api.status_code == 400 and "groups" in api.get_json()["detail"]


@pytest.mark.parametrize("field", ["probability", "forecast_category", "outcome", "amount"])
def test_hidden_field_gives_a_message_not_a_500(sales_app, deals, field):
    set_field_access(sales_app, "sales_rep", "opportunities", field, "hidden")
    page = client_as(sales_app, SAM).get("/sales/forecast")
    assert page.status_code == 400
    body = page.get_data(as_text=True)
    assert "your role may not read" in body and "shorter range" not in body
    api = _get(sales_app, SAM, "/api/v1/opportunities/forecast")
    assert api.status_code == 400 and "your role may not read" in api.get_json()["detail"]


# ------------------------------------------------------------------ 3: years, pushed URL


def test_out_of_range_years_are_refused_clearly(sales_app, deals):
    for params in (
        {"period": "month", "from": "0000-01"},
        {"period": "quarter", "from": "9999-Q4"},
        {"period": "quarter", "to": "1899-Q4"},
    ):
        api = _get(sales_app, SAM, "/api/v1/opportunities/forecast", **params)
        assert api.status_code == 400, params
        assert "year from 1900 to 9998" in api.get_json()["detail"]
    client = client_as(sales_app, MARIA)
    page = client.get("/sales/quotas?period=0000-Q1")
    assert page.status_code == 400 and "year from 1900 to 9998" in page.get_data(as_text=True)
    assert client.get("/sales/quotas?period=9998-Q4").status_code == 200
    assert client.get("/sales/forecast?period=month&from=9998-12").status_code == 200
    with pytest.raises(periods.PeriodError):
        periods.parse_period("9999-12")
    assert periods.parse_period("1900-01").first_day == date(1900, 1, 1)


def test_pushed_url_keeps_only_the_form_fields(sales_app, deals):
    response = client_as(sales_app, SAM).get(
        "/sales/forecast?period=month&by=owner&partial=results&_method=POST&x=%ZZ",
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    pushed = response.headers["HX-Push-Url"]
    assert "period=month" in pushed and "by=owner" in pushed
    assert "_method" not in pushed and "partial" not in pushed and "x=" not in pushed


# ------------------------------------------------------------------ 4, 15: hidden amount


def test_quotas_page_and_cards_with_the_amount_hidden(sales_app, deals):
    maria = client_as(sales_app, MARIA)
    assert _post_quota(maria, deals["sam"], QUARTER.key, "1000.00").status_code == 302
    set_field_access(sales_app, "sales_manager", "opportunities", "amount", "hidden")
    page = maria.get(f"/sales/quotas?period={QUARTER.key}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Won amounts cannot be shown" in body and "1,000.00" in body
    assert 'data-cell="won"' not in body
    home = maria.get("/")
    assert home.status_code == 200
    html = home.get_data(as_text=True)
    # The pipeline card stays (counts only), the quota card is left out.
    assert "Pipeline by stage" in html and "Won this quarter vs quota" not in html
    propose = re.search(r'data-stage="Propose" data-count="(\d+)".*?</li>', html, re.S)
    assert propose.group(1) == "5" and "EUR" not in propose.group(0)


def test_quotas_page_with_the_quota_period_hidden(sales_app, deals):
    set_field_access(sales_app, "sales_rep", "sales_quotas", "period", "hidden")
    page = client_as(sales_app, SAM).get("/sales/quotas")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Quotas cannot be shown" in body and 'data-cell="won"' in body  # wins still shown
    assert client_as(sales_app, SAM).get("/").status_code == 200


def test_one_failing_card_leaves_the_other(sales_app, deals, monkeypatch):
    import importlib

    from bastion.api import BadQuery

    # The package's ``widgets`` is the area's hook function; the module by its name.
    widgets = importlib.import_module("bastion_sales.forecast.widgets")

    def broken(service):
        raise BadQuery("no stages today")

    monkeypatch.setattr(widgets, "pipeline_by_stage", broken)
    html = client_as(sales_app, SAM).get("/").get_data(as_text=True)
    assert "Pipeline by stage" not in html and "Won this quarter vs quota" in html


# ------------------------------------------------------------------ 5: no amount


def test_opportunities_without_amount_are_not_counted(sales_app, deals):
    before = _api(sales_app, SAM)
    _deal(sales_app, deals, deals["sam"], date(M1.year, M1.number, 2))
    _deal(sales_app, deals, deals["sam"], date(M1.year, M1.number, 3), stage="Won")
    after = _api(sales_app, SAM)
    assert after == before
    (sam,) = after["periods"][0]["rows"]
    assert sam["total"]["count"] == 4 and sam["won"] == {"amount": "777.77", "count": 1}
    assert "0.00" not in [row["total"]["amount"] for row in after["periods"][0]["rows"]]


# ------------------------------------------------------------------ 6, 7: duplicates


def test_duplicate_check_never_hints_at_quotas_out_of_scope(sales_app, deals):
    admin_id = user_id(sales_app, ADMIN)
    with service_as(sales_app, None) as system:
        system.create("sales_quotas", {"owner": admin_id, "period": M1.key, "amount": _eur("9")})
    response = _post_quota(client_as(sales_app, MARIA), admin_id, M1.key, "5.00")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "may not create records for that owner" in body
    assert "already has a quota" not in body
    # Within her scope the duplicate is still refused.
    maria = client_as(sales_app, MARIA)
    assert _post_quota(maria, deals["sam"], M1.key, "1.00").status_code == 302
    again = _post_quota(maria, deals["sam"], M1.key, "2.00")
    assert again.status_code == 422 and "already has a quota" in again.get_data(as_text=True)


def test_duplicates_from_one_batch_count_once_the_latest(sales_app, deals):
    rows = [
        {"owner": deals["sam"], "period": QUARTER.key, "amount": _eur("100.00")},
        {"owner": deals["sam"], "period": QUARTER.key, "amount": _eur("1000.00")},
    ]
    with service_as(sales_app, MARIA) as maria:
        ids = maria.create_many("sales_quotas", rows)
    assert len(ids) == 2  # the documented limit: a batch is not checked against itself
    page = client_as(sales_app, MARIA).get(f"/sales/quotas?period={QUARTER.key}")
    sam_row = _owner_row(page.get_data(as_text=True), deals["sam"])
    assert "1,000.00" in sam_row and "1,100.00" not in sam_row and "77.8%" in sam_row


# ------------------------------------------------------------------ 8: owner choices


def _owner_options(html: str) -> set[str]:
    select_html = re.search(r'<select id="quota-owner".*?</select>', html, re.S).group(0)
    return set(re.findall(r'<option value="(\d+)"', select_html))


def test_owner_choices_are_active_people_in_reach(sales_app, deals):
    from bastion.models import Role, RoleObjectRule, User

    ids = {e: str(user_id(sales_app, e)) for e in (SAM, NINA, SVEN, MARIA, ADMIN)}
    maria = _owner_options(client_as(sales_app, MARIA).get("/sales/quotas").get_data(as_text=True))
    assert {ids[SAM], ids[NINA], ids[SVEN]} <= maria and ids[ADMIN] not in maria
    admin = _owner_options(client_as(sales_app, ADMIN).get("/sales/quotas").get_data(as_text=True))
    assert {ids[SAM], ids[NINA], ids[SVEN], ids[ADMIN]} <= admin
    with sales_app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        rule = next(r for r in role.object_rules if r.object_name == "sales_quotas")
        rule.can_create = True
        assert isinstance(rule, RoleObjectRule)
        db.session.scalar(select(User).where(User.email == NINA)).active = False
        db.session.commit()
    sam = _owner_options(client_as(sales_app, SAM).get("/sales/quotas").get_data(as_text=True))
    assert sam == {ids[SAM]}  # his team's Nina is inactive; no other team is offered
    maria = _owner_options(client_as(sales_app, MARIA).get("/sales/quotas").get_data(as_text=True))
    assert ids[NINA] not in maria and ids[SAM] in maria


# ------------------------------------------------------------------ 9: team attainment


def test_rep_team_row_compares_quotas_with_their_own_wins(sales_app, deals):
    maria = client_as(sales_app, MARIA)
    assert _post_quota(maria, deals["sam"], QUARTER.key, "1000.00").status_code == 302
    assert _post_quota(maria, deals["sven"], QUARTER.key, "250.00").status_code == 302
    nina = user_id(sales_app, NINA)
    _deal(sales_app, deals, nina, date(M2.year, M2.number, 3), amount="500.00", stage="Won")
    page = client_as(sales_app, SAM).get(f"/sales/quotas?period={QUARTER.key}")
    body = page.get_data(as_text=True)
    assert "Sven" not in body and "Sales South" not in body  # never another team
    team = re.search(r'<table[^>]*id="attainment-teams".*?</table>', body, re.S).group(0)
    north = re.search(r"Sales North.*?</tr>", team, re.S).group(0)
    assert "1,000.00" in north and "777.77" in north and "77.8%" in north
    assert re.search(r'data-cell="other-won">500\.00 EUR', north)
    forecast = client_as(sales_app, SAM).get("/sales/forecast?by=team").get_data(as_text=True)
    assert "Sales South" not in forecast and "Sven" not in forecast
    # Maria's card: her members with a quota (977.77 / 1250.00), Nina's win apart.
    home = maria.get("/").get_data(as_text=True)
    card = re.search(r'data-who="team".*?</p>', home, re.S).group(0)
    assert "977.77" in card and "1,250.00" in card and "78.2%" in card and "500.00" in card


# ------------------------------------------------------------------ 11, 12, 13


def test_current_quarter_is_the_utc_one(monkeypatch):
    class Late(datetime):
        @classmethod
        def now(cls, tz=None):
            assert tz is UTC
            return datetime(2026, 3, 31, 23, 30, tzinfo=UTC)

    monkeypatch.setattr(periods, "datetime", Late)
    assert periods.current_quarter().key == "2026-Q1"


def test_lower_case_period_is_saved_upper_case(sales_app, deals):
    maria = client_as(sales_app, MARIA)
    lower = QUARTER.key.lower()
    assert _post_quota(maria, deals["sam"], lower, "10.00").status_code == 302
    with service_as(sales_app, None) as system:
        (quota,) = system.query("sales_quotas").records
        assert quota.get("period") == QUARTER.key


def test_omitted_json_has_the_documented_keys(sales_app, deals):
    (sam,) = _api(sales_app, SAM)["periods"][0]["rows"]
    assert sam["omitted"] == {"amount": "500.00", "weighted": "125.00", "count": 1}
    assert set(sam["won"]) == {"amount", "count"}


# ------------------------------------------------------------------ 14: lookups in bulk


def test_owner_names_are_fetched_in_bulk(sales_app, deals, monkeypatch):
    single, bulk = [], []
    one, many = people.user_info, people.users_info

    def counting_one(user_id):
        single.append(user_id)
        return one(user_id)

    def counting_many(user_ids):
        bulk.append(list(user_ids))
        return many(user_ids)

    monkeypatch.setattr(people, "user_info", counting_one)
    monkeypatch.setattr(people, "users_info", counting_many)
    assert client_as(sales_app, MARIA).get("/sales/forecast?by=team").status_code == 200
    assert len(bulk) == 1 and set(bulk[0]) == {deals["sam"], deals["sven"]}
    assert client_as(sales_app, MARIA).get("/sales/quotas").status_code == 200
    assert single == []  # never one query per owner


# ------------------------------------------------------------------ access


def test_forecast_is_forbidden_without_permission_or_read(sales_app, deals):
    from bastion.models import Role, RolePermission

    assert _get(sales_app, SOFIA, "/api/v1/opportunities/forecast").status_code == 403
    assert client_as(sales_app, SOFIA).get("/sales/forecast").status_code == 403
    with sales_app.app_context():
        role = db.session.scalar(select(Role).where(Role.name == "support_agent"))
        role.permissions.append(RolePermission(permission="sales.forecast"))
        db.session.commit()
    with service_as(sales_app, SOFIA) as sofia:
        assert not sofia.can("opportunities", "read")
    api = _get(sales_app, SOFIA, "/api/v1/opportunities/forecast")
    assert api.status_code == 403 and "opportunities" in api.get_json()["detail"]
    assert client_as(sales_app, SOFIA).get("/sales/forecast").status_code == 403


# ------------------------------------------------------------------ quarter boundaries


def test_quarter_boundaries_through_the_api(sales_app, deals):
    year = 2025  # far from the fixture's deals
    sam = deals["sam"]
    days = [(3, 31), (4, 1), (6, 30), (7, 1), (9, 30), (10, 1), (12, 31)]
    for month, day in days:
        _deal(sales_app, deals, sam, date(year, month, day), amount="1.00")
    _deal(sales_app, deals, sam, date(year + 1, 1, 1), amount="1.00")
    data = _api(sales_app, SAM, period="quarter", **{"from": f"{year}-Q1", "to": f"{year + 1}-Q1"})
    counts = {
        section["period"]: sum(row["total"]["count"] for row in section["rows"])
        for section in data["periods"]
    }
    assert counts == {
        f"{year}-Q1": 1,
        f"{year}-Q2": 2,
        f"{year}-Q3": 2,
        f"{year}-Q4": 2,
        f"{year + 1}-Q1": 1,
    }
