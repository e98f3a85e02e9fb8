"""The pure scoring evaluation and rule checks (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from bastion_sales.leads.assignment import following
from bastion_sales.leads.scoring import check_rule, evaluate, matches, to_decimal

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def rule(rule_id, kind="field_value", points=10, **values):
    base = {"id": rule_id, "name": f"R{rule_id}", "kind": kind, "points": points, "active": True}
    return base | values


def test_field_rules_compare_by_type():
    lead = {"industry": "Banking", "employees": 250, "website": None, "created_at": NOW}
    rules = [
        rule(1, field="industry", operator="eq", value="banking", points=20),
        rule(2, field="employees", operator="gt", value="100", points=5),
        rule(3, field="employees", operator="lt", value="100", points=7),
        rule(4, field="website", operator="empty", points=-3),
        rule(5, field="industry", operator="contains", value="bank", points=1),
        rule(6, field="industry", operator="ne", value="Retail", points=2),
        rule(7, field="nope", operator="eq", value="x", points=99),
        rule(8, field="industry", operator="eq", value="Banking", points=50, active=False),
    ]
    result = evaluate(lead, [], rules, NOW)
    assert [c.rule_id for c in result.contributions] == [1, 2, 4, 5, 6]
    assert result.total == 20 + 5 - 3 + 1 + 2
    assert result.contributions[0].reason == "industry is banking"


def test_values_of_other_types():
    assert matches(Decimal("12.50"), "eq", "12.5")
    assert matches(SimpleNamespace(amount=Decimal("1000"), currency="EUR"), "gt", "999.99")
    assert matches(True, "eq", "yes") and not matches(True, "ne", "yes")
    assert matches(date(2026, 1, 2), "gt", "2026-01-01")
    assert matches(["VIP", "Public"], "contains", "vip")
    assert matches(None, "ne", "x") and not matches(None, "eq", "x")
    assert matches("  Public   sector ", "eq", "public sector")
    assert not matches(5, "eq", "five")


def test_activity_rule_counts_once_per_rule_and_needs_done():
    activities = [
        {"kind": "meeting", "done": True, "created_at": NOW},
        {"kind": "meeting", "done": True, "created_at": NOW},
        {"kind": "call", "done": False, "created_at": NOW},
    ]
    rules = [
        rule(1, "activity", 15, activity_kind="meeting"),
        rule(2, "activity", 5, activity_kind="call"),
    ]
    result = evaluate({"created_at": NOW}, activities, rules, NOW)
    assert result.total == 15
    assert "2 in all" in result.contributions[0].reason


def test_inactivity_from_last_activity_else_from_creation():
    rules = [rule(1, "inactivity", -10, days=30)]
    old = NOW - timedelta(days=31)
    assert evaluate({"created_at": old}, [], rules, NOW).total == -10
    assert evaluate({"created_at": NOW - timedelta(days=29)}, [], rules, NOW).total == 0
    recent = {"created_at": old, "last_activity_at": NOW - timedelta(days=2)}
    assert evaluate(recent, [], rules, NOW).total == 0
    # The activities handed in do not count (an open task is no contact): only the
    # lead's last_activity_at, which the activities area keeps, does.
    open_task = [{"kind": "task", "done": False}]
    assert (
        evaluate({"created_at": old, "last_activity_at": None}, open_task, rules, NOW).total == -10
    )
    quiet = {"created_at": NOW, "last_activity_at": old}
    assert evaluate(quiet, [], rules, NOW).total == -10


def test_numbers_with_commas_are_refused_not_guessed():
    assert to_decimal("12,5") is None and to_decimal("1,000") is None
    assert to_decimal("12.5") == Decimal("12.5")
    fields = {"employees": SimpleNamespace(type="integer", label="Employees")}
    bad = {"kind": "field_value", "field": "employees", "operator": "gt", "value": "12,5"}
    assert "value" in check_rule(bad, fields)
    assert not matches(125, "eq", "12,5")


def test_rule_checks():
    fields = {
        "industry": SimpleNamespace(type="picklist", label="Industry", options=("Banking",)),
        "employees": SimpleNamespace(type="integer", label="Employees"),
        "converted_account": SimpleNamespace(type="lookup", label="Converted account"),
    }
    ok = {"kind": "field_value", "field": "industry", "operator": "eq", "value": "banking"}
    assert check_rule(ok, fields) == {}
    assert "field" in check_rule({**ok, "field": "missing"}, fields)
    assert "field" in check_rule({**ok, "field": "converted_account"}, fields)
    assert "field" in check_rule({**ok, "field": "score"}, fields)
    assert "value" in check_rule({**ok, "value": "Bakery"}, fields)
    assert "value" in check_rule({**ok, "value": ""}, fields)
    assert "value" in check_rule({**ok, "field": "employees", "value": "many"}, fields)
    assert check_rule({**ok, "operator": "empty", "value": None}, fields) == {}
    assert "activity_kind" in check_rule({"kind": "activity"}, fields)
    assert "days" in check_rule({"kind": "inactivity"}, fields)


def test_round_robin_order():
    assert following([3, 5, 9], None) == 3
    assert following([3, 5, 9], 5) == 9
    assert following([3, 5, 9], 9) == 3
    assert following([3, 5, 9], 4) == 5  # the last one left the team
