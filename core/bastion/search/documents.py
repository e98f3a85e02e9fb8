"""What of a record goes into the index: the text of its searchable fields, never more.

Encrypted fields are never searchable (definitions refuse it) and are skipped here
anyway; so is a formula computed from an encrypted field, whose value would carry the
plaintext. Lookups and links hold ids, not words, and are skipped too.
"""

from __future__ import annotations

from typing import Any

from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.formulas import referenced_names
from bastion.data.values import is_empty, to_text
from bastion.search.backend import Document

#: Types whose values are record ids rather than words.
ID_TYPES = frozenset({"lookup", "many_to_many", "record_link"})
#: Longest text taken from one field (a pasted e-mail thread in a note stays bounded).
MAX_FIELD_CHARS = 20_000


def searchable_fields(meta: ObjectMeta) -> list[FieldMeta]:
    """The object's fields whose text may be indexed, in display order."""
    found = []
    for item in meta.fields.values():
        if not item.searchable or item.encrypted or item.standard or item.type in ID_TYPES:
            continue
        if item.type == "formula" and _reads_encrypted(meta, item):
            continue
        found.append(item)
    return found


def _reads_encrypted(meta: ObjectMeta, item: FieldMeta, depth: int = 0) -> bool:
    """Whether a formula reads an encrypted field, directly or through other formulas."""
    if depth > 10:
        return True  # a cycle is refused by definitions; stay on the safe side anyway
    for name in referenced_names(item.formula) if item.formula else set():
        used = meta.all_fields.get(name)
        if used is None:
            continue
        if used.encrypted:
            return True
        if used.type == "formula" and _reads_encrypted(meta, used, depth + 1):
            return True
    return False


def field_text(item: FieldMeta, value: Any) -> str:
    if is_empty(value):
        return ""
    if isinstance(value, list | tuple):
        return " ".join(str(part) for part in value)[:MAX_FIELD_CHARS]
    return to_text(item, value)[:MAX_FIELD_CHARS]


def build_document(meta: ObjectMeta, record_id: int, values: dict[str, Any]) -> Document:
    """The index document of a record read with every field (the system's view)."""
    fields = searchable_fields(meta)
    texts = {}
    for item in fields:
        text = field_text(item, values.get(item.name))
        if text.strip():
            texts[item.name] = text
    owner = values.get("owner")
    return Document(
        object=meta.name,
        id=record_id,
        owner=owner if isinstance(owner, int) else None,
        texts=texts,
        fields=frozenset(item.name for item in fields),
    )
