"""The kanban board of a pipeline: a column per stage with its count, its totals per
currency and its cards, all read through the viewer's record service (permission,
record scope and field security apply; a rep sees only what their scope holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from bastion.api import Filter, Money, RecordService, users_info
from bastion_sales.pipelines.config import (
    Pipeline,
    Stage,
    list_pipelines,
    stages_of,
)

#: Cards shown per column; the rest are behind a link to the filtered list.
CARDS_PER_COLUMN = 50
CARD_FIELDS = ("name", "account", "amount", "close_date", "stage", "pipeline", "outcome")


@dataclass
class Card:
    id: int
    version: int
    name: str
    account_name: str | None
    amount: Money | None
    close_date: date | None
    owner_name: str | None
    outcome: str | None


@dataclass
class Column:
    stage: Stage
    count: int = 0
    #: Total amount per currency code, in code order.
    totals: list[Money] = field(default_factory=list)
    #: Deals in the column without an amount (in no total).
    without_amount: int = 0
    cards: list[Card] = field(default_factory=list)

    @property
    def more(self) -> int:
        return max(0, self.count - len(self.cards))


@dataclass
class Board:
    pipeline: Pipeline
    pipelines: list[Pipeline]
    columns: list[Column]
    #: Stages a card may move to (id, name), for the "Move to" menus.
    choices: list[tuple[int, str]]


def choose_pipeline(service: RecordService, wanted: int | None) -> tuple[Pipeline | None, list]:
    """The pipeline asked for (when the viewer can read it), else the default one.

    The switcher lists the active pipelines, then the inactive ones (labelled so: their
    deals can still be looked at and moved)."""
    pipelines = list_pipelines(service)
    active = [p for p in pipelines if p.active]
    shown = active + [p for p in pipelines if not p.active]
    if wanted is not None:
        chosen = next((p for p in shown if p.id == wanted), None)
        if chosen is not None:
            return chosen, shown
    return (active[0] if active else None), shown


def build_board(service: RecordService, pipeline: Pipeline, pipelines: list[Pipeline]) -> Board:
    stages = stages_of(service, pipeline.id)
    columns = {stage.id: Column(stage) for stage in stages}
    in_pipeline = [Filter("pipeline", "eq", pipeline.id)]
    sums = ("amount",) if _readable(service, "amount") else ()
    for row in service.aggregate(
        "opportunities", group_by=("stage",), sums=sums, filters=in_pipeline
    ):
        column = columns.get(row.key.get("stage"))
        if column is None:
            continue  # no stage (or a stage of another pipeline): not on this board
        column.count += row.count
        total = row.sums.get("amount")
        if isinstance(total, Money) and total.currency:
            column.totals.append(total)
        elif sums:
            # Deals without an amount (or without a currency): counted, not summed, and
            # said so next to the totals.
            column.without_amount += row.count
    for column in columns.values():
        column.totals = _merged(column.totals)
        if column.count:
            column.cards = _cards(service, pipeline.id, column.stage.id)
    _add_names(service, list(columns.values()))
    return Board(
        pipeline=pipeline,
        pipelines=pipelines,
        columns=list(columns.values()),
        choices=[(stage.id, stage.name) for stage in stages],
    )


def _readable(service: RecordService, name: str) -> bool:
    meta = service.object("opportunities")
    return service.field_access(meta).get(name, "hidden") != "hidden"


def _merged(totals: list[Money]) -> list[Money]:
    by_code: dict[str, Decimal] = {}
    for money in totals:
        by_code[money.currency] = by_code.get(money.currency, Decimal(0)) + money.amount
    return [Money(amount, code) for code, amount in sorted(by_code.items())]


def _cards(service: RecordService, pipeline_id: int, stage_id: int) -> list[Card]:
    meta = service.object("opportunities")
    access = service.field_access(meta)
    wanted = [n for n in (*CARD_FIELDS, "owner") if access.get(n, "hidden") != "hidden"]
    page = service.query(
        "opportunities",
        filters=[Filter("pipeline", "eq", pipeline_id), Filter("stage", "eq", stage_id)],
        sort="close_date,name",
        limit=CARDS_PER_COLUMN,
        fields=wanted,
    )
    cards = []
    for record in page.records:
        values = record.values
        cards.append(
            Card(
                id=record.id,
                version=record.version,
                name=values.get("name") or f"Opportunity {record.id}",
                account_name=values.get("account"),  # an id until _add_names
                amount=values.get("amount"),
                close_date=values.get("close_date"),
                owner_name=values.get("owner"),  # an id until _add_names
                outcome=values.get("outcome"),
            )
        )
    return cards


def _add_names(service: RecordService, columns: list[Column]) -> None:
    """Replace account and owner ids by names: one query for all accounts (through the
    viewer's service: an account they may not see has no name here), one for owners."""
    cards = [card for column in columns for card in column.cards]
    account_ids = {c.account_name for c in cards if isinstance(c.account_name, int)}
    accounts = service.names("accounts", account_ids) if account_ids else {}
    owner_ids = {c.owner_name for c in cards if isinstance(c.owner_name, int)}
    owners = users_info(owner_ids) if owner_ids else {}
    for card in cards:
        account: Any = card.account_name
        card.account_name = accounts.get(account) if isinstance(account, int) else None
        owner: Any = card.owner_name
        info = owners.get(owner) if isinstance(owner, int) else None
        card.owner_name = info.name if info else None
