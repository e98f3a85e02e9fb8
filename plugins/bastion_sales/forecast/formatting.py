"""How amounts and percents look on pages (the JSON API gives plain decimal strings)."""

from __future__ import annotations

from decimal import Decimal

from .compute import cents


def amount(value: Decimal | None) -> str:
    """1234.5 -> "1,234.50": rounded to cents half up, like every forecast cell."""
    if value is None:
        return "—"
    return f"{cents(value):,}"


def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"
