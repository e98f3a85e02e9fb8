"""What the record service hands out: records as one user may see them, and pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Records merged into one at a time, at most (besides the survivor).
MAX_MERGED = 10


@dataclass
class Record:
    """A record as one user may see it: only readable fields are in ``values``."""

    object: str
    id: int
    version: int
    values: dict[str, Any]
    #: Names of lookup targets' records, by field, where the reader may see them.
    names: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


@dataclass
class Page:
    records: list[Record]
    next_cursor: str | None


#: Groups an aggregate may answer with, at most: a report wider than this is a mistake.
MAX_GROUPS = 1000


@dataclass
class AggregateRow:
    """One group of :meth:`RecordService.aggregate`.

    ``key``: the group's value for each ``group_by`` item, keyed by the item as given
    ("stage", "close_date:quarter"); ``count``: its records; ``sums``: by field, an
    ``int``, a ``Decimal`` or, for a currency field, a ``Money`` (the rows are then split
    by currency, so one row's sums never mix currencies).
    """

    key: dict[str, Any]
    count: int
    sums: dict[str, Any]
