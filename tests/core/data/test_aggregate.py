"""RecordService.aggregate: counts and exact sums per group, computed by the database,
within the user's permission, record scope and field access."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from bastion.api import AggregateRow, BadQuery, Filter, Forbidden, Money
from tests.core.data.conftest import (
    ADMIN,
    AIKO,
    MARIA,
    SAM,
    SOFIA,
    service_as,
    set_field_access,
    user_id,
)
from tests.core.data.record_plugin import DEALS, running_app


@pytest.fixture
def rt_app(settings, monkeypatch):
    yield from running_app(settings, monkeypatch)


@pytest.fixture
def deals(rt_app):
    """Sam's three deals (two in EUR, one in USD), Maria's and the administrator's."""
    sam, maria, admin = (user_id(rt_app, e) for e in (SAM, MARIA, ADMIN))
    rows = [
        (sam, "S1", "10.10 EUR", 2, "1.5", date(2026, 11, 5), "Open"),
        (sam, "S2", "20.20 EUR", 3, "2.25", date(2026, 11, 30), "Won"),
        (sam, "S3", "5.00 USD", None, None, date(2026, 12, 1), "Open"),
        (sam, "S4", None, 1, None, None, "Lost"),
        (maria, "M1", "100.00 EUR", 7, "0.001", date(2026, 11, 10), "Open"),
        (admin, "A1", "1000.00 EUR", 11, None, date(2027, 1, 15), "Open"),
    ]
    with service_as(rt_app, None) as system:
        for owner, name, amount, units, weight, close, stage in rows:
            values = {"owner": owner, "name": name, "amount": amount, "units": units}
            values |= {"weight": weight, "close_date": close, "stage": stage}
            system.create(DEALS, values)
    return {"sam": sam, "maria": maria, "admin": admin}


def _by_key(rows: list[AggregateRow], spec: str) -> dict:
    return {row.key[spec]: row for row in rows}


def test_sums_are_exact_and_split_by_currency(rt_app, deals):
    with service_as(rt_app, None) as system:
        (total,) = system.aggregate(DEALS, sums=["units", "weight"])
        assert total.key == {} and total.count == 6
        assert total.sums == {"units": 24, "weight": Decimal("3.751")}
        assert isinstance(total.sums["units"], int)

        rows = system.aggregate(DEALS, group_by=["stage"], sums=["amount", "units"])
        shown = [(r.key["stage"], r.count, r.sums["amount"], r.sums["units"]) for r in rows]
        assert shown == [
            ("Lost", 1, Money(Decimal("0.00"), None), 1),  # no amount: no currency at all
            ("Open", 3, Money(Decimal("1110.10"), "EUR"), 20),
            ("Open", 1, Money(Decimal("5.00"), "USD"), 0),
            ("Won", 1, Money(Decimal("20.20"), "EUR"), 3),
        ]
        assert str(rows[1].sums["amount"].amount) == "1110.10"

        opened = system.aggregate(
            DEALS,
            sums=["amount"],
            filters=[Filter("stage", "eq", "Open"), Filter("units", "gt", 5)],
        )
        assert [(r.count, r.sums["amount"]) for r in opened] == [
            (2, Money(Decimal("1100.00"), "EUR"))
        ]
        assert system.aggregate(DEALS, filters=[Filter("name", "eq", "none")]) == [
            AggregateRow({}, 0, {})
        ]


def test_periods_month_quarter_year(rt_app, deals):
    with service_as(rt_app, None) as system:
        months = system.aggregate(DEALS, group_by=["close_date:month"], sums=["units"])
        assert [(r.key["close_date:month"], r.count, r.sums["units"]) for r in months] == [
            ("2026-11", 3, 12),
            ("2026-12", 1, 0),
            ("2027-01", 1, 11),
            (None, 1, 1),  # no close date: last
        ]
        quarters = system.aggregate(DEALS, group_by=["close_date:quarter", "stage"])
        assert [(r.key["close_date:quarter"], r.key["stage"], r.count) for r in quarters] == [
            ("2026-Q4", "Open", 3),
            ("2026-Q4", "Won", 1),
            ("2027-Q1", "Open", 1),
            (None, "Lost", 1),
        ]
        years = system.aggregate(DEALS, group_by=["close_date:year"])
        assert {r.key["close_date:year"]: r.count for r in years} == {
            "2026": 4,
            "2027": 1,
            None: 1,
        }
        (created,) = system.aggregate(DEALS, group_by=["created_at:year"])
        assert len(created.key["created_at:year"]) == 4 and created.count == 6
        days = system.aggregate(DEALS, group_by=["close_date"])
        assert days[0].key == {"close_date": date(2026, 11, 5)}


def test_scope_and_permissions_apply(rt_app, deals):
    with service_as(rt_app, SAM) as sam:
        rows = sam.aggregate(DEALS, group_by=["owner"], sums=["units"])
        assert [(r.key["owner"], r.count, r.sums["units"]) for r in rows] == [(deals["sam"], 4, 6)]
        assert sum(r.count for r in sam.aggregate(DEALS, group_by=["close_date:quarter"])) == 4
    with service_as(rt_app, MARIA) as maria:  # her team and its sub-teams: Sam's too
        owners = _by_key(maria.aggregate(DEALS, group_by=["owner"]), "owner")
        assert {k: r.count for k, r in owners.items()} == {deals["sam"]: 4, deals["maria"]: 1}
    with service_as(rt_app, ADMIN) as admin:
        assert sum(r.count for r in admin.aggregate(DEALS, group_by=["owner"])) == 6
    with service_as(rt_app, AIKO) as auditor:  # reads everything, so totals everything
        assert sum(r.count for r in auditor.aggregate(DEALS, group_by=["stage"])) == 6
    with service_as(rt_app, SOFIA) as support, pytest.raises(Forbidden):
        support.aggregate(DEALS)


def test_hidden_encrypted_and_wrong_fields_are_refused(rt_app, deals):
    set_field_access(rt_app, "sales_rep", DEALS, "amount", "hidden")
    with service_as(rt_app, SAM) as sam:
        for call in (
            lambda: sam.aggregate(DEALS, sums=["amount"]),
            lambda: sam.aggregate(DEALS, group_by=["amount"]),
        ):
            with pytest.raises(BadQuery) as refused:
                call()
            assert refused.value.field == "amount" and "no field 'amount'" in str(refused.value)
        assert sam.aggregate(DEALS, sums=["units"])[0].count == 4
    with service_as(rt_app, None) as system:
        cases = {
            "secret_note": dict(group_by=["secret_note"]),
            "name": dict(sums=["name"]),
            "stage:month": dict(group_by=["stage:month"]),
            "close_date:week": dict(group_by=["close_date:week"]),
            "tags": dict(group_by=["tags"]),
            "nope": dict(group_by=["nope"]),
            "id": dict(sums=["id"]),
        }
        for field, arguments in cases.items():
            with pytest.raises(BadQuery) as refused:
                system.aggregate(DEALS, **arguments)
            assert refused.value.field == field, (field, str(refused.value))
        with pytest.raises(BadQuery, match="encrypted"):
            system.aggregate(DEALS, sums=["secret_note"])
        with pytest.raises(BadQuery):
            system.aggregate(DEALS, group_by="stage")


def test_too_many_groups_are_refused(rt_app, deals, monkeypatch):
    from bastion.data.records import aggregate

    monkeypatch.setattr(aggregate, "MAX_GROUPS", 3)
    with service_as(rt_app, None) as system:
        assert len(system.aggregate(DEALS, group_by=["stage"])) == 3
        with pytest.raises(BadQuery, match="more than 3 groups") as refused:
            system.aggregate(DEALS, group_by=["name"])
        assert refused.value.field == "group_by"


def test_no_arguments_counts_the_table_even_when_empty(rt_app):
    """Without group_by, sums or filters the count still reads the table (an unscoped
    user's statement once had no FROM and "SELECT count(*)" answered 1)."""
    for email in (None, ADMIN, AIKO, SAM):
        with service_as(rt_app, email) as service:
            assert service.aggregate(DEALS) == [AggregateRow({}, 0, {})], email
            assert service.count(DEALS) == 0
    with service_as(rt_app, None) as system:
        system.create(DEALS, {"name": "Only", "owner": user_id(rt_app, SAM)})
        assert system.aggregate(DEALS) == [AggregateRow({}, 1, {})]
    with service_as(rt_app, ADMIN) as admin:
        assert admin.aggregate(DEALS)[0].count == 1


def test_no_group_by_is_always_one_row_also_for_currency_sums(rt_app, deals):
    nothing = [Filter("name", "eq", "none")]
    with service_as(rt_app, None) as system:
        (row,) = system.aggregate(DEALS, sums=["amount", "units", "weight"], filters=nothing)
        assert row.count == 0
        assert row.sums == {
            "amount": Money(Decimal("0.00"), "EUR"),
            "units": 0,
            "weight": Decimal("0.000"),
        }
        # Grouped, nothing matching is no row at all.
        assert system.aggregate(DEALS, group_by=["stage"], sums=["amount"], filters=nothing) == []


def test_records_without_amount_are_not_counted_in_a_currency(rt_app, deals):
    with service_as(rt_app, None) as system:
        rows = system.aggregate(DEALS, sums=["amount"])
        assert [(r.count, r.sums["amount"]) for r in rows] == [
            (4, Money(Decimal("1130.30"), "EUR")),
            (1, Money(Decimal("5.00"), "USD")),
            (1, Money(Decimal("0.00"), None)),  # S4: no amount, a row of its own, last
        ]
        filled = system.aggregate(
            DEALS, sums=["amount"], filters=[Filter("amount", "empty", False)]
        )
        assert [r.count for r in filled] == [4, 1]
        # A deal without an amount in a group with amounts: the group splits.
        system.create(DEALS, {"name": "S5", "owner": deals["sam"], "stage": "Won"})
        won = system.aggregate(
            DEALS, group_by=["stage"], sums=["amount"], filters=[Filter("stage", "eq", "Won")]
        )
        assert [(r.count, r.sums["amount"]) for r in won] == [
            (1, Money(Decimal("20.20"), "EUR")),
            (1, Money(Decimal("0.00"), None)),
        ]


@pytest.mark.parametrize(
    ("last_day", "first_day", "before", "after"),
    [
        (date(2026, 3, 31), date(2026, 4, 1), "2026-Q1", "2026-Q2"),
        (date(2026, 6, 30), date(2026, 7, 1), "2026-Q2", "2026-Q3"),
        (date(2026, 9, 30), date(2026, 10, 1), "2026-Q3", "2026-Q4"),
        (date(2026, 12, 31), date(2027, 1, 1), "2026-Q4", "2027-Q1"),
    ],
)
def test_quarter_boundaries(rt_app, last_day, first_day, before, after):
    sam = user_id(rt_app, SAM)
    with service_as(rt_app, None) as system:
        for name, day in (("last", last_day), ("first", first_day)):
            system.create(DEALS, {"name": name, "owner": sam, "close_date": day})
        quarters = system.aggregate(DEALS, group_by=["close_date:quarter"])
        assert [(r.key["close_date:quarter"], r.count) for r in quarters] == [
            (before, 1),
            (after, 1),
        ]
        months = system.aggregate(DEALS, group_by=["close_date:month"])
        assert [r.key["close_date:month"] for r in months] == [
            last_day.strftime("%Y-%m"),
            first_day.strftime("%Y-%m"),
        ]
