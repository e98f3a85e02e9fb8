"""One query-string syntax for lists, shared by the pages, the REST API and exports.

    ?industry=Banking                      equals
    ?amount__gte=100&amount__lt=500        ranges (gt, gte, lt, lte)
    ?name__contains=acme                   contains / startswith (case-insensitive)
    ?status__in=new,working                one of
    ?status__ne=lost                       not equal
    ?email__empty=true                     is empty (false: is filled in)
    ?account.industry=Banking              through a lookup (at most two hops)
    &sort=-amount,name  &limit=50  &cursor=...  &fields=name,amount

Any other parameter name is a filter, so a typo is reported as an unknown field
instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bastion.data.errors import BadQuery
from bastion.data.query import OPERATORS, Filter
from bastion.data.records import DEFAULT_LIMIT, MAX_LIMIT

#: Parameters that are not filters (``q``, ``view``, ``format`` serve pages and exports).
CONTROL_PARAMS = frozenset(
    {"sort", "limit", "cursor", "fields", "q", "view", "format", "columns", "page", "partial"}
)


@dataclass
class ListParams:
    filters: list[Filter] = field(default_factory=list)
    sort: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    fields: list[str] | None = None
    q: str = ""


def parse_filter_key(key: str) -> tuple[str, str]:
    """'amount__gte' -> ('amount', 'gte'); 'name' -> ('name', 'eq')."""
    path, sep, op = key.rpartition("__")
    if not sep:
        return key, "eq"
    if op not in OPERATORS:
        raise BadQuery(
            f"Unknown filter operator {op!r} in {key!r}; use one of {', '.join(OPERATORS)}.",
            field=key,
        )
    return path, op


def parse_list_params(
    items: Iterable[tuple[str, str]], *, max_limit: int = MAX_LIMIT, ignore: Iterable[str] = ()
) -> ListParams:
    """Read (name, value) pairs, e.g. ``request.args.items(multi=True)``."""
    params = ListParams()
    skipped = set(ignore)
    for key, value in items:
        if key in skipped:
            continue
        if key == "sort":
            params.sort = value or None
        elif key == "limit":
            digits = value.isascii() and value.isdigit() and len(value) <= 6  # not "²"
            if not digits or not 1 <= int(value) <= max_limit:
                raise BadQuery(
                    f"limit must be a whole number from 1 to {max_limit}.", field="limit"
                )
            params.limit = int(value)
        elif key == "cursor":
            params.cursor = value or None
        elif key == "fields":
            names = [name.strip() for name in value.split(",") if name.strip()]
            params.fields = names or None
        elif key == "q":
            params.q = value.strip()[:200]
        elif key in CONTROL_PARAMS:
            continue
        else:
            path, op = parse_filter_key(key)
            if value == "" and op != "empty":
                continue  # an empty filter box in a form means "no filter"
            params.filters.append(Filter(path, op, value))
    if len(params.filters) > 20:
        raise BadQuery("Use at most 20 filters at a time.")
    return params


def filters_to_params(filters: Iterable[Filter]) -> list[tuple[str, str]]:
    """The inverse of parsing, for links that keep a list's filters."""
    return [(f.path if f.op == "eq" else f"{f.path}__{f.op}", str(f.value)) for f in filters]
