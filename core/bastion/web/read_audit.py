"""Read audit: views of records of objects an administrator marked sensitive.

An object's ``sensitive`` setting (Administration > Objects and fields, "every read of
its records is audited") makes every page and API answer that shows its records leave
an entry: ``record.view`` (object type and record id) for one record's detail page,
history or API read, and one ``record.list`` entry naming the ids shown for a list
page, a page of "Load more", an API list, search results, a type-ahead, a related list
or activity timeline on another record's page, or the merge screen (``via`` says
which). Nothing is written for other objects, and an empty list writes nothing.

Entries go through ``audit.record``, so they are durable: a view is on record even
when the request then fails (a rollback keeps security events; the end of the request
writes them). Entries name records, never their values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bastion import audit
from bastion.data.catalog import ObjectMeta, current_catalog

VIEW = "record.view"
LIST = "record.list"


def viewed(meta: ObjectMeta, record_id: int, *, via: str = "page") -> None:
    """One record of ``meta`` was shown (detail page, history, API read)."""
    if not meta.sensitive:
        return
    audit.record(VIEW, object_type=meta.name, object_id=record_id, changes={"via": via})


def listed(meta: ObjectMeta, ids: Iterable[int], *, via: str = "list") -> None:
    """Records of ``meta`` were shown in a list; one entry names them all."""
    if not meta.sensitive:
        return
    shown = list(dict.fromkeys(int(i) for i in ids))
    if not shown:
        return
    audit.record(LIST, object_type=meta.name, changes={"ids": shown, "via": via})


def listed_hits(hits: Iterable[Any], *, via: str = "search") -> None:
    """Search results (objects with ``object`` and ``id``): one entry per sensitive object."""
    by_object: dict[str, list[int]] = {}
    for hit in hits:
        by_object.setdefault(hit.object, []).append(hit.id)
    objects = current_catalog().objects
    for name, ids in by_object.items():
        meta = objects.get(name)
        if meta is not None:
            listed(meta, ids, via=via)
