"""Reading the forecast's choices from a query string (page, htmx and JSON alike)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from .compute import BY_CHOICES
from .periods import KINDS, QUARTER, Period, PeriodError, period_range


@dataclass(frozen=True)
class ForecastChoice:
    kind: str
    by: str
    periods: list[Period]
    start: str
    end: str


def read_choice(
    args: Mapping[str, str], *, today: date | None = None, ahead: bool = False
) -> ForecastChoice:
    """period=month|quarter, by=owner|team, from / to = periods; PeriodError when unusable.

    ``ahead``: without from / to, the coming periods (the page) rather than the current
    quarter (the API's documented default)."""
    kind = (args.get("period") or QUARTER).strip().lower()
    by = (args.get("by") or "owner").strip().lower()
    if kind not in KINDS:
        raise PeriodError("Choose period=month or period=quarter.")
    if by not in BY_CHOICES:
        raise PeriodError("Choose by=owner or by=team.")
    start = (args.get("from") or "").strip() or None
    end = (args.get("to") or "").strip() or None
    periods = period_range(kind, start, end, today=today, ahead=ahead)
    return ForecastChoice(kind, by, periods, periods[0].key, periods[-1].key)


def default_choice(args: Mapping[str, str]) -> ForecastChoice:
    """The page's fallback after a bad request: the default range (this period and the
    next ones), kind and by kept when they were valid."""
    kind = args.get("period") if args.get("period") in KINDS else QUARTER
    by = args.get("by") if args.get("by") in BY_CHOICES else "owner"
    periods = period_range(kind, ahead=True)
    return ForecastChoice(kind, by, periods, periods[0].key, periods[-1].key)
