"""Forecast periods: months ("2026-11") and quarters ("2026-Q4"), and ranges of them.

Periods are strings in the same form the core's ``aggregate`` uses for
``"<date field>:month"`` and ``":quarter"`` keys and that ``sales_quotas.period``
stores, so rows, quotas and URLs all speak one language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

MONTH = "month"
QUARTER = "quarter"
KINDS = (MONTH, QUARTER)
#: The longest range a forecast covers (a bigger request is refused, not truncated).
MAX_PERIODS = {MONTH: 24, QUARTER: 8}
#: Periods shown after the current one when no range is asked for (a year ahead by
#: quarter, half a year by month: months beyond that are too many columns to read).
DEFAULT_AHEAD = {MONTH: 5, QUARTER: 3}
#: Years a period may lie in: every period, its neighbours (the quotas page links the
#: previous and next one) and its first and last day must be real dates.
FIRST_YEAR, LAST_YEAR = 1900, 9998

_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_QUARTER_RE = re.compile(r"^(\d{4})-Q([1-4])$")


class PeriodError(ValueError):
    """A period or range the user typed cannot be used; the message says why."""


@dataclass(frozen=True, order=True)
class Period:
    """One month or quarter; ``index`` counts months or quarters since year 0."""

    kind: str
    index: int

    @property
    def year(self) -> int:
        per_year = 12 if self.kind == MONTH else 4
        return self.index // per_year

    @property
    def number(self) -> int:
        """The month (1-12) or quarter (1-4) within the year."""
        per_year = 12 if self.kind == MONTH else 4
        return self.index % per_year + 1

    @property
    def key(self) -> str:
        if self.kind == MONTH:
            return f"{self.year:04d}-{self.number:02d}"
        return f"{self.year:04d}-Q{self.number}"

    @property
    def label(self) -> str:
        if self.kind == MONTH:
            return self.first_day.strftime("%b %Y")
        return f"Q{self.number} {self.year}"

    @property
    def first_day(self) -> date:
        month = self.number if self.kind == MONTH else (self.number - 1) * 3 + 1
        return date(self.year, month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def next(self) -> Period:
        return Period(self.kind, self.index + 1)

    def months(self) -> list[Period]:
        """The months of a quarter (a month is its own only month)."""
        if self.kind == MONTH:
            return [self]
        first = self.year * 12 + (self.number - 1) * 3
        return [Period(MONTH, first + i) for i in range(3)]

    def quarter(self) -> Period:
        """The quarter a month lies in (a quarter is its own quarter)."""
        if self.kind == QUARTER:
            return self
        return Period(QUARTER, self.year * 4 + (self.number - 1) // 3)

    def __str__(self) -> str:
        return self.key


def parse_period(text: str) -> Period:
    """ "2026-11" or "2026-Q4" (case-insensitive q) -> Period; PeriodError otherwise."""
    cleaned = (text or "").strip().upper()
    found = _MONTH_RE.match(cleaned)
    if found:
        return Period(MONTH, _year(found[1]) * 12 + int(found[2]) - 1)
    found = _QUARTER_RE.match(cleaned)
    if found:
        return Period(QUARTER, _year(found[1]) * 4 + int(found[2]) - 1)
    raise PeriodError(
        f"{text!r} is not a period: write a month as 2026-11 or a quarter as 2026-Q4."
    )


def _year(digits: str) -> int:
    year = int(digits)
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise PeriodError(f"Choose a year from {FIRST_YEAR} to {LAST_YEAR}, not {digits}.")
    return year


def period_of(day: date, kind: str) -> Period:
    if kind == MONTH:
        return Period(MONTH, day.year * 12 + day.month - 1)
    return Period(QUARTER, day.year * 4 + (day.month - 1) // 3)


def utc_today() -> date:
    """Today in UTC: the server's own zone must not move a deal to another quarter."""
    return datetime.now(UTC).date()


def current_quarter(today: date | None = None) -> Period:
    return period_of(today or utc_today(), QUARTER)


def period_range(
    kind: str,
    start: str | None = None,
    end: str | None = None,
    *,
    today: date | None = None,
    ahead: bool = False,
) -> list[Period]:
    """The periods of ``kind`` from ``start`` to ``end`` (inclusive).

    Defaults: the current quarter (its three months for ``month``), the API's stable
    contract; with ``ahead`` (the page) the current period and the next ones
    (``DEFAULT_AHEAD``) - a forecast looks ahead, and a deal closing next month must not
    vanish from the first view. A start or end of the other kind is converted (a
    quarter start becomes its first month, a month end its quarter), so switching the
    period kind keeps the range."""
    if kind not in KINDS:
        raise PeriodError("Choose the period kind month or quarter.")
    first = _as_kind(parse_period(start), kind, last=False) if start else None
    last = _as_kind(parse_period(end), kind, last=True) if end else None
    if first is None and last is None and ahead:
        first = period_of(today or utc_today(), kind)
        last = Period(kind, first.index + DEFAULT_AHEAD[kind])
    elif first is None and last is None:
        quarter = current_quarter(today)
        first, last = _as_kind(quarter, kind, last=False), _as_kind(quarter, kind, last=True)
    elif first is None:
        first = last
    elif last is None:
        last = first
    if last < first:
        raise PeriodError(f"The range ends ({last.key}) before it starts ({first.key}).")
    count = last.index - first.index + 1
    if count > MAX_PERIODS[kind]:
        raise PeriodError(
            f"Choose at most {MAX_PERIODS[kind]} {kind}s; {first.key} to {last.key} is {count}."
        )
    return [Period(kind, i) for i in range(first.index, last.index + 1)]


def _as_kind(period: Period, kind: str, *, last: bool) -> Period:
    if period.kind == kind:
        return period
    if kind == QUARTER:
        return period.quarter()
    months = period.months()
    return months[-1] if last else months[0]
