"""The search backend interface: what the indexer and the search service ask of an index.

Callers (the indexer, the service, the CLI) only speak this protocol. The embedded
backend is Whoosh (``bastion.search.whoosh_backend``); a server backend (PostgreSQL
full-text search, OpenSearch) implements the same methods and is chosen in
``bastion.search.backend_for`` without touching any caller.

A backend never decides who may see what. The service hands it, per object, the fields
the user may read and the owners the user's scope reaches; it answers record ids, which
the service then reads again through the record service (the one door).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Document:
    """One record as the index sees it: who owns it and its searchable text, by field."""

    object: str
    id: int
    #: The owner's user id (None: no owner, which no scoped user reaches).
    owner: int | None
    #: Field API name -> text, for non-empty searchable fields only.
    texts: Mapping[str, str]
    #: Every searchable field of the object when the document was built (empty ones too):
    #: what this document may hold.
    fields: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        return document_key(self.object, self.id)


def document_key(object_name: str, record_id: int) -> str:
    return f"{object_name}:{record_id}"


@dataclass(frozen=True)
class Scope:
    """What one user may search in one object."""

    object: str
    #: Searchable fields the user may read: the only ones a query looks at.
    fields: tuple[str, ...]
    #: Owner ids the user's record scope reaches; None means every record.
    owners: frozenset[int] | None = None


@dataclass
class ObjectHits:
    """The best matches in one object, best first."""

    object: str
    ids: list[int]
    #: How many documents matched (at most ``count_cap``; see ``exact``).
    total: int
    #: False when ``total`` stopped counting at the backend's cap.
    exact: bool = True


@dataclass
class Hits:
    groups: list[ObjectHits] = field(default_factory=list)
    #: The words actually searched for (after analysis and prefix expansion), for
    #: highlighting. Never shown as such: they may come from fields the user cannot read.
    terms: frozenset[str] = frozenset()


@dataclass
class IndexStatus:
    location: str
    documents: int
    by_object: dict[str, int]
    #: Bytes on disk, when the backend can tell.
    size: int | None = None


class SearchBackend(Protocol):
    """A full-text index of records' searchable fields."""

    def index_documents(self, documents: Sequence[Document], deleted: Sequence[str] = ()) -> None:
        """Add or replace ``documents`` and drop the ``deleted`` keys, in one commit."""

    def delete_documents(self, keys: Sequence[str]) -> None:
        """Drop documents by key (``document_key``); unknown keys are ignored."""

    def search(self, text: str, scopes: Sequence[Scope], *, limit: int) -> Hits:
        """At most ``limit`` best matches per scope, each restricted to its fields and
        owners; scopes without a match are left out."""

    def highlight(self, text: str, terms: Iterable[str]) -> str | None:
        """A short excerpt of ``text`` around ``terms`` as escaped HTML with ``<mark>``
        around matches, or None when no term occurs in it."""

    def rebuild(
        self,
        batches: Iterable[Sequence[Document]],
        *,
        objects: Iterable[str] | None = None,
    ) -> int:
        """Replace the whole index (or only ``objects``' documents) by ``batches``,
        atomically: searches see the old documents until the new ones are complete.
        Returns how many documents were written."""

    def object_rewritten(self, object_name: str, fields: frozenset[str]) -> None:
        """Every document of the object was just written again holding only ``fields``
        (a repair after a definition change): forget any other field, and drop its text
        from disk."""

    def compact(self) -> None:
        """Rewrite the storage so text of replaced and deleted documents is gone from disk
        (after a field was purged or stopped being searchable)."""

    def clear(self) -> None:
        """Drop every document."""

    def status(self) -> IndexStatus:
        """Counts for `bastion search status`."""
