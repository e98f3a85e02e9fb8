"""Dashboard cards: "Pipeline by stage" and "Won this quarter vs quota".

Each is a couple of GROUP BY queries through the user's record service (built when
the dashboard is shown), so they cost the same for ten opportunities or ten thousand
and show only what the user's record scope reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bastion.api import (
    BadQuery,
    DashboardWidget,
    Filter,
    RecordError,
    get_logger,
    request_service,
)

from . import formatting
from .compute import money_parts
from .people import Directory, Group, managed_member_ids
from .periods import current_quarter
from .quotas import Attainment, attainment, team_totals

log = get_logger("sales")


@dataclass
class StageBar:
    name: str
    count: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)
    #: Bar length in steps of 5 (0-100), a CSS class: inline styles are not allowed.
    width: int = 0


def _default_pipeline(service: Any) -> Any:
    if not service.can("pipelines", "read"):
        return None
    for filters in ([Filter("is_default", "eq", True)], [Filter("active", "eq", True)], []):
        page = service.query("pipelines", filters=filters, sort="id", limit=1)
        if page.records:
            return page.records[0]
    return None


def pipeline_by_stage(service: Any) -> dict[str, Any] | None:
    """Open opportunities of the default pipeline per stage: count and amount."""
    pipeline = _default_pipeline(service)
    if pipeline is None or not service.can("pipeline_stages", "read"):
        return None
    stages = service.query(
        "pipeline_stages",
        filters=[Filter("pipeline", "eq", pipeline.id), Filter("outcome", "eq", "open")],
        sort="position",
        limit=200,
    ).records
    bars = {stage.id: StageBar(stage.get("name") or f"Stage {stage.id}") for stage in stages}
    in_pipeline = [Filter("pipeline", "eq", pipeline.id), Filter("outcome", "eq", "open")]
    amounts_shown = True
    try:
        rows = service.aggregate(
            "opportunities", group_by=["stage"], sums=["amount"], filters=in_pipeline
        )
    except BadQuery as exc:
        if exc.field != "amount":
            raise
        # The amount is hidden from this role: the bars show counts only.
        rows = service.aggregate("opportunities", group_by=["stage"], filters=in_pipeline)
        amounts_shown = False
    for row in rows:
        bar = bars.get(row.key.get("stage"))
        if bar is None:  # a stage of another pipeline or none: not on this chart
            continue
        bar.count += row.count
        parts = money_parts(row.sums.get("amount"))
        if parts is not None:
            amount, currency = parts
            bar.amounts[currency] = bar.amounts.get(currency, Decimal(0)) + amount
    ordered = list(bars.values())
    currencies = {c for bar in ordered for c in bar.amounts}
    # One currency: bars by amount; several (not comparable): bars by count.
    if len(currencies) == 1:
        currency = next(iter(currencies))
        measure = {id(bar): bar.amounts.get(currency, Decimal(0)) for bar in ordered}
    else:
        measure = {id(bar): Decimal(bar.count) for bar in ordered}
    largest = max(measure.values(), default=Decimal(0))
    for bar in ordered:
        if largest > 0:
            bar.width = int((measure[id(bar)] * 20 / largest).to_integral_value()) * 5
    return {
        "pipeline": pipeline.get("name"),
        "bars": ordered,
        "by_amount": len(currencies) == 1,
        "amounts_shown": amounts_shown,
        "money": formatting.amount,
    }


def won_vs_quota(service: Any, user: Any) -> dict[str, Any] | None:
    """The user's won amount this quarter against their quota; a manager's team too
    (attainment over the members with a quota, the others' wins apart). None when the
    won amounts cannot be read (a hidden field): no card rather than a wrong one."""
    quarter = current_quarter()
    directory = Directory()
    mine = attainment(service, quarter, owners=[user.id], directory=directory)
    if mine.problem:
        log.info("Sales quota card skipped: %s", mine.problem)
        return None
    team: list[Attainment] | None = None
    members = managed_member_ids(user.id, directory)
    if members:
        report = attainment(service, quarter, owners=members, directory=directory)
        team = team_totals(report.owners, lambda row: Group(None, "Your teams"))
    return {
        "quarter": quarter,
        "own": mine.owners,
        "team": team,
        "money": formatting.amount,
        "percent": formatting.percent,
    }


def widgets(user: Any) -> list[DashboardWidget]:
    """Each card on its own: one that cannot be built (a field hidden from the role)
    leaves the other in place."""
    service = request_service()
    if not service.can("opportunities", "read"):
        return []
    cards = []
    try:
        stages = pipeline_by_stage(service)
        if stages is not None:
            cards.append(
                DashboardWidget(
                    title="Pipeline by stage",
                    template="sales/forecast/_widget_pipeline.html",
                    context=stages,
                    order=210,
                )
            )
    except RecordError as exc:
        log.info("Sales pipeline card skipped: %s", exc.message)
    try:
        quota = won_vs_quota(service, user)
        if quota is not None:
            cards.append(
                DashboardWidget(
                    title="Won this quarter vs quota",
                    template="sales/forecast/_widget_quota.html",
                    context=quota,
                    order=220,
                )
            )
    except RecordError as exc:
        log.info("Sales quota card skipped: %s", exc.message)
    return cards
