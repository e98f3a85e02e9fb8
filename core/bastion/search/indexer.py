"""The single writer that keeps the search index in step with the records.

Record changes write ``search_outbox`` rows in their own transaction
(``bastion.data.listeners``). Here one background thread per server process drains
them: it takes the writer lock (``fcntl.flock`` on ``<data_dir>/search/writer.lock``,
non-blocking, so across all processes on the machine only one writes at a time and the
others only search), reads up to BATCH rows, reads those records again as the system,
writes every document in ONE commit and only then deletes the rows. A crash before the
commit leaves the rows in the outbox, and the next start replays them: no update is lost.
The lock is taken per batch, so when a process dies another one carries on, and
``bastion search reindex`` can wait for it and rebuild while the servers keep running.

Definitions change at runtime, so the indexer also tracks which searchable fields every
document of an object holds (``indexer.json``, the "coverage"). When a field becomes
searchable or stops being so, or an object is new to the index, the object is re-indexed
in the background, REPAIR_BATCH records at a time between outbox batches; a field that
dropped out has its text compacted away at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import delete, func, select

from bastion.data.catalog import ObjectMeta, current_catalog
from bastion.data.errors import RecordError
from bastion.data.models import SearchOutbox
from bastion.data.query import Filter
from bastion.data.records import MAX_LIMIT, RecordService
from bastion.db import db
from bastion.search.backend import Document, SearchBackend, document_key
from bastion.search.documents import build_document, searchable_fields

try:  # Linux and every Unix; elsewhere the in-process lock alone applies.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = "writer.lock"
STATE_FILE = "indexer.json"
#: Outbox rows handled per commit: large enough to group a burst of saves or an import,
#: small enough to keep one commit well under a second.
BATCH = 500
#: Records re-indexed per commit while repairing an object after a definition change.
REPAIR_BATCH = MAX_LIMIT
#: Pause when there is nothing to do: saved records are findable within about this long.
IDLE_SECONDS = 0.5
#: Pause after a commit that left no backlog: saves arriving meanwhile share the next
#: commit, instead of every single save paying for one (a commit costs 5-50 ms of CPU).
COMMIT_SPACING_SECONDS = 0.25
#: Pause after an unexpected error, so a broken database does not fill the log.
ERROR_SECONDS = 5.0


# --------------------------------------------------------------------------- the lock


class WriterLock:
    """Who may write the index: one thread of one process at a time."""

    def __init__(self, path: Path):
        self.path = path
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def hold(self, *, wait: float = 0.0) -> Iterator[bool]:
        """Yields True while holding the lock, False when another writer kept it for
        longer than ``wait`` seconds."""
        deadline = time.monotonic() + wait
        if not self._threads.acquire(timeout=wait if wait > 0 else -1, blocking=wait > 0):
            yield False
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                while not _try_flock(handle):
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
                try:
                    yield True
                finally:
                    if fcntl is not None:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _try_flock(handle: Any) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


# --------------------------------------------------------------------------- the indexer


class Indexer:
    """Keeps one backend in step with the outbox; one per data directory and process."""

    def __init__(self, directory: Path, backend: SearchBackend):
        self.directory = directory
        self.backend = backend
        self.lock = WriterLock(directory / LOCK_FILE)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Rows the last outbox batch handled; a full batch means a backlog.
        self.last_batch = 0
        self._start_lock = threading.Lock()
        #: (catalog revision, coverage file stamp) at which nothing needed repair.
        self._settled: tuple[int, int] | None = None

    # ------------------------------------------------------------------ coverage state

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def coverage(self) -> dict[str, dict[str, Any]]:
        """Object -> {"fields": [...], "repair": {...} | None}; {} before the first build."""
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("%s is unreadable; every object will be re-indexed.", self.state_path)
            return {}
        objects = raw.get("objects")
        return objects if isinstance(objects, dict) else {}

    def _save_coverage(self, objects: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"objects": objects}, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_path)

    def _state_stamp(self) -> int:
        try:
            return self.state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------ one step

    def tick(self, *, wait: float = 0.0) -> bool:
        """One unit of work if this thread gets the lock; True when there may be more.

        Runs in an application context.
        """
        with self.lock.hold(wait=wait) as held:
            return held and self._step()

    def drain(self, *, wait: float = 10.0, max_steps: int = 100_000) -> None:
        """Work until the outbox is empty and no object needs repair (app context)."""
        with self.lock.hold(wait=wait) as held:
            if not held:
                raise IndexerBusy("Another process kept the search writer lock.")
            for _ in range(max_steps):
                if not self._step():
                    return
        raise RuntimeError("The search indexer did not settle.")

    def _step(self) -> bool:
        try:
            if self.drain_batch():
                return True
            return self.repair_step()
        finally:
            db.session.rollback()  # never sit in a transaction between steps

    def drain_batch(self, limit: int = BATCH) -> int:
        """Index up to ``limit`` outbox rows in one commit; returns how many were handled."""
        rows = db.session.execute(
            select(SearchOutbox.id, SearchOutbox.object_name, SearchOutbox.record_id)
            .order_by(SearchOutbox.id)
            .limit(limit)
        ).all()
        if not rows:
            return 0
        wanted: dict[str, set[int]] = defaultdict(set)
        for _, object_name, record_id in rows:
            wanted[object_name].add(int(record_id))
        documents, deleted = self._documents(wanted)
        self.backend.index_documents(documents, deleted)
        # Only now that the index committed: a crash before this line replays the rows.
        db.session.execute(delete(SearchOutbox).where(SearchOutbox.id.in_([r[0] for r in rows])))
        db.session.commit()
        self.last_batch = len(rows)
        return len(rows)

    def _documents(self, wanted: dict[str, set[int]]) -> tuple[list[Document], list[str]]:
        """The current state of each record: a document if it exists, else a deletion.

        The outbox says which records changed, not how: reading them now means an
        "index" row for a record deleted since is a deletion, and repeated rows for one
        record cost one document.
        """
        service = RecordService(None, system=True)
        documents: list[Document] = []
        deleted: list[str] = []
        for object_name, ids in sorted(wanted.items()):
            meta = service.catalog.objects.get(object_name)
            found: dict[int, Document] = {}
            if meta is not None and not meta.retired and searchable_fields(meta):
                try:
                    for document in self._read(service, meta, sorted(ids)):
                        found[document.id] = document
                except RecordError as exc:
                    # The service refuses to read the object at all (its definition is
                    # broken): drop its documents rather than retry these rows forever.
                    log.warning("Search: cannot read %s (%s); unindexing.", object_name, exc)
            documents.extend(found.values())
            deleted.extend(document_key(object_name, i) for i in sorted(ids) if i not in found)
        return documents, deleted

    @staticmethod
    def _read(service: RecordService, meta: ObjectMeta, ids: Sequence[int]) -> Iterator[Document]:
        fields = _needed_fields(meta)
        for start in range(0, len(ids), MAX_LIMIT):
            chunk = list(ids[start : start + MAX_LIMIT])
            page = service.query(meta.name, ids=chunk, limit=len(chunk), sort="id", fields=fields)
            for record in page.records:
                yield build_document(meta, record.id, record.values)

    # ------------------------------------------------------------------ repairs

    def repair_step(self) -> bool:
        """Re-index the next records of one object whose coverage is not what the
        definitions say; True while there is more of that to do."""
        catalog = current_catalog()
        stamp = (catalog.revision, self._state_stamp())
        if self._settled == stamp:
            return False
        coverage = self.coverage()
        for meta in sorted(catalog.active(), key=lambda m: m.name):
            target = sorted(item.name for item in searchable_fields(meta))
            entry = coverage.get(meta.name) or {}
            if entry.get("fields") == target and not entry.get("repair"):
                continue
            self._repair_object(meta, target, entry, coverage)
            return True
        self._settled = (catalog.revision, self._state_stamp())
        return False

    def _repair_object(
        self,
        meta: ObjectMeta,
        target: list[str],
        entry: dict[str, Any],
        coverage: dict[str, dict[str, Any]],
    ) -> None:
        repair = entry.get("repair") or {}
        after = repair.get("after", 0) if repair.get("fields") == target else 0
        records = []
        if target:
            service = RecordService(None, system=True)
            page = service.query(
                meta.name,
                filters=[Filter("id", "gt", after)] if after else [],
                sort="id",
                limit=REPAIR_BATCH,
                fields=_needed_fields(meta),
            )
            records = page.records
            self.backend.index_documents([build_document(meta, r.id, r.values) for r in records])
        if len(records) == REPAIR_BATCH:
            repair = {"fields": target, "after": records[-1].id}
            coverage[meta.name] = {"fields": entry.get("fields"), "repair": repair}
            self._save_coverage(coverage)
            return
        # Every record now holds exactly the target fields.
        if target:
            self.backend.object_rewritten(meta.name, frozenset(target))
        else:
            self.backend.rebuild((), objects=[meta.name])  # nothing searchable: no documents
        coverage[meta.name] = {"fields": target, "repair": None}
        self._save_coverage(coverage)
        log.info("Search: %s re-indexed for fields %s.", meta.name, ", ".join(target) or "none")

    # ------------------------------------------------------------------ full rebuild

    def rebuild(
        self,
        *,
        objects: Iterable[str] | None = None,
        progress: Callable[[int], None] | None = None,
        wait: float = 60.0,
    ) -> int:
        """Rebuild the index (or some objects) from the records; holds the writer lock.

        Outbox rows written before the rebuild read the records are covered by it and
        are deleted; later ones stay for the drain. Runs in an application context.
        """
        with self.lock.hold(wait=wait) as held:
            if not held:
                raise IndexerBusy(
                    "Another process is writing the search index; try again in a moment."
                )
            try:
                return self._rebuild(objects, progress)
            finally:
                db.session.rollback()

    def _rebuild(
        self, objects: Iterable[str] | None, progress: Callable[[int], None] | None
    ) -> int:
        catalog = current_catalog()
        only = None if objects is None else sorted(set(objects))
        chosen = [m for m in catalog.active() if only is None or m.name in only]
        covered = _visible_outbox_ranges(only)
        service = RecordService(None, system=True)

        def batches() -> Iterator[list[Document]]:
            for meta in chosen:
                if not searchable_fields(meta):
                    continue
                fields = _needed_fields(meta)
                batch: list[Document] = []
                for record in service.iterate(meta.name, batch=REPAIR_BATCH, fields=fields):
                    batch.append(build_document(meta, record.id, record.values))
                    if len(batch) >= REPAIR_BATCH:
                        yield batch
                        if progress is not None:
                            progress(len(batch))
                        batch = []
                if batch:
                    yield batch
                    if progress is not None:
                        progress(len(batch))

        written = self.backend.rebuild(batches(), objects=only)
        coverage = {} if only is None else self.coverage()
        for meta in chosen:
            target = sorted(item.name for item in searchable_fields(meta))
            coverage[meta.name] = {"fields": target, "repair": None}
        self._save_coverage(coverage)
        for low, high in covered:
            db.session.execute(delete(SearchOutbox).where(SearchOutbox.id.between(low, high)))
        db.session.commit()
        self._settled = None
        return written

    def pending(self) -> int:
        """Outbox rows waiting to be indexed."""
        return int(db.session.scalar(select(func.count()).select_from(SearchOutbox)) or 0)

    # ------------------------------------------------------------------ the thread

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, app: Flask) -> None:
        """Start the background thread (once per process and data directory)."""
        with self._start_lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(app,), name="bastion-search-indexer", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the end of the idle pause."""
        self._wake.set()

    def _run(self, app: Flask) -> None:
        log.info("Search indexer started for %s.", self.directory)
        while not self._stop.is_set():
            pause = IDLE_SECONDS
            try:
                self.last_batch = 0
                with app.app_context():
                    if self.tick():
                        backlog = self.last_batch >= BATCH
                        pause = 0.0 if backlog or not self.last_batch else COMMIT_SPACING_SECONDS
            except Exception:
                log.exception("The search indexer failed; it retries in %s s.", ERROR_SECONDS)
                pause = ERROR_SECONDS
            if pause == COMMIT_SPACING_SECONDS:
                self._stop.wait(pause)  # wakes during the spacing join the next batch
            elif pause:
                self._wake.wait(pause)
                self._wake.clear()


class IndexerBusy(RuntimeError):
    """The writer lock stayed taken for longer than the caller would wait."""


def _needed_fields(meta: ObjectMeta) -> list[str]:
    """What a document is built from: the owner and the searchable fields."""
    return ["owner", *(item.name for item in searchable_fields(meta))]


def _visible_outbox_ranges(objects: list[str] | None) -> list[tuple[int, int]]:
    """Id ranges of the outbox rows committed now, for deletion after a rebuild.

    Only rows visible before the records are read are covered by the rebuild. On
    PostgreSQL a transaction still open may hold a lower id and commit later; its row is
    not visible here, so no range includes it and the drain will see it.
    """
    statement = select(SearchOutbox.id).order_by(SearchOutbox.id)
    if objects is not None:
        statement = statement.where(SearchOutbox.object_name.in_(objects))
    ranges: list[tuple[int, int]] = []
    for (row_id,) in db.session.execute(statement.execution_options(yield_per=5000)):
        if ranges and row_id == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], row_id)
        else:
            ranges.append((row_id, row_id))
    return ranges


def ensure_started(app: Flask, indexer: Indexer) -> bool:
    """Start the thread unless switched off (``search_indexer = "off"``)."""
    from bastion.runtime import platform

    if platform(app).settings.search_indexer != "thread":
        return False
    if not indexer.running:
        indexer.start(app)
    return True
