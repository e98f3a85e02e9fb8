"""Numbers from URLs and query strings, refused unless plain and in range.

``str.isdigit`` accepts "²" and int() accepts 10**30, which then overflows the database's
integer column: both would be a 500. Ids in Bastion's tables are 32-bit on PostgreSQL.
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1


def bounded_int(raw: str | None, *, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """The value of ``raw`` if it is plain ASCII digits within the range, else None."""
    if not raw or not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        return None
    value = int(raw)
    return value if minimum <= value <= maximum else None


class BoundedIntConverter(IntegerConverter):
    """``<int:id>`` in routes: an id too large for the database is a 404, not a 500."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)
