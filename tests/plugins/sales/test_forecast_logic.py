"""Forecast arithmetic without a database: periods, rounding, categories, attainment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from bastion_sales.forecast.compute import build_forecast, cents
from bastion_sales.forecast.people import Group
from bastion_sales.forecast.periods import PeriodError, parse_period, period_range
from bastion_sales.forecast.quotas import attainment_percent


@dataclass
class Money:
    amount: Decimal
    currency: str


@dataclass
class Row:
    key: dict
    count: int
    sums: dict


def row(month: str, owner: int, probability, category, outcome, amount: str, count=1, cur="EUR"):
    return Row(
        {
            "close_date:month": month,
            "owner": owner,
            "probability": None if probability is None else Decimal(probability),
            "forecast_category": category,
            "outcome": outcome,
        },
        count,
        {"amount": Money(Decimal(amount), cur)},
    )


def test_periods_parse_and_ranges():
    assert parse_period("2026-11").key == "2026-11"
    assert parse_period("2026-q4").key == "2026-Q4"
    with pytest.raises(PeriodError):
        parse_period("2026-13")
    q = parse_period("2026-Q4")
    assert [m.key for m in q.months()] == ["2026-10", "2026-11", "2026-12"]
    assert (q.first_day, q.last_day) == (date(2026, 10, 1), date(2026, 12, 31))
    assert [p.key for p in period_range("quarter", today=date(2026, 11, 5))] == ["2026-Q4"]
    assert [p.key for p in period_range("month", today=date(2026, 11, 5))] == [
        "2026-10",
        "2026-11",
        "2026-12",
    ]
    assert [p.key for p in period_range("quarter", "2026-Q4", "2027-Q1")] == ["2026-Q4", "2027-Q1"]
    # A quarter range read as months keeps its extent.
    assert len(period_range("month", "2026-Q1", "2026-Q2")) == 6
    with pytest.raises(PeriodError, match="at most 8"):
        period_range("quarter", "2026-Q1", "2028-Q2")
    with pytest.raises(PeriodError, match="at most 24"):
        period_range("month", "2026-01", "2028-01")
    with pytest.raises(PeriodError, match="before"):
        period_range("month", "2026-05", "2026-04")


def test_weighted_sums_are_exact_and_rounded_half_up_once():
    periods = period_range("month", "2026-10", "2026-11")
    rows = [
        row("2026-10", 1, 25, "best_case", "open", "333.33"),
        row("2026-10", 1, 25, "best_case", "open", "333.33"),
        row("2026-10", 1, 10, "pipeline", "open", "1000.10"),
        row("2026-11", 1, 90, "commit", "open", "333.33"),
        row("2026-11", 1, 25, "omitted", "open", "500.00"),
        row("2026-11", 1, 100, "commit", "won", "777.77"),
        row("2026-10", 1, 0, "omitted", "lost", "250.00"),
        row("2026-10", 2, None, None, "open", "10.00"),
        row("2027-01", 1, 50, "commit", "open", "999.99"),  # outside the range
    ]
    forecast = build_forecast(
        rows, kind="month", by="owner", periods=periods, group_of=lambda o: Group(o, f"U{o}")
    )
    october, november = forecast.sections
    u1 = october.lines[0].as_json("owner")
    # 2 x 83.3325 = 166.665: half up gives .67 (rounding each cell first would give .66).
    assert u1["best_case"] == {"amount": "666.66", "weighted": "166.67", "count": 2}
    assert u1["pipeline"] == {"amount": "1000.10", "weighted": "100.01", "count": 1}
    assert u1["total"]["weighted"] == "266.68"  # 266.675
    assert u1["won"]["amount"] == "0.00"
    # No probability weighs nothing; no category is pipeline.
    u2 = october.lines[1].as_json("owner")
    assert u2["pipeline"] == {"amount": "10.00", "weighted": "0.00", "count": 1}
    n1 = november.lines[0].as_json("owner")
    assert n1["commit"] == {"amount": "333.33", "weighted": "300.00", "count": 1}
    assert n1["omitted"]["amount"] == "500.00"
    assert n1["total"] == {"amount": "333.33", "weighted": "300.00", "count": 1}  # omitted out
    assert n1["won"] == {"amount": "777.77", "count": 1}
    overall = forecast.overall.totals[0].as_json("owner")
    assert overall["total"]["amount"] == "2010.09"
    assert overall["total"]["weighted"] == "566.67"  # 566.672
    assert overall["won"]["amount"] == "777.77"
    assert overall["omitted"]["amount"] == "500.00"


def test_currencies_are_never_mixed():
    periods = period_range("quarter", "2026-Q4")
    rows = [
        Row(
            {
                "close_date:quarter": "2026-Q4",
                "owner": 1,
                "probability": 50,
                "forecast_category": "commit",
                "outcome": "open",
            },
            1,
            {"amount": Money(Decimal("100.00"), "EUR")},
        ),
        Row(
            {
                "close_date:quarter": "2026-Q4",
                "owner": 1,
                "probability": 50,
                "forecast_category": "commit",
                "outcome": "open",
            },
            1,
            {"amount": Money(Decimal("100.00"), "USD")},
        ),
    ]
    forecast = build_forecast(
        rows, kind="quarter", by="owner", periods=periods, group_of=lambda o: Group(o, "A")
    )
    assert [(line.currency, line.total.amount) for line in forecast.sections[0].lines] == [
        ("EUR", Decimal("100.00")),
        ("USD", Decimal("100.00")),
    ]
    assert len(forecast.sections[0].totals) == 2


def test_attainment_percent_one_decimal_half_up():
    assert attainment_percent(Decimal("777.77"), Decimal("1000.00")) == Decimal("77.8")
    assert attainment_percent(Decimal("1"), Decimal("8")) == Decimal("12.5")
    assert attainment_percent(Decimal("0.0125"), Decimal("0.1")) == Decimal("12.5")
    assert attainment_percent(Decimal("5"), None) is None
    assert attainment_percent(Decimal("5"), Decimal("0")) is None
    assert cents(Decimal("0.005")) == Decimal("0.01")


def test_rows_without_amounts_are_left_out():
    """The core's shape for records without an amount: a row whose sum is a Money
    without currency (and the forecast filters them out in SQL anyway)."""
    periods = period_range("quarter", "2026-Q4")
    key = {
        "close_date:quarter": "2026-Q4",
        "owner": 1,
        "probability": 50,
        "forecast_category": "commit",
    }
    empty = Row(key, 3, {"amount": Money(Decimal("0.00"), None)})
    won_empty = Row(
        {"close_date:quarter": "2026-Q4", "owner": 1}, 2, {"amount": Money(Decimal("0.00"), None)}
    )
    forecast = build_forecast(
        [empty],
        won_rows=[won_empty],
        kind="quarter",
        by="owner",
        periods=periods,
        group_of=lambda o: Group(o, "A"),
    )
    assert forecast.sections[0].lines == []


def test_won_rows_come_apart():
    periods = period_range("quarter", "2026-Q4")
    won = Row(
        {"close_date:quarter": "2026-Q4", "owner": 1}, 2, {"amount": Money(Decimal("5"), "EUR")}
    )
    forecast = build_forecast(
        [],
        won_rows=[won],
        kind="quarter",
        by="owner",
        periods=periods,
        group_of=lambda o: Group(o, "A"),
    )
    (line,) = forecast.sections[0].lines
    assert line.as_json("owner")["won"] == {"amount": "5.00", "count": 2}
    assert line.total.count == 0


def test_years_out_of_range_are_period_errors():
    for text in ("0000-01", "9999-Q4", "1899-12"):
        with pytest.raises(PeriodError, match="1900 to 9998"):
            parse_period(text)
    assert parse_period("9998-Q4").last_day == date(9998, 12, 31)
