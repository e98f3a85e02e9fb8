"""The quote arithmetic on its own: exact decimals and the stated rounding rule."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bastion_sales.quotes.pricing import LineInput, line_amounts, quote_totals, to_cent


def test_the_issue_example():
    line = line_amounts(D("3"), D("19.99"), D("12.5"), D("8.25"))
    assert line.amount == D("59.97")
    assert line.discount == D("7.50")  # 7.49625 rounded half up
    assert line.tax == D("4.33")  # 52.47 x 0.0825 = 4.328775
    assert line.total == D("56.80")
    totals = quote_totals([LineInput(D("3"), D("19.99"), D("12.5"), D("8.25"))])
    assert (totals.subtotal, totals.discount_total, totals.tax_total, totals.total) == (
        D("59.97"),
        D("7.50"),
        D("4.33"),
        D("56.80"),
    )
    assert totals.max_discount == D("12.5")


def test_half_cents_round_up():
    assert to_cent(D("0.005")) == D("0.01")
    assert to_cent(D("0.0049")) == D("0.00")
    assert to_cent(D("2.675")) == D("2.68")  # a float would say 2.67


def test_fractional_quantities_keep_the_amount_exact():
    half = line_amounts(D("0.5"), D("19.99"), D("10"), D("20"))
    assert half.amount == D("9.995")
    assert half.subtotal == D("10.00")
    assert half.discount == D("1.00")  # 0.9995
    assert half.tax == D("1.80")  # 8.995 x 0.2 = 1.799
    assert half.total == D("10.80")  # 8.995 + 1.80 = 10.795
    third = line_amounts(D("1.3333"), D("30"), D("0"), D("0"))
    assert third.amount == D("39.9990")
    assert third.subtotal == third.total == D("40.00")


def test_no_discount_full_discount_no_tax():
    assert line_amounts(2, "10.00", 0, 0).total == D("20.00")
    free = line_amounts(2, "10.00", 100, "19")
    assert (free.discount, free.tax, free.total) == (D("20.00"), D("0.00"), D("0.00"))


def test_many_lines_sum_rounded_line_values():
    lines = [LineInput(D("1"), D("0.99"), D("12.5"), D("8.25")) for _ in range(100)]
    totals = quote_totals(lines)
    # Each line: discount 0.12375 -> 0.12, tax 0.87 x 0.0825 = 0.071775 -> 0.07.
    assert totals.subtotal == D("99.00")
    assert totals.discount_total == D("12.00")
    assert totals.tax_total == D("7.00")
    assert totals.total == D("94.00")


def test_an_empty_quote_is_zero():
    totals = quote_totals([])
    assert (totals.subtotal, totals.total, totals.max_discount) == (D("0.00"), D("0.00"), 0)


def test_floats_and_bad_percentages_are_refused():
    with pytest.raises(TypeError):
        line_amounts(1, 19.99)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        line_amounts(1, "1", "101")
    with pytest.raises(ValueError):
        line_amounts(-1, "1")


def test_a_price_below_the_list_price_counts_as_a_discount():
    from bastion_sales.quotes.pricing import effective_discount

    assert effective_discount(D("19.99"), D("12.5"), D("19.99")) == D("12.5")
    assert effective_discount(D("15.00"), D("0"), D("19.99")) == D("24.97")  # 24.962... up
    assert effective_discount(D("18.00"), D("5"), D("20.00")) == D("14.50")
    assert effective_discount(D("25.00"), D("3"), D("20.00")) == D("3")  # above list
    assert effective_discount(D("5.00"), D("0"), None) == D("0")  # no list price
