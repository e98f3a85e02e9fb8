"""Global search over the searchable fields of every object, filtered by permissions.

- ``backend``: the interface any index implements; ``whoosh_backend``: the embedded one.
- ``documents``: what of a record is indexed (searchable fields, never encrypted ones).
- ``indexer``: the single background writer draining the search outbox.
- ``service``: ``search(user, q)``, used by the search page and the API.

One indexer and one backend exist per data directory in a process, so several
applications in one process (the test suite) never share an index by mistake.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import Flask, g, has_request_context

from bastion.data.events import RecordChange, subscribe
from bastion.search.backend import SearchBackend
from bastion.search.indexer import Indexer, ensure_started
from bastion.search.whoosh_backend import WhooshBackend

_lock = threading.Lock()
_indexers: dict[str, Indexer] = {}


def search_dir(app: Flask | None = None) -> Path:
    from bastion.runtime import platform

    return (platform(app).settings.data_dir / "search").resolve()


def indexer_for(app: Flask | None = None) -> Indexer:
    """This process's indexer of the application's data directory."""
    directory = search_dir(app)
    key = str(directory)
    with _lock:
        found = _indexers.get(key)
        if found is None:
            found = _indexers[key] = Indexer(directory, _make_backend(directory))
        return found


def _make_backend(directory: Path) -> SearchBackend:
    # The one place that chooses the backend: a server backend (PostgreSQL full-text,
    # OpenSearch) would be picked here from a setting, and no caller would change.
    return WhooshBackend(directory / "index")


def backend_for(app: Flask | None = None) -> SearchBackend:
    return indexer_for(app).backend


def drain_now(app: Flask) -> None:
    """Index everything the outbox holds, now, in this thread (tests, CLI)."""
    with app.app_context():
        indexer_for(app).drain()


def stop_indexers() -> None:
    """Stop every background indexer of this process (tests)."""
    with _lock:
        indexers = list(_indexers.values())
    for indexer in indexers:
        indexer.stop()


CHANGED_KEY = "_bastion_search_changed"


def start_indexer(app: Flask) -> bool:
    """Start this process's background indexer for ``app`` (``bastion serve`` does, before
    serving; so would any other way of hosting the application). It first replays what
    the outbox still holds. False when ``search_indexer = "off"``."""
    return ensure_started(app, indexer_for(app))


def _note_change(change: RecordChange) -> None:
    if has_request_context():
        setattr(g, CHANGED_KEY, True)


def _wake_indexer(_exc: BaseException | None) -> None:
    # After the request, its changes are committed: this process's indexer picks them
    # up now instead of at the end of its idle pause (other processes still poll).
    if g.pop(CHANGED_KEY, False):
        indexer = indexer_for()
        if indexer.running:
            indexer.wake()


def init_search(app: Flask) -> None:
    """Wake the indexer after each request that changed records. Nothing starts here:
    applications built by tests and commands never run a thread unless asked."""
    subscribe(app, _note_change)
    app.teardown_request(_wake_indexer)


__all__ = [
    "backend_for",
    "drain_now",
    "indexer_for",
    "init_search",
    "start_indexer",
    "stop_indexers",
]
