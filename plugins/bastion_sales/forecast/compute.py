"""The forecast: open pipeline per period and owner or team, by forecast category.

Everything is read through the user's record service with two ``aggregate`` calls
(SQL GROUP BY; open deals by period, owner, probability and forecast category, won
deals by period and owner; both summing the amount), so the forecast covers exactly
the opportunities the user's record scope reaches and never loads the records.

Rules (also in docs/sales.md, "Forecast and quotas"):

- Open opportunities count in their forecast category: commit, best case or pipeline
  (no category: pipeline). "Omitted" is shown apart and is in no total.
- Won opportunities (outcome won) are shown in their own column, apart from the open
  totals; lost ones are left out.
- Weighted amount = amount x probability / 100 (no probability: 0), summed exactly
  with Decimal. Each displayed cell (and JSON value) is the exact sum rounded once to
  cents, ROUND_HALF_UP; totals are rounded from the exact sums, never summed from
  rounded cells.
- Amounts are per currency, never converted: a group with deals in two currencies has
  a row for each.
- Opportunities without an amount add nothing and are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bastion.api import BadQuery, Filter

from .people import Directory, Group
from .periods import Period

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
#: Forecast categories with a column of their own that count in the totals, in order.
CATEGORIES = ("commit", "best_case", "pipeline")
CATEGORY_LABELS = {
    "commit": "Commit",
    "best_case": "Best case",
    "pipeline": "Pipeline",
    "omitted": "Omitted",
}
BY_CHOICES = ("owner", "team")
ROUNDING_RULE = (
    "Weighted amount = amount x probability / 100, summed exactly; each shown value is "
    "rounded once to cents, half up."
)
CURRENCY_NOTE = "Amounts are per currency; nothing is converted."


def cents(value: Decimal | int) -> Decimal:
    """The rule for every shown amount: to cents, half up."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Cell:
    """Exact sums of one cell: amount, weighted amount, number of opportunities."""

    amount: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)
    count: int = 0

    def add(self, amount: Decimal, weighted: Decimal, count: int) -> None:
        self.amount += amount
        self.weighted += weighted
        self.count += count

    def absorb(self, other: Cell) -> None:
        self.add(other.amount, other.weighted, other.count)

    def as_json(self) -> dict[str, Any]:
        return {
            "amount": str(cents(self.amount)),
            "weighted": str(cents(self.weighted)),
            "count": self.count,
        }


@dataclass
class Line:
    """One row of the table: a group (owner or team) in one currency."""

    group: Group
    currency: str
    categories: dict[str, Cell] = field(default_factory=lambda: {c: Cell() for c in CATEGORIES})
    omitted: Cell = field(default_factory=Cell)
    won: Cell = field(default_factory=Cell)

    @property
    def total(self) -> Cell:
        """Open, not omitted: the sum of the category columns."""
        total = Cell()
        for cell in self.categories.values():
            total.absorb(cell)
        return total

    @property
    def is_zero(self) -> bool:
        """Every amount is zero (deals without value): the page leaves such a row out,
        it says nothing a reader could act on. The JSON keeps it (counts matter there)."""
        cells = [*self.categories.values(), self.omitted, self.won]
        return all(cell.amount == 0 for cell in cells)

    def absorb(self, other: Line) -> None:
        for name, cell in other.categories.items():
            self.categories[name].absorb(cell)
        self.omitted.absorb(other.omitted)
        self.won.absorb(other.won)

    def as_json(self, by: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            f"{by}_id": self.group.id,
            "name": self.group.name,
            "currency": self.currency,
        }
        for name, cell in self.categories.items():
            data[name] = cell.as_json()
        data["total"] = self.total.as_json()
        data["omitted"] = self.omitted.as_json()
        won = self.won.as_json()
        del won["weighted"]  # won is won: its weighted amount is the amount
        data["won"] = won
        return data


@dataclass
class Section:
    """The rows of one period (or of the whole range), and their totals per currency."""

    period: Period | None
    lines: list[Line]
    totals: list[Line]

    def as_json(self, by: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.period is not None:
            data = {"period": self.period.key, "label": self.period.label}
        data["rows"] = [line.as_json(by) for line in self.lines]
        data["totals"] = [line.as_json(by) for line in self.totals]
        return data


@dataclass
class Forecast:
    kind: str
    by: str
    periods: list[Period]
    sections: list[Section]
    overall: Section

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.kind,
            "by": self.by,
            "from": self.periods[0].key,
            "to": self.periods[-1].key,
            "categories": list(CATEGORIES),
            "rounding": ROUNDING_RULE,
            "currencies": CURRENCY_NOTE,
            "periods": [section.as_json(self.by) for section in self.sections],
            "overall": self.overall.as_json(self.by),
        }


def key_value(row: Any, name: str) -> Any:
    """A group key of an aggregate row, by the name it was asked with."""
    key = row.key
    if name in key:
        return key[name]
    return key.get(name.split(":", 1)[0])


def money_parts(value: Any) -> tuple[Decimal, str] | None:
    """(amount, currency) of a summed currency field; None when nothing was summed."""
    if value is None:
        return None
    amount = getattr(value, "amount", value)
    currency = getattr(value, "currency", "") or ""
    if amount is None or (not currency and not amount):
        return None  # only records without an amount: no currency to put them in
    return Decimal(amount), currency


def build_forecast(
    rows: Iterable[Any],
    *,
    kind: str,
    by: str,
    periods: list[Period],
    group_of: Callable[[int | None], Group],
    won_rows: Iterable[Any] = (),
) -> Forecast:
    """Arrange aggregate rows into the forecast.

    ``rows``: open opportunities grouped by period, owner, probability and forecast
    category (an ``outcome`` key, when present, is honoured: won and lost rows are
    then placed or dropped too); ``won_rows``: won opportunities grouped by period and
    owner. Both sum ``amount``."""
    period_key = f"close_date:{kind}"
    wanted = {p.key: p for p in periods}
    cells: dict[tuple[str, Group, str], Line] = {}
    tagged = [(row, None) for row in rows] + [(row, "won") for row in won_rows]
    for row, known in tagged:
        period = wanted.get(str(key_value(row, period_key)))
        parts = money_parts(row.sums.get("amount"))
        outcome = known or key_value(row, "outcome") or "open"
        if period is None or parts is None or outcome == "lost":
            continue
        amount, currency = parts
        group = group_of(key_value(row, "owner"))
        line = cells.get((period.key, group, currency))
        if line is None:
            line = cells[(period.key, group, currency)] = Line(group, currency)
        if outcome == "won":
            line.won.add(amount, amount, row.count)
            continue
        probability = key_value(row, "probability")
        weighted = (
            amount * Decimal(str(probability)) / HUNDRED if probability is not None else Decimal(0)
        )
        category = key_value(row, "forecast_category") or "pipeline"
        target = line.omitted if category == "omitted" else line.categories.get(category)
        if target is None:  # an option added later: counts as pipeline
            target = line.categories["pipeline"]
        target.add(amount, weighted, row.count)
    sections = []
    overall_lines: dict[tuple[Group, str], Line] = {}
    for period in periods:
        lines = [line for (key, _, _), line in cells.items() if key == period.key]
        for line in lines:
            merged = overall_lines.setdefault(
                (line.group, line.currency), Line(line.group, line.currency)
            )
            merged.absorb(line)
        sections.append(Section(period, _ordered(lines), _totals(lines)))
    overall = list(overall_lines.values())
    return Forecast(kind, by, periods, sections, Section(None, _ordered(overall), _totals(overall)))


def _ordered(lines: list[Line]) -> list[Line]:
    return sorted(
        lines, key=lambda line: (line.group.name.lower(), line.group.id or 0, line.currency)
    )


def _totals(lines: list[Line]) -> list[Line]:
    totals: dict[str, Line] = {}
    for line in lines:
        totals.setdefault(line.currency, Line(Group(None, "Total"), line.currency)).absorb(line)
    return [totals[currency] for currency in sorted(totals)]


def compute_forecast(
    service: Any,
    *,
    kind: str,
    by: str,
    periods: list[Period],
    directory: Directory | None = None,
) -> Forecast:
    """The forecast of the opportunities ``service``'s user may read: two GROUP BY
    queries, open deals (by period, owner, probability, category) and won ones (by
    period and owner); lost deals and deals without an amount are left out in SQL."""
    period_key = f"close_date:{kind}"
    has_amount = Filter("amount", "empty", False)
    open_rows = _per_period(
        service,
        group_by=[period_key, "owner", "probability", "forecast_category"],
        filters=[has_amount, Filter("outcome", "ne", "won"), Filter("outcome", "ne", "lost")],
        periods=periods,
    )
    won_rows = _per_period(
        service,
        group_by=[period_key, "owner"],
        filters=[has_amount, Filter("outcome", "eq", "won")],
        periods=periods,
    )
    directory = directory or Directory()
    directory.prefetch(key_value(row, "owner") for row in [*open_rows, *won_rows])
    return build_forecast(
        open_rows,
        won_rows=won_rows,
        kind=kind,
        by=by,
        periods=periods,
        group_of=lambda owner: directory.group(by, owner),
    )


def _between(first: Period, last: Period) -> list[Filter]:
    return [
        Filter("close_date", "gte", first.first_day.isoformat()),
        Filter("close_date", "lte", last.last_day.isoformat()),
    ]


def _per_period(
    service: Any, *, group_by: list[str], filters: list[Filter], periods: list[Period]
) -> list[Any]:
    """One aggregate over the whole range; when that makes more groups than the core
    answers at once, one aggregate per period (each is a fraction of the groups). A
    single period with too many groups is refused as the core refuses it."""
    try:
        return service.aggregate(
            "opportunities",
            group_by=group_by,
            sums=["amount"],
            filters=[*filters, *_between(periods[0], periods[-1])],
        )
    except BadQuery as exc:
        if exc.field != "group_by" or len(periods) == 1:
            raise
    rows: list[Any] = []
    for period in periods:
        rows.extend(
            service.aggregate(
                "opportunities",
                group_by=group_by,
                sums=["amount"],
                filters=[*filters, *_between(period, period)],
            )
        )
    return rows
