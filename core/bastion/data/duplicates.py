"""Duplicate detection: does a new record look like one that already exists?

Each object declares ``duplicate_keys``: groups of fields that identify a record
together (contacts: the email; the phone; first name, last name and account). A group
matches an existing record when every one of its fields is equal after normalization:
emails lower-cased, phones in E.164, text case- and accent-insensitive with its spaces
collapsed, web addresses without scheme, "www." or trailing slash. A group is used only
when the new values fill in all of its fields.

Bounded and index-friendly: fields stored in canonical form (email, phone, lookups,
picklists, numbers, dates) are probed with an exact ``eq`` through the record service;
text fields are compared in Python on the candidates those probes return. A group made
of text alone (an account's name) is probed by its prefix and by its usual spellings
(as typed, lower, upper, title case), and a web address by its host. At most
``MAX_CANDIDATES`` records are compared per probe.

What the user cannot see is never reported. Every query goes through the caller's
``RecordService``, so a record outside their scope, or a group using a field hidden
from them, matches nothing. We deliberately do not hint that "a record you cannot see
matches": that alone would tell a sales rep that a given email address belongs to
another team's customer (a membership leak of personal data). The new record is then
created; a manager who sees both records merges them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bastion.data import blind_index
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery, DuplicatesFound, Forbidden, NotFound
from bastion.data.query import Filter
from bastion.data.values import FieldValueError, ValueContext, is_empty, parse, to_json

if TYPE_CHECKING:
    from bastion.data.records import Record, RecordService

#: Types stored in one canonical form, so the database can compare them with ``eq``.
PROBED_TYPES = frozenset(
    {"email", "phone", "lookup", "picklist", "integer", "date", "boolean", "record_link"}
)
#: Types normalized like text: case, accents and spacing do not matter.
TEXT_TYPES = frozenset({"text", "long_text", "auto_number"})
#: Records compared per probe; one page of the record service.
MAX_CANDIDATES = 500
#: Characters of a text value used to find candidates when nothing else narrows them.
PREFIX_LENGTH = 4
DEFAULT_LIMIT = 10


@dataclass
class Match:
    """An existing record that looks like the new values, and the fields that agree."""

    record: Record
    matched_on: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RowDuplicate:
    """Row ``row`` of a file repeats row ``first`` (0-based) on ``matched_on``."""

    row: int
    first: int
    matched_on: tuple[str, ...]


# --------------------------------------------------------------------------- normalizing


def fold_text(text: str) -> str:
    """Case-, accent- and spacing-insensitive form: "  Élodie  DURAND" -> "elodie durand"."""
    return " ".join(_strip_accents(text).casefold().split())


def _fold_url(text: str) -> str:
    text = text.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    host = (parts.hostname or "").lower().removeprefix("www.")
    rest = parts.path.rstrip("/")
    if parts.query:
        rest += f"?{parts.query}"
    return f"{host}{rest}"


def normalize(meta_field: FieldMeta, value: Any, context: ValueContext | None = None) -> Any:
    """The comparable form of a value (typed, or as typed by a user); None when empty
    or not understood. Equal results mean "the same" for duplicate detection."""
    if is_empty(value):
        return None
    kind = meta_field.type
    try:
        if kind == "email":
            return str(value).strip().lower() or None
        if kind in TEXT_TYPES:
            return fold_text(str(value)) or None
        if kind == "url":
            return _fold_url(str(value)) or None
        if kind == "phone" and isinstance(value, str) and value.startswith("+"):
            digits = "".join(char for char in value if char.isdigit())
            if value == f"+{digits}":
                return value  # already E.164, as stored
        typed = parse(meta_field, to_json(meta_field, value), context)
    except (FieldValueError, TypeError, ValueError):
        return None
    if isinstance(typed, list):
        return tuple(typed) or None
    return typed


# --------------------------------------------------------------------------- queries


def find_matches(
    service: RecordService,
    meta: ObjectMeta,
    values: Mapping[str, Any],
    *,
    exclude_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Match]:
    """Existing records the user may read that match ``values`` on a duplicate key."""
    if not meta.duplicate_keys or not service.can(meta.name, "read"):
        return []
    access = service.field_access(meta)
    context = service.context
    found: dict[int, Match] = {}
    for group in meta.duplicate_keys:
        fields = [meta.fields.get(name) for name in group]
        usable = [
            item
            for item in fields
            if item is not None
            and access.get(item.name) != "hidden"
            # Encrypted: probed through its blind index, else it would mean decrypting
            # every record.
            and (blind_index.has_index(item) or (item.filterable and not item.encrypted))
        ]
        if len(usable) != len(group):
            continue
        wanted = {item.name: normalize(item, values.get(item.name), context) for item in usable}
        if any(value is None for value in wanted.values()):
            continue
        for record in _candidates(service, meta, usable, wanted, values):
            if record.id == exclude_id:
                continue
            if all(
                normalize(item, record.get(item.name), context) == wanted[item.name]
                for item in usable
            ):
                match = found.setdefault(record.id, Match(record))
                match.matched_on.extend(n for n in group if n not in match.matched_on)
    return sorted(found.values(), key=lambda match: match.record.id)[:limit]


def find_duplicates(
    service: RecordService,
    meta: ObjectMeta,
    values: Mapping[str, Any],
    *,
    exclude_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Record]:
    """The records of :func:`find_matches`, oldest first."""
    matches = find_matches(service, meta, values, exclude_id=exclude_id, limit=limit)
    return [match.record for match in matches]


def describe_matches(meta: ObjectMeta, matches: Sequence[Match]) -> list[dict[str, Any]]:
    """JSON-ready matches: id, display name and the fields that agree."""
    return [
        {
            "id": match.record.id,
            "name": meta.record_name(match.record.values),
            "matched_on": list(match.matched_on),
        }
        for match in matches
    ]


def raise_if_duplicates(
    service: RecordService,
    meta: ObjectMeta,
    values: Mapping[str, Any],
    *,
    exclude_id: int | None = None,
) -> None:
    """Refuse with DuplicatesFound (409) when existing readable records look alike."""
    matches = find_matches(service, meta, values, exclude_id=exclude_id)
    if not matches:
        return
    described = describe_matches(meta, matches)
    parts = []
    for item in described[:3]:
        labels = [_label(meta, name) for name in item["matched_on"]]
        parts.append(f"{item['name']} (same {', '.join(labels)})")
    more = len(described) - len(parts)
    tail = f" and {more} more" if more > 0 else ""
    noun = meta.label.lower() if len(described) == 1 else meta.label_plural.lower()
    message = (
        f"This may be a duplicate of {len(described)} existing {noun}: "
        f"{'; '.join(parts)}{tail}. Open or merge the existing record, or save anyway."
    )
    raise DuplicatesFound(message, matches=described)


def _label(meta: ObjectMeta, name: str) -> str:
    item = meta.fields.get(name)
    return item.label.lower() if item is not None else name


def _candidates(
    service: RecordService,
    meta: ObjectMeta,
    fields: list[FieldMeta],
    wanted: dict[str, Any],
    raw: Mapping[str, Any],
) -> Iterator[Record]:
    exact = [
        Filter(item.name, "eq", to_json(item, wanted[item.name]))
        for item in fields
        if item.type in PROBED_TYPES
    ]
    probes: list[list[Filter]] = []
    if exact:
        probes.append(exact)
    else:
        first = fields[0]
        if first.type == "url":
            host = str(wanted[first.name]).split("/", 1)[0]
            if host:
                probes.append([Filter(first.name, "contains", host)])
        elif first.type in TEXT_TYPES:
            probes.extend(text_probes(first, raw[first.name]))
        # Anything else (decimals, currencies) has no bounded probe: no candidates.
    shown = [item.name for item in fields]
    name_field = meta.fields.get(meta.name_field or "")
    if name_field is not None and service.field_access(meta).get(name_field.name) != "hidden":
        shown.append(name_field.name)
    seen: set[int] = set()
    for filters in probes:
        try:
            page = service.query(
                meta.name, filters=filters, sort="id", limit=MAX_CANDIDATES, fields=shown
            )
        except (BadQuery, Forbidden, NotFound):
            continue  # a field the user may not filter on: this probe finds nothing
        for record in page.records:
            if record.id not in seen:
                seen.add(record.id)
                yield record


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _spellings(raw: Any) -> list[str]:
    text = " ".join(str(raw).split())
    found: set[str] = set()
    for form in (text, _strip_accents(text)):
        found.update({form, form.lower(), form.upper(), form.title()})
    return sorted(found)


def text_probes(item: FieldMeta, raw: Any) -> list[list[Filter]]:
    """Probes for a text value as typed: its usual spellings, and its prefix.

    The spellings (as typed, lower, upper, title case; with and without accents) are an
    index lookup and catch "ACME BANK" for "Acme Bank" on both databases (SQLite
    lower-cases ASCII only). The prefix finds the other case and spacing variants
    (lower(column) LIKE 'acme%'; this one reads the column). Known gap: a text-only key
    whose first letters differ in accents *and* in another way ("ecole x" for
    "École X") is not found; groups with an exact field (a contact's account) compare
    every candidate in Python and have no such gap.
    """
    probes = [[Filter(item.name, "in", _spellings(raw))]]
    typed_prefix = " ".join(str(raw).split()).lower()[:PREFIX_LENGTH]
    folded_prefix = fold_text(str(raw))[:PREFIX_LENGTH]
    for prefix in dict.fromkeys([folded_prefix, typed_prefix]):
        if prefix.strip():
            probes.append([Filter(item.name, "startswith", prefix)])
    return probes


# --------------------------------------------------------------------------- files


def find_duplicates_in_rows(
    meta: ObjectMeta,
    rows: Iterable[Mapping[str, Any]],
    context: ValueContext | None = None,
) -> list[RowDuplicate]:
    """Rows of one file that repeat an earlier row on a duplicate key (no database)."""
    first_seen: dict[tuple[Any, ...], int] = {}
    found: list[RowDuplicate] = []
    for index, row in enumerate(rows):
        first_match: int | None = None
        matched: list[str] = []
        for group in meta.duplicate_keys:
            items = [meta.fields[name] for name in group if name in meta.fields]
            if len(items) != len(group):
                continue
            key_values = [normalize(item, row.get(item.name), context) for item in items]
            if any(value is None for value in key_values):
                continue
            first = first_seen.setdefault((group, *key_values), index)
            if first == index:
                continue
            if first_match is None:
                first_match = first
            if first == first_match:
                matched.extend(name for name in group if name not in matched)
        if first_match is not None:
            found.append(RowDuplicate(index, first_match, tuple(matched)))
    return found
