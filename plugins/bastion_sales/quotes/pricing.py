"""Quote arithmetic: exact decimals and one stated rounding rule (pure, no database).

The rule, per line:

- ``amount = quantity x unit_price``, kept exact (not rounded);
- ``discount = amount x discount% / 100``, rounded to the cent, half up;
- ``net = amount - discount`` (exact: ``amount`` may have more than two decimals);
- ``tax = net x tax_rate% / 100``, rounded to the cent, half up;
- ``line total = net + tax``, rounded to the cent, half up.

Shown on the line: ``line_subtotal`` = ``amount`` rounded to the cent (half up).

Per quote:

- ``subtotal`` = the sum of the exact amounts, rounded to the cent (half up);
- ``discount_total`` = the sum of the line discounts; ``tax_total`` = the sum of the
  line taxes;
- ``total = subtotal - discount_total + tax_total``.

Taxes are computed per line (not on the quote's net) so that every line on a printed
quote adds up on its own and lines with different tax rates need no apportioning. When
the exact amounts have at most two decimals (the usual case: a quantity of whole units)
``total`` equals the sum of the line totals; :func:`quote_totals` checks it then.

For approval, a unit price below the price book's list price counts as a discount too
(:func:`effective_discount`), so a lowered price cannot slip past the threshold.

Example from the issue: 3 x 19.99 at 12.5 % discount and 8.25 % tax: amount 59.97,
discount 7.49625 -> 7.50, net 52.47, tax 4.328775 -> 4.33, total 56.80.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)


def to_cent(value: Decimal) -> Decimal:
    """Round to the cent, halves away from zero (0.005 -> 0.01)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _decimal(value: Decimal | int | str | None) -> Decimal:
    """Decimals, ints and decimal strings only: a float would bring binary noise."""
    if value is None:
        return Decimal(0)
    if isinstance(value, float | bool):
        raise TypeError("Quote arithmetic takes Decimal values, never floats.")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError("Quote arithmetic takes finite numbers.")
    return result


@dataclass(frozen=True)
class LineAmounts:
    """What one line comes to: ``amount`` is exact, the others are in cents."""

    amount: Decimal
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class QuoteTotals:
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal
    #: The largest line discount (percent); 0 without lines.
    max_discount: Decimal


def line_amounts(
    quantity: Decimal | int | str,
    unit_price: Decimal | int | str,
    discount_percent: Decimal | int | str | None = None,
    tax_rate: Decimal | int | str | None = None,
) -> LineAmounts:
    """One line's amounts by the module's rule."""
    quantity, unit_price = _decimal(quantity), _decimal(unit_price)
    discount_percent, tax_rate = _decimal(discount_percent), _decimal(tax_rate)
    if quantity < 0 or unit_price < 0:
        raise ValueError("Quantity and unit price cannot be negative.")
    if not 0 <= discount_percent <= 100 or not 0 <= tax_rate <= 100:
        raise ValueError("Discount and tax rate are percentages between 0 and 100.")
    amount = quantity * unit_price
    discount = to_cent(amount * discount_percent / HUNDRED)
    net = amount - discount
    tax = to_cent(net * tax_rate / HUNDRED)
    return LineAmounts(
        amount=amount,
        subtotal=to_cent(amount),
        discount=discount,
        tax=tax,
        total=to_cent(net + tax),
    )


@dataclass(frozen=True)
class LineInput:
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal = ZERO
    tax_rate: Decimal = ZERO


def quote_totals(lines: Iterable[LineInput]) -> QuoteTotals:
    """The quote's totals from its lines, by the module's rule."""
    amounts: list[LineAmounts] = []
    max_discount = Decimal(0)
    for line in lines:
        amounts.append(
            line_amounts(line.quantity, line.unit_price, line.discount_percent, line.tax_rate)
        )
        max_discount = max(max_discount, _decimal(line.discount_percent))
    subtotal = to_cent(sum((a.amount for a in amounts), Decimal(0)))
    discount_total = sum((a.discount for a in amounts), ZERO)
    tax_total = sum((a.tax for a in amounts), ZERO)
    total = subtotal - discount_total + tax_total
    if all(a.amount == a.subtotal for a in amounts):
        # Whole-cent amounts: the quote's total and the lines' totals must agree (they do
        # by construction; a log line, not a failure, should a later change break it).
        lines_total = sum((a.total for a in amounts), ZERO)
        if total != lines_total:
            log.error("quote arithmetic diverged: total %s, lines %s", total, lines_total)
    return QuoteTotals(
        subtotal=to_cent(subtotal),
        discount_total=to_cent(discount_total),
        tax_total=to_cent(tax_total),
        total=to_cent(total),
        max_discount=max_discount,
    )


def effective_discount(
    unit_price: Decimal | int | str,
    discount_percent: Decimal | int | str | None,
    list_price: Decimal | int | str | None,
) -> Decimal:
    """The discount (percent) the customer gets off the list price: the line's discount
    combined with a unit price below the list price; rounded up to 0.01 so that any
    excess over a threshold shows."""
    unit_price, discount = _decimal(unit_price), _decimal(discount_percent)
    if list_price is None or _decimal(list_price) <= 0 or unit_price >= _decimal(list_price):
        return discount
    paid = unit_price * (HUNDRED - discount) / HUNDRED
    off = (Decimal(1) - paid / _decimal(list_price)) * HUNDRED
    return max(discount, min(HUNDRED, off.quantize(CENT, rounding=ROUND_UP)))
