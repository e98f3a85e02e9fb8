"""Auto-number fields: consecutive numbers from a per-field sequence row."""

from __future__ import annotations

import re

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta
from bastion.data.models import Sequence
from bastion.db import db


def next_numbers(catalog: Catalog, meta: ObjectMeta, item: FieldMeta, count: int) -> list[str]:
    """``count`` consecutive numbers of an auto-number field (rows already inserted)."""
    where = (Sequence.object_name == meta.name, Sequence.field_name == item.name)
    if db.session.scalar(select(Sequence.next_value).where(*where)) is None:
        # First use: start after the records that exist. Two processes may get here
        # at once; ON CONFLICT lets exactly one seed win and the other carry on.
        table = catalog.table(meta.name)
        existing = (db.session.scalar(select(func.count()).select_from(table)) or 0) - count
        dialect = db.session.get_bind().dialect.name
        insert_row = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(
            Sequence
        ).values(object_name=meta.name, field_name=item.name, next_value=existing + 1)
        db.session.execute(insert_row.on_conflict_do_nothing())
    # One conditional UPDATE takes the row lock, so concurrent creates get distinct numbers.
    updated = db.session.execute(
        update(Sequence)
        .where(*where)
        .values(next_value=Sequence.next_value + count)
        .returning(Sequence.next_value)
    ).scalar_one()
    return [_format_number(item.format, n) for n in range(updated - count, updated)]


def _format_number(pattern: str, number: int) -> str:
    def pad(match: re.Match[str]) -> str:
        return str(number).zfill(len(match.group(0)) - 2)

    return re.sub(r"\{0+\}", pad, pattern, count=1)
