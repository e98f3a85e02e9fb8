"""Quotas (``sales_quotas``) and attainment: won amount against quota per owner and team.

Rules (also in docs/sales.md):

- A quota belongs to its owner (the person) and one period, a month ("2026-11") or a
  quarter ("2026-Q4"). One quota per owner and period: a second one is refused when it
  is saved on its own (form, API create or update) while the first is visible to the
  writer. Rows of one import batch, or two saves at the same instant, are not checked
  against each other; should duplicates exist, the latest (highest id) counts.
- Attainment = won amount (outcome won, close date within the period) / quota x 100,
  a Decimal rounded to one decimal place, half up. No quota (or a zero quota): no
  attainment, the won amount is still shown.
- For a quarter the owner's quarter quota counts when there is one; otherwise the sum
  of their quotas for the quarter's three months. A month uses its month quota only
  (a quarter quota is never split into months).
- Quota and won amount are compared in the same currency only; nothing is converted.
- Team totals: over the members (owners whose team is that team) that have a quota:
  the sum of their quotas, of their won amounts, and that attainment. What members
  without a quota won is shown apart ("won without quota"), never in the attainment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bastion.api import Filter, RecordChange, RecordError, RecordService

from .compute import money_parts
from .people import Directory, Group
from .periods import MONTH, Period, PeriodError, parse_period

TENTH = Decimal("0.1")


def attainment_percent(won: Decimal, quota: Decimal | None) -> Decimal | None:
    """won / quota in percent, one decimal, half up; None without a (positive) quota."""
    if quota is None or quota <= 0:
        return None
    return (won * 100 / quota).quantize(TENTH, rounding=ROUND_HALF_UP)


@dataclass
class Attainment:
    """One owner's (or team's) quota and won amount in one currency for one period."""

    group: Group
    currency: str
    quota: Decimal | None = None
    won: Decimal = Decimal(0)
    won_count: int = 0
    #: How the quota was found: "quarter", "months" (sum of month quotas) or "month".
    source: str = ""
    #: Team rows: won by members without a quota (not in ``won`` nor the percent).
    other_won: Decimal = Decimal(0)
    other_count: int = 0

    @property
    def percent(self) -> Decimal | None:
        return attainment_percent(self.won, self.quota)

    @property
    def bar_width(self) -> int:
        """The percent in steps of 5, at most 100 (a CSS class: no inline styles)."""
        percent = self.percent
        if percent is None:
            return 0
        return min(100, int(percent // 5) * 5)

    def as_json(self, by: str) -> dict[str, Any]:
        return {
            f"{by}_id": self.group.id,
            "name": self.group.name,
            "currency": self.currency,
            "quota": None if self.quota is None else str(self.quota),
            "won": str(self.won),
            "attainment_percent": None if self.percent is None else str(self.percent),
            "quota_from": self.source or None,
        }

    def absorb(self, row: Attainment) -> None:
        """Add a member's row to this team total (only members with a quota count)."""
        if row.quota is None:
            self.other_won += row.won
            self.other_count += row.won_count
            return
        self.quota = (self.quota or Decimal(0)) + row.quota
        self.won += row.won
        self.won_count += row.won_count


def team_totals(rows: Iterable[Attainment], group_of: Any) -> list[Attainment]:
    """Rows summed per ``group_of(row)`` and currency, by the team rule above."""
    totals: dict[tuple[Group, str], Attainment] = {}
    for row in rows:
        group = group_of(row)
        total = totals.setdefault((group, row.currency), Attainment(group, row.currency))
        total.absorb(row)
    return sorted(totals.values(), key=lambda a: (a.group.name.lower(), a.currency))


@dataclass
class AttainmentReport:
    period: Period
    owners: list[Attainment]
    teams: list[Attainment] = field(default_factory=list)
    #: Why quotas or won amounts are missing (a field hidden from the role).
    problem: str | None = None
    #: False when the won amounts could not be read (the page then hides that column).
    won_shown: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period.key,
            "owners": [a.as_json("owner") for a in self.owners],
            "teams": [a.as_json("team") for a in self.teams],
        }


def period_keys(period: Period) -> list[str]:
    """The quota periods that may make up ``period``'s quota."""
    if period.kind == MONTH:
        return [period.key]
    return [period.key, *(month.key for month in period.months())]


def quotas_for(
    service: Any, period: Period, owners: Iterable[int] | None = None
) -> dict[tuple[int, str], tuple[Decimal, str]]:
    """(owner, currency) -> (quota, source) of the quotas the user may read."""
    if not service.can("sales_quotas", "read"):
        return {}
    filters = [Filter("period", "in", period_keys(period))]
    if owners is not None:
        wanted = sorted(set(owners))
        if not wanted:
            return {}
        filters.append(Filter("owner", "in", wanted))
    # One quota per owner and period: should duplicates exist (an import batch, two
    # saves at once), the latest counts, never their sum. ``iterate`` goes by id.
    latest: dict[tuple[int, str], tuple[Decimal, str]] = {}
    for record in service.iterate("sales_quotas", filters=filters):
        parts = money_parts(record.get("amount"))
        if parts is not None:
            latest[(record.get("owner"), str(record.get("period")))] = parts
    quarter: dict[tuple[int, str], Decimal] = {}
    months: dict[tuple[int, str], Decimal] = {}
    for (owner, key_period), (amount, currency) in latest.items():
        key = (owner, currency)
        if key_period == period.key:
            quarter[key] = quarter.get(key, Decimal(0)) + amount
        else:
            months[key] = months.get(key, Decimal(0)) + amount
    found: dict[tuple[int, str], tuple[Decimal, str]] = {}
    whole = "month" if period.kind == MONTH else "quarter"
    for key, amount in months.items():
        found[key] = (amount, "months")
    for key, amount in quarter.items():
        found[key] = (amount, whole)  # a quarter quota wins over its months
    return found


def won_by_owner(
    service: Any, period: Period, owners: Iterable[int] | None = None
) -> dict[tuple[int, str], tuple[Decimal, int]]:
    """(owner, currency) -> (won amount, count) in the period, one GROUP BY query."""
    filters = [
        Filter("outcome", "eq", "won"),
        Filter("amount", "empty", False),  # a won deal without an amount adds nothing
        Filter("close_date", "gte", period.first_day.isoformat()),
        Filter("close_date", "lte", period.last_day.isoformat()),
    ]
    if owners is not None:
        wanted = sorted(set(owners))
        if not wanted:
            return {}
        filters.append(Filter("owner", "in", wanted))
    found: dict[tuple[int, str], tuple[Decimal, int]] = {}
    for row in service.aggregate(
        "opportunities", group_by=["owner"], sums=["amount"], filters=filters
    ):
        parts = money_parts(row.sums.get("amount"))
        if parts is None:
            continue
        amount, currency = parts
        key = (row.key.get("owner"), currency)
        before = found.get(key, (Decimal(0), 0))
        found[key] = (before[0] + amount, before[1] + row.count)
    return found


def attainment(
    service: Any,
    period: Period,
    *,
    owners: Iterable[int] | None = None,
    directory: Directory | None = None,
) -> AttainmentReport:
    """Quota vs won per owner (and per team) the user may see, for one period."""
    directory = directory or Directory()
    owner_list = None if owners is None else sorted(set(owners))
    problem = None
    try:
        quotas = quotas_for(service, period, owner_list)
    except RecordError as exc:  # a field of quotas hidden from the role
        quotas, problem = {}, f"Quotas cannot be shown: {exc.message}"
    won_shown = True
    try:
        won = won_by_owner(service, period, owner_list)
    except RecordError as exc:  # e.g. the amount of opportunities is hidden from the role
        won, won_shown = {}, False
        problem = " ".join(filter(None, [problem, f"Won amounts cannot be shown: {exc.message}"]))
    keys = sorted(set(quotas) | set(won), key=lambda k: (k[0] or 0, k[1]))
    directory.prefetch(owner for owner, _ in keys)
    rows: list[Attainment] = []
    for key in keys:
        owner_id, currency = key
        quota, source = quotas.get(key, (None, ""))
        won_amount, won_count = won.get(key, (Decimal(0), 0))
        rows.append(
            Attainment(directory.owner(owner_id), currency, quota, won_amount, won_count, source)
        )
    teams = team_totals(rows, lambda row: directory.team(row.group.id))
    rows.sort(key=lambda a: (a.group.name.lower(), a.currency))
    return AttainmentReport(period, rows, teams, problem, won_shown)


# ------------------------------------------------------------------ validation


def check_quota(change: RecordChange) -> dict[str, str] | None:
    """CHANGING["sales_quotas"]: one quota per owner and period."""
    if change.action not in ("create", "update"):
        return None
    before = change.before or {}
    owner = change.values.get("owner", before.get("owner"))
    period = change.values.get("period", before.get("period"))
    if owner is None or not period:
        return None
    try:
        period = parse_period(str(period)).key  # "2026-q4" and "2026-Q4" are one period
    except PeriodError:
        return None  # the field's pattern already refuses it
    if "period" in change.values:
        change.values["period"] = period
    filters = [Filter("owner", "eq", owner), Filter("period", "eq", period)]
    if change.record_id is not None:
        filters.append(Filter("id", "ne", change.record_id))
    if _duplicates(change.actor, filters):
        return {
            "period": f"This person already has a quota for {period}; "
            "change that quota instead of adding another."
        }
    return None


def _duplicates(actor: Any, filters: list[Filter]) -> int:
    """Quotas matching ``filters`` that the writer may see.

    Counted with the writer's own service: the system's would tell a manager whether
    somebody outside their teams has a quota (the core refuses that owner anyway, but
    the message would already have said it). A duplicate the writer cannot see is not
    caught here; attainment then counts the latest quota only."""
    service = RecordService(None, system=True) if actor is None else RecordService(actor)
    try:
        return service.count("sales_quotas", filters=filters)
    except RecordError:  # may not read quotas (or their owner or period) at all
        return 0
