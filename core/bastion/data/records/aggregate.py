"""Aggregates: counts and sums of records grouped by fields, computed by the database.

Forecasts, pipelines and dashboards need totals over many records; reading every
record to add them up would be slow and would hand the caller values it does not need.
``aggregate`` runs one ``GROUP BY`` over the object's table, restricted exactly as
``query`` is (object permission, record scope, the same filters), and refuses fields the
user may not read: a total over a hidden field would reveal it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, String, case, cast, func, literal

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery
from bastion.data.query import AnyOf, Filter
from bastion.data.records.model import MAX_GROUPS, AggregateRow
from bastion.data.values import Money
from bastion.db import db

#: Types whose values add up.
SUMMABLE = frozenset({"integer", "decimal", "percent", "currency"})
#: Types a group key cannot be: several values in one (lists, links) or free text.
NOT_GROUPABLE = frozenset({"long_text", "multi_picklist", "many_to_many", "record_link"})
#: Periods a date or datetime field can be grouped by.
PERIODS = ("month", "quarter", "year")


class AggregateMixin:
    """Counts and sums per group, within the user's permission, scope and field access."""

    def aggregate(
        self,
        object_name: str,
        *,
        group_by: Sequence[str] = (),
        sums: Sequence[str] = (),
        filters: Iterable[Filter | AnyOf] = (),
    ) -> list[AggregateRow]:
        """Count (and sum ``sums`` of) the matching records per distinct ``group_by`` key.

        ``group_by`` items are field names (the key is then the stored value: an id for
        a lookup or ``owner``, the option of a picklist) or ``"<date field>:month"``,
        ``":quarter"``, ``":year"`` (keys "2026-11", "2026-Q4", "2026"; a datetime's
        period is its UTC one). Sums are of integer, decimal, percent and currency
        fields; a currency sum is a ``Money`` and splits its group by currency (a stored
        amount without a currency is in the field's default one). Records with no amount
        form a row of their own whose currency sum is ``Money(0, None)``: no currency,
        so never counted in one. Other empty values add
        nothing; a group's sum over no values is zero. Without ``group_by`` there is
        exactly one row, also when nothing matches (count 0, sums zero, a currency sum
        ``Money(0, <field's default currency>)``). Rows come sorted
        by key (empty keys last). ``BadQuery`` for a field the user cannot read, an
        encrypted field, a sum over a non-number, or more than ``MAX_GROUPS`` groups.
        """
        meta = self.require(object_name, "read")
        table = self.catalog.table(meta.name)
        if isinstance(group_by, str) or isinstance(sums, str):
            raise BadQuery("group_by and sums are lists of field names.")
        dialect = db.session.get_bind().dialect.name
        keys = [(spec, self._group_column(meta, table, spec, dialect)) for spec in group_by]
        summed = [self._summed_field(meta, name) for name in dict.fromkeys(sums)]
        # A stored amount without a currency is in the field's default one; a record
        # without an amount has no currency at all (key NULL), so it never swells the
        # count of a currency's row or shows up as a zero in the default currency.
        currencies = [
            case(
                (
                    table.c[item.name].is_not(None),
                    func.coalesce(table.c[f"{item.name}__currency"], literal(item.currency)),
                ),
                else_=None,
            )
            for item in summed
            if item.type == "currency"
        ]
        group_columns = [column for _, column in keys] + currencies
        columns = [
            *(column.label(f"k{i}") for i, column in enumerate(group_columns)),
            func.count().label("n"),
            *(func.sum(table.c[item.name]).label(f"s{i}") for i, item in enumerate(summed)),
        ]
        # select_from: with only count(*) and no filter the columns name no table, and
        # "SELECT count(*)" alone answers 1 whatever the table holds.
        statement = (
            self._filtered(meta, table, filters).with_only_columns(*columns).select_from(table)
        )
        if group_columns:
            statement = statement.group_by(*group_columns)
        rows = db.session.execute(statement.limit(MAX_GROUPS + 1)).all()
        if len(rows) > MAX_GROUPS:
            raise BadQuery(
                f"That makes more than {MAX_GROUPS:,} groups; group by fewer fields or "
                "coarser periods, or filter the records first.",
                field="group_by",
            )
        result = []
        for row in rows:
            # Keys are stored values as read (ids, options, dates); periods are text.
            key = {spec: getattr(row, f"k{i}") for i, (spec, _) in enumerate(keys)}
            codes = iter(getattr(row, f"k{i}") for i in range(len(keys), len(group_columns)))
            totals: dict[str, Any] = {}
            for i, item in enumerate(summed):
                total = _total(item, getattr(row, f"s{i}"))
                if item.type == "currency":
                    # Currency None: the group's records have no amount (its sum is 0).
                    total = Money(total, next(codes))
                totals[item.name] = total
            result.append(AggregateRow(key, int(row.n), totals))
        if not keys and not result:
            # No group_by means one row, also when nothing matches (grouping by currency
            # alone would otherwise answer no row at all): zeros, a currency sum in the
            # field's default currency.
            empty = {item.name: _total(item, None) for item in summed}
            for item in summed:
                if item.type == "currency":
                    empty[item.name] = Money(empty[item.name], item.currency)
            result.append(AggregateRow({}, 0, empty))
        result.sort(key=lambda r: [_order(r.key[spec]) for spec, _ in keys] + _money_order(r))
        return result

    def _group_column(self, meta: ObjectMeta, table: Any, spec: Any, dialect: str) -> Any:
        if not isinstance(spec, str):
            raise BadQuery("group_by is a list of field names.", field="group_by")
        name, _, period = spec.partition(":")
        item = self.readable_field(meta, name)
        _refuse_encrypted(item)
        if not item.in_row or item.type in NOT_GROUPABLE:
            raise BadQuery(f"Records cannot be grouped by {item.label}.", field=spec)
        column = table.c[item.name]
        if not period:
            return column
        if item.type not in {"date", "datetime"}:
            raise BadQuery(
                f"{item.label} is not a date: only dates group by {', '.join(PERIODS)}.",
                field=spec,
            )
        if period not in PERIODS:
            raise BadQuery(
                f"Group {item.label} by {', '.join(PERIODS)}, not {period!r}.", field=spec
            )
        return _period(column, period, dialect)

    def _summed_field(self, meta: ObjectMeta, name: Any) -> FieldMeta:
        if not isinstance(name, str):
            raise BadQuery("sums is a list of field names.", field="sums")
        item = self.readable_field(meta, name)
        _refuse_encrypted(item)
        if item.type not in SUMMABLE or item.standard:
            raise BadQuery(f"{item.label} is not a number to add up.", field=name)
        return item


def _refuse_encrypted(item: FieldMeta) -> None:
    if item.encrypted:  # ciphertext neither groups nor adds up; decrypting all is a leak
        raise BadQuery(
            f"{item.label} is encrypted: it cannot be grouped or summed.", field=item.name
        )


def _period(column: Any, period: str, dialect: str) -> Any:
    """SQL for the period of a date (or UTC datetime) as "2026", "2026-11" or "2026-Q4"."""
    if dialect == "postgresql":
        pattern = {"year": "YYYY", "month": "YYYY-MM", "quarter": 'YYYY-"Q"Q'}[period]
        return func.to_char(column, pattern)
    # SQLite keeps dates and datetimes as ISO text ("2026-11-05", "2026-11-05 09:30:00").
    text = cast(column, String)
    year = func.substr(text, 1, 4)
    if period == "year":
        return year
    if period == "month":
        return func.substr(text, 1, 7)
    month = cast(func.substr(text, 6, 2), Integer)
    return year.concat("-Q").concat(cast((month + 2) // 3, String))


def _total(item: FieldMeta, value: Any) -> Any:
    if item.type == "integer":
        return int(value or 0)
    step = Decimal(1).scaleb(-item.scale)  # the field's own scale: "0.00", not "0E-2"
    return Decimal(value or 0).quantize(step)


def _order(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def _money_order(row: AggregateRow) -> list[Any]:
    """Currencies in order, the row without an amount (currency None) after them."""
    return [
        (value.currency is None, value.currency or "")
        for value in row.sums.values()
        if isinstance(value, Money)
    ]
