"""``search(user, q)``: what the search page and ``GET /api/v1/search`` call.

Permissions are applied twice, on purpose:

1. The query itself only looks at objects the user may read, only at the searchable
   fields they may read, and (in the index) only at records whose owner their scope
   reaches. A word that occurs only in a field hidden from them finds nothing.
2. The matching records are then read again through the record service, the one door:
   a stale index entry (a record deleted, or moved out of scope, a moment ago) simply
   does not come back, and names and snippets are built from the values that door
   returns, i.e. from readable fields only. The index never supplies display text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import url_for
from markupsafe import Markup, escape
from werkzeug.routing import BuildError

from bastion import authz
from bastion.data.catalog import FieldMeta, ObjectMeta
from bastion.data.formulas import referenced_names
from bastion.data.records import Record, RecordService
from bastion.search.backend import ObjectHits, Scope, SearchBackend
from bastion.search.documents import field_text, searchable_fields

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 5
MAX_LIMIT = 50
MAX_QUERY_CHARS = 200
MAX_OBJECTS = 50


class SearchUnavailable(RuntimeError):
    """The index could not be read (damaged, or its disk failed); the cause is logged."""


class SearchError(ValueError):
    """Bad search input; ``field`` names the parameter (q, objects, limit)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class SearchHit:
    object: str
    id: int
    name: str
    #: The name with matches marked (escaped HTML).
    name_html: Markup
    url: str
    #: An excerpt of a readable field with matches marked (escaped HTML), or None.
    snippet: Markup | None = None
    #: The field the snippet comes from, and its label.
    field: str | None = None
    field_label: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "id": self.id,
            "name": self.name,
            "snippet": None if self.snippet is None else str(self.snippet),
            "field": self.field,
            "url": self.url,
        }


@dataclass
class SearchGroup:
    object: str
    label: str
    label_plural: str
    #: Matches in this object (the user's scope applied); see ``exact``.
    total: int
    #: False when the index stopped counting (``total`` is then a lower bound).
    exact: bool
    hits: list[SearchHit] = field(default_factory=list)

    @property
    def more(self) -> bool:
        return self.total > len(self.hits)

    @property
    def count_label(self) -> str:
        return f"{self.total}{'' if self.exact else '+'}"

    def as_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "label": self.label_plural,
            "total": self.total,
            "exact": self.exact,
            "returned": len(self.hits),
        }


@dataclass
class SearchOutcome:
    query: str
    groups: list[SearchGroup]

    @property
    def hits(self) -> list[SearchHit]:
        return [hit for group in self.groups for hit in group.hits]


def clean_query(raw: Any) -> str:
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise SearchError("Type what to search for in q.", "q")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"q may be at most {MAX_QUERY_CHARS} characters long.", "q")
    return text


def search(
    user: Any,
    q: Any,
    *,
    objects: list[str] | None = None,
    limit_per_object: int = DEFAULT_LIMIT,
    service: RecordService | None = None,
    backend: SearchBackend | None = None,
) -> SearchOutcome:
    """The records ``user`` may read that match ``q``, grouped by object, best first.

    ``objects`` narrows the search to some objects (each must exist and be readable);
    ``limit_per_object`` caps the hits returned per object (1 to MAX_LIMIT).
    """
    text = clean_query(q)
    if type(limit_per_object) is not int or not 1 <= limit_per_object <= MAX_LIMIT:
        raise SearchError(f"limit must be a whole number from 1 to {MAX_LIMIT}.", "limit")
    if service is None:
        service = RecordService(user)
    if backend is None:
        from bastion.search import backend_for

        backend = backend_for()
    metas = _objects(service, objects)
    scopes = [scope for meta in metas if (scope := _scope(service, meta)) is not None]
    try:
        hits = backend.search(text, scopes, limit=limit_per_object)
    except Exception as exc:
        # A damaged index must not take pages down with it; `bastion search reindex`
        # rebuilds it from the records.
        log.exception("The search index could not be read.")
        raise SearchUnavailable(
            "Search is not available right now; the error was logged for the operator."
        ) from exc
    by_name = {meta.name: meta for meta in metas}
    groups = []
    for found in hits.groups:
        group = _group(service, backend, by_name[found.object], found, hits.terms)
        if group.hits:
            groups.append(group)
    return SearchOutcome(text, groups)


def _objects(service: RecordService, wanted: list[str] | None) -> list[ObjectMeta]:
    active = sorted(service.catalog.active(), key=lambda meta: meta.label_plural.lower())
    if wanted is None:
        return active
    if len(wanted) > MAX_OBJECTS:
        raise SearchError(f"Name at most {MAX_OBJECTS} objects.", "objects")
    known = {meta.name for meta in active}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SearchError(f"There is no object {unknown[0]!r} to search.", "objects")
    for name in wanted:
        service.require(name, "read")  # Forbidden (403) names the object
    return [meta for meta in active if meta.name in wanted]


def _scope(service: RecordService, meta: ObjectMeta) -> Scope | None:
    if not service.can(meta.name, "read"):
        return None
    access = service.field_access(meta)
    fields = tuple(
        item.name for item in searchable_fields(meta) if access.get(item.name) != "hidden"
    )
    if not fields:
        return None
    owners = None
    if not service.system:
        owners = authz.reachable_owner_ids(service.user, meta.name, "read")
        if owners is not None and not owners:
            return None
    return Scope(meta.name, fields, owners)


def _group(
    service: RecordService,
    backend: SearchBackend,
    meta: ObjectMeta,
    found: ObjectHits,
    terms: frozenset[str],
) -> SearchGroup:
    access = service.field_access(meta)
    readable = [i for i in searchable_fields(meta) if access.get(i.name) != "hidden"]
    shown = access.get(meta.name_field or "") not in (None, "hidden")
    name_field = meta.name_field if shown else None
    wanted = {item.name for item in readable} | ({name_field} if name_field else set())
    page = service.query(
        meta.name, ids=found.ids, limit=len(found.ids), sort="id", fields=sorted(wanted)
    )
    records = {record.id: record for record in page.records}
    # Snippets rather come from a field other than the ones that make up the name.
    naming = _naming_fields(meta, name_field)
    ordered = sorted(readable, key=lambda item: item.name in naming)
    hits = [
        _hit(backend, meta, records[i], ordered, name_field, terms)
        for i in found.ids
        if i in records
    ]
    if len(found.ids) >= found.total:
        total, exact = len(hits), True  # every match was read again: count what came back
    else:
        total, exact = found.total, found.exact
    return SearchGroup(meta.name, meta.label, meta.label_plural, total, exact, hits)


def _naming_fields(meta: ObjectMeta, name_field: str | None) -> set[str]:
    if not name_field:
        return set()
    item = meta.fields.get(name_field)
    if item is not None and item.type == "formula" and item.formula:
        return {name_field} | referenced_names(item.formula)
    return {name_field}


def _hit(
    backend: SearchBackend,
    meta: ObjectMeta,
    record: Record,
    ordered: list[FieldMeta],
    name_field: str | None,
    terms: frozenset[str],
) -> SearchHit:
    if name_field and record.get(name_field) not in (None, ""):
        name = str(record.get(name_field))
    else:
        name = f"{meta.label} #{record.id}"
    name_html = Markup(backend.highlight(name, terms) or escape(name))  # noqa: S704 (escaped)
    hit = SearchHit(meta.name, record.id, name, name_html, record_url(meta.name, record.id))
    for item in ordered:
        snippet = backend.highlight(field_text(item, record.get(item.name)), terms)
        if snippet:
            # The backend escapes the record's text and adds only <mark> tags.
            hit.snippet = Markup(snippet)  # noqa: S704
            hit.field, hit.field_label = item.name, item.label
            break
    return hit


def record_url(object_name: str, record_id: int) -> str:
    try:
        return url_for("records.detail", object=object_name, record_id=record_id)
    except (BuildError, RuntimeError):
        return f"/o/{object_name}/{record_id}"
