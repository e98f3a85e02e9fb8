"""Blind indexes: exact-match lookup on encrypted fields without decrypting every row.

An encrypted field with ``blind_index`` has a shadow column ``<field>__bidx`` holding
HMAC-SHA256 under the blind-index key of the field's canonical value: the value as the
field type's equality sees it once parsed (an e-mail address lower-cased, a phone
number in E.164, text trimmed), written as its CSV text. The object and field names
are bound into the MAC, so the same national id in two fields gives two unrelated
digests and a digest cannot be matched across fields. ``eq`` and ``in`` filters then
compare digests; every other operator stays refused, since the column reveals equality
and nothing else.

The blind-index key is ``bastion.keys.purpose_key("blind_index")``: separate from the
data keys and NOT rotated with them. ``bastion keys rotate`` re-encrypts ciphertexts
under a new data-key version, while every digest stays valid, because changing this
key would mean recomputing every digest from decrypted values in one step (a lookup
during a gradual change would miss the rows not yet redone). A suspected compromise of
this key is handled by turning the blind index off and on again, which rebuilds it.

What an index reveals: which records share a value of that field (as a unique index
would), never the value itself; a low-entropy field (a yes/no stored as text) would let
someone who holds the database and the key guess values, so administrators index
identifiers (national ids, e-mail addresses, phone numbers), not categories.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from flask import g, has_app_context
from sqlalchemy import ColumnElement, Table, bindparam, select, update

from bastion.data.catalog import Catalog, FieldMeta, ObjectMeta
from bastion.data.errors import BadQuery
from bastion.data.values import FieldValueError, ValueContext, is_empty, parse_filter_value, to_text

log = logging.getLogger(__name__)

#: Types whose equality a digest can stand for (a decimal's 1.0 vs 1.00, or a date's
#: zone, would need more care than a lookup of identifiers is worth).
BLIND_INDEXABLE = frozenset({"text", "email", "phone", "url", "integer"})
#: The suffix of the shadow column; field names never contain a double underscore.
SUFFIX = "__bidx"
#: Operators a blind index answers.
OPERATORS = ("eq", "in")
#: Rows read, digested and written per statement when an index is built.
BATCH_SIZE = 500
#: How many values an ``in`` filter may list (as for any other field).
MAX_IN = 500
_KEY_CACHE = "_bastion_blind_index_key"


def column_name(field_name: str) -> str:
    """The shadow column of a field's blind index."""
    return f"{field_name}{SUFFIX}"


def has_index(item: FieldMeta) -> bool:
    """Whether the field's values are findable through a blind index."""
    return item.encrypted and item.blind_index


def problem(item: Any) -> str | None:
    """Why a field definition cannot have its blind index, or None (it can, or has none).

    ``item`` is a FieldDefinition or FieldMeta; the definitions module raises the answer
    as a DefinitionError on the ``blind_index`` setting.
    """
    if not item.blind_index:
        return None
    if not item.encrypted:
        return (
            f"{item.label}: blind_index serves encrypted fields only; turn on encrypted, "
            "or leave blind_index off (a plain field is indexed with indexed)."
        )
    if item.type not in BLIND_INDEXABLE:
        kinds = ", ".join(sorted(BLIND_INDEXABLE))
        return f"{item.label}: a {item.type} field cannot have a blind_index; {kinds} fields can."
    return None


def _key() -> bytes:
    """The blind-index key, asked of the keyring once per request or command.

    The keyring reads which key version is active from the database on every call (for
    data keys, whose rotation every process must follow at once); this key is never
    rotated, so one answer serves a whole request's writes and filters.
    """
    found = g.get(_KEY_CACHE) if has_app_context() else None
    if found is None:
        # Imported here: the keyring needs the application, this module does not.
        from bastion.keys import purpose_key

        found = purpose_key("blind_index")
        if has_app_context():
            setattr(g, _KEY_CACHE, found)
    return found


def _mac(key: bytes, meta: ObjectMeta, item: FieldMeta, value: Any) -> str:
    # Length-prefixed labels: "a.b_c" + "x" and "a.b" + "_cx" cannot give the same input.
    label = f"{meta.name}.{item.name}".encode()
    message = len(label).to_bytes(2, "big") + label + to_text(item, value).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def digest(meta: ObjectMeta, item: FieldMeta, value: Any) -> str | None:
    """The shadow column's value for a typed (parsed) value; None when it is empty."""
    if is_empty(value):
        return None
    return _mac(_key(), meta, item, value)


def stored_values(meta: ObjectMeta, item: FieldMeta, value: Any) -> dict[str, Any]:
    """Shadow column -> digest for a write of ``value`` (nothing without an index)."""
    if not has_index(item):
        return {}
    return {column_name(item.name): digest(meta, item, value)}


def condition(
    meta: ObjectMeta,
    item: FieldMeta,
    table: Table,
    op: str,
    raw: Any,
    context: ValueContext,
) -> ColumnElement[bool]:
    """SQL for an ``eq`` or ``in`` filter on a blind-indexed field: compare digests.

    The filter's value is parsed like a value to write (so "ADA@Example.org" finds
    "ada@example.org", "+44 20 7946 0958" finds "+442079460958"); a value the field
    could never hold is a BadQuery, as on any other field. Without a blind index, or
    with another operator, the filter is refused.
    """
    if not has_index(item):
        raise BadQuery(
            f"{item.label} is encrypted and cannot be filtered on; an administrator can "
            "give it a blind index for exact matches.",
            field=item.name,
        )
    if op not in OPERATORS:
        raise BadQuery(
            f"{item.label} is encrypted: it can only be matched exactly (eq or in), through "
            "its blind index.",
            field=item.name,
        )
    if op == "eq" and is_empty(raw):  # "no value", as for any other field
        return table.c[item.name].is_(None)
    items = [raw] if op == "eq" else raw if isinstance(raw, list | tuple) else str(raw).split(",")
    items = [one for one in items if str(one).strip() != ""]
    if not items or len(items) > MAX_IN:
        raise BadQuery(f"Filter on {item.label}: give 1 to {MAX_IN} values.", field=item.name)
    key = _key()
    digests = []
    for one in items:
        try:
            value = parse_filter_value(item, one, context)
        except FieldValueError as exc:
            raise BadQuery(f"Filter on {item.label}: {exc}", field=item.name) from None
        if not is_empty(value):
            digests.append(_mac(key, meta, item, value))
    if not digests:
        raise BadQuery(f"Filter on {item.label}: give a value to find.", field=item.name)
    column = table.c[column_name(item.name)]
    return column == digests[0] if len(digests) == 1 else column.in_(digests)


def encrypted_target(catalog: Catalog, meta: ObjectMeta, path: str) -> FieldMeta | None:
    """The encrypted field a filter path names ("national_id", "account.tax_id"), or None.

    A filter on an encrypted field carries a plaintext value: whatever stores or records
    filters (saved views, the audit entry of an export) must not keep it.
    """
    current: ObjectMeta | None = meta
    for part in path.split("."):
        item = current.fields.get(part) if current is not None else None
        if item is None:
            return None
        if item.encrypted:
            return item
        current = catalog.objects.get(item.target or "")
    return None


def fill(connection: Any, meta: ObjectMeta, item: FieldMeta, table: Table) -> int:
    """Compute the digest of every existing value (after the index is turned on).

    Runs in the definition change's transaction, batch by batch in id order, so memory
    stays flat and a failure leaves the column as it was (the change rolls back).
    Returns the number of digests written.
    """
    from bastion.data.records.reading import _decrypt

    key = _key()
    shadow = column_name(item.name)
    source = table.c[item.name]
    statement = (
        update(table)
        .where(table.c.id == bindparam("record_id"))
        .values({shadow: bindparam("digest")})
    )
    written, last = 0, 0
    while True:
        rows = connection.execute(
            select(table.c.id, source)
            .where(table.c.id > last, source.is_not(None))
            .order_by(table.c.id)
            .limit(BATCH_SIZE)
        ).all()
        if not rows:
            return written
        params = []
        for record_id, token in rows:
            value = _decrypt(meta, item, record_id, token, ValueContext())
            params.append({"record_id": record_id, "digest": _mac(key, meta, item, value)})
        connection.execute(statement, params)
        written += len(params)
        last = rows[-1][0]


def changed_fields(
    before: ObjectMeta, after: ObjectMeta
) -> tuple[list[FieldMeta], list[FieldMeta]]:
    """Existing fields whose index was turned on since ``before``, and those turned off.

    A field new in ``after`` is left out: its storage is created with its index, and it
    has no values yet.
    """
    added, dropped = [], []
    for name, item in after.all_fields.items():
        old = before.all_fields.get(name)
        if item.standard or item.purged or old is None or old.purged:
            continue
        had = has_index(old)
        if has_index(item) and not had:
            added.append(item)
        elif had and not has_index(item):
            dropped.append(item)
    return added, dropped
