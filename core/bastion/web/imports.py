"""CSV import pages: upload, map columns and choose options, then progress and report.

1. ``/o/<object>/import``: choose a file (and a saved mapping, if any).
2. ``/imports/<job>/map``: each column of the file gets a field (pre-filled from the
   saved mapping, or by name); options: dry run, key field for update-or-insert,
   all-or-nothing or skip bad rows, skip duplicates; the mapping can be saved by name.
3. ``/imports/<job>``: the import runs in a background thread; the page polls
   ``/imports/<job>/progress`` with htmx every second and shows a progress bar, then
   the report: counts, every bad row by line, flagged duplicates.

Everything goes through :mod:`bastion.data.importer` and the user's record service, so
the pages need what the CLI needs: ``import`` on the object, and ``create`` / ``edit``
for what is written. A job is visible only to the user who started it. The uploaded
file waits in ``<data dir>/imports/`` until its import ends (or a day at most).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select, update

from bastion.access import has_permission, login_required
from bastion.data import blind_index, importer
from bastion.data.errors import RecordError
from bastion.data.models import ImportJob
from bastion.data.records import ATOMIC_KEY, RecordService
from bastion.data.requests import request_service
from bastion.db import db
from bastion.models import User, utcnow
from bastion.runtime import platform

log = logging.getLogger(__name__)
bp = Blueprint("imports", __name__)

#: Uploaded files older than this are removed when the next one arrives.
STALE_SECONDS = 24 * 3600
#: How often a running import writes its progress to the database (seconds).
PROGRESS_EVERY = 1.0
#: Columns shown on the mapping page.
MAX_COLUMNS = 200

#: Imports running at once in this process; later ones wait their turn (queued).
MAX_RUNNING = 2
#: Imports one user may have waiting or running at once (each holds a file of up to
#: 32 MB and a worker's time); uploads still to be mapped, at most this many a day.
MAX_UNFINISHED = 3
MAX_UNMAPPED = 10

_lock = threading.Lock()
_slots = threading.BoundedSemaphore(MAX_RUNNING)
_progress: dict[int, tuple[int, int]] = {}
_threads: set[threading.Thread] = set()


# --------------------------------------------------------------------------- helpers


@bp.errorhandler(RecordError)
def _record_error(exc: RecordError):
    return render_template(
        "error.html", status=exc.status, title=exc.title, detail=exc.message
    ), exc.status


def _upload_dir() -> Path:
    path = Path(platform().settings.data_dir) / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _file_of(job: ImportJob) -> Path:
    return _upload_dir() / f"{job.id}.csv"


def _remove_stale_uploads() -> None:
    cutoff = time.time() - STALE_SECONDS
    for path in _upload_dir().glob("*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue


def _job(job_id: int) -> ImportJob:
    """The current user's job (another user's is the same 404 as a missing one)."""
    job = db.session.get(ImportJob, job_id)
    if job is None or job.user_id != current_user.id:
        abort(404)
    request_service().require(job.object_name, "import")
    return job


def _stored(job: ImportJob) -> dict[str, Any]:
    try:
        data = json.loads(job.report or "{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _header(job: ImportJob) -> tuple[list[str], list[list[str]]]:
    """The file's columns and its first rows, for the mapping page."""
    text, _ = importer.decode(_file_of(job).read_bytes())
    rows = importer.read_rows(text)
    first = next(rows, None)
    if first is None:
        raise importer.ImportProblem("The file is empty: it needs a header line and rows.")
    sample = []
    for _, cells in rows:
        sample.append(cells)
        if len(sample) >= 3:
            break
    return [cell.strip() for cell in first[1]][:MAX_COLUMNS], sample


def _choices(service: RecordService, object_name: str) -> list[Any]:
    meta = service.object(object_name)
    return [item for item in service.editable(meta)]


def _key_choices(service: RecordService, object_name: str) -> list[Any]:
    meta = service.object(object_name)
    found = [meta.fields["id"]] if "id" in meta.fields else []
    for item in service.editable(meta):
        findable = item.filterable or blind_index.has_index(item)  # encrypted: exact matches
        if findable and item.in_row and item.type != "multi_picklist":
            found.append(item)
    return found


def _busy_message(exclude: int | None = None) -> str | None:
    """Why the current user may not upload or start another import now, or None.

    Only the last day's jobs count: a job a crash left "running" does not block for ever.
    """
    since = utcnow() - timedelta(seconds=STALE_SECONDS)
    mine = (
        select(ImportJob.status, func.count())
        .where(ImportJob.user_id == current_user.id, ImportJob.created_at >= since)
        .group_by(ImportJob.status)
    )
    if exclude is not None:
        mine = mine.where(ImportJob.id != exclude)
    counts = {status: count for status, count in db.session.execute(mine)}
    if counts.get("queued", 0) + counts.get("running", 0) >= MAX_UNFINISHED:
        return (
            f"You already have {MAX_UNFINISHED} imports waiting or running; start another "
            "when one of them has finished."
        )
    if exclude is None and counts.get("new", 0) >= MAX_UNMAPPED:
        return (
            f"You uploaded {MAX_UNMAPPED} files today without importing them; import "
            "those or try again tomorrow."
        )
    return None


# --------------------------------------------------------------------------- upload


@bp.get("/o/<object>/import")
@login_required
def upload(object: str):
    service = request_service()
    meta = service.require(object, "import")
    return render_template(
        "imports/upload.html",
        meta=meta,
        mappings=importer.mapping_names(meta.name),
        error=None,
    )


@bp.post("/o/<object>/import")
@login_required
def receive(object: str):
    service = request_service()
    meta = service.require(object, "import")
    sent = request.files.get("file")
    mapping = request.form.get("mapping", "").strip()
    busy = _busy_message()
    if busy is not None:
        return render_template(
            "imports/upload.html", meta=meta, mappings=importer.mapping_names(meta.name), error=busy
        ), 429
    error = None
    data = sent.read() if sent is not None else b""
    if not data:
        error = "Choose a CSV file to import."
    else:
        try:
            importer.decode(data)
        except importer.ImportProblem as exc:
            error = exc.message
    if mapping and importer.load_mapping(meta.name, mapping) is None:
        error = f"There is no saved mapping {mapping!r}."
    if error is not None:
        return render_template(
            "imports/upload.html",
            meta=meta,
            mappings=importer.mapping_names(meta.name),
            error=error,
        ), 422
    _remove_stale_uploads()
    name = os.path.basename((sent.filename if sent else "") or "import.csv")[:255]
    job = ImportJob(
        user_id=current_user.id,
        object_name=meta.name,
        file_name=name,
        status="new",
        report=json.dumps({"mapping_name": mapping}),
    )
    db.session.add(job)
    db.session.commit()
    path = _file_of(job)
    path.write_bytes(data)
    path.chmod(0o600)
    return redirect(url_for("imports.mapping", job_id=job.id))


# --------------------------------------------------------------------------- mapping


@bp.get("/imports/<int:job_id>/map")
@login_required
def mapping(job_id: int):
    job = _job(job_id)
    if job.status != "new":
        return redirect(url_for("imports.job", job_id=job.id))
    return _mapping_page(job, error=None)


def _mapping_page(job: ImportJob, error: str | None, status: int = 200):
    service = request_service()
    meta = service.object(job.object_name)
    try:
        headers, sample = _header(job)
    except (importer.ImportProblem, OSError) as exc:
        message = exc.message if isinstance(exc, importer.ImportProblem) else "The file is gone."
        return render_template("imports/upload.html", meta=meta, mappings=[], error=message), 422
    stored = _stored(job)
    saved = None
    if stored.get("mapping_name"):
        saved = importer.load_mapping(meta.name, stored["mapping_name"])
    chosen = stored.get("columns") or {}
    key_field = stored.get("key_field")
    if not chosen:
        if saved is not None:
            chosen = importer.mapping_of(saved)
            key_field = key_field or saved.key_field
        else:
            chosen = _guess(service, meta, headers)
    folded = {importer.fold_title(column): name for column, name in chosen.items()}
    rows = [
        {
            "index": index,
            "header": header,
            "field": folded.get(importer.fold_title(header), ""),
            "sample": [cells[index] if index < len(cells) else "" for cells in sample],
        }
        for index, header in enumerate(headers)
    ]
    return render_template(
        "imports/map.html",
        job=job,
        meta=meta,
        rows=rows,
        fields=_choices(service, meta.name),
        keys=_key_choices(service, meta.name),
        key_field=key_field or "",
        options=stored.get("options", {}),
        save_as=stored.get("save_as") or (saved.name if saved else ""),
        error=error,
    ), status


def _guess(service: RecordService, meta: Any, headers: list[str]) -> dict[str, str]:
    guessed = {}
    allowed = {item.name for item in service.editable(meta)}
    for header in headers:
        item = importer.field_for_title(meta, header, allowed)
        guessed[header] = item.name if item is not None else ""
    return guessed


@bp.post("/imports/<int:job_id>/start")
@login_required
def start(job_id: int):
    job = _job(job_id)
    if job.status != "new":
        return redirect(url_for("imports.job", job_id=job.id))
    service = request_service()
    meta = service.object(job.object_name)
    try:
        headers, _ = _header(job)
    except (importer.ImportProblem, OSError):
        return _mapping_page(job, None)
    allowed = {item.name for item in service.editable(meta)} | {"id"}
    columns = {}
    for index, header in enumerate(headers):
        name = request.form.get(f"column-{index}", "").strip()
        columns[header] = name if name in allowed else ""
    key_field = request.form.get("key_field", "").strip() or None
    if key_field == "id" and "id" not in columns.values():
        for header in headers:  # updating by id: the file's "id" column is the key
            if header.strip().casefold() == "id" and not columns.get(header):
                columns[header] = "id"
    if key_field != "id" and "id" in columns.values():
        db.session.commit()
        return _mapping_page(job, "A column goes to ID only to update records by their ID.", 422)
    options = {
        "dry_run": request.form.get("dry_run") == "yes",
        "skip_bad_rows": request.form.get("mode") == "skip_bad_rows",
        "skip_duplicates": request.form.get("skip_duplicates") == "yes",
    }
    save_as = request.form.get("save_as", "").strip()
    stored = _stored(job)
    stored.update(columns=columns, key_field=key_field, options=options, save_as=save_as)
    job.report = json.dumps(stored)
    if key_field and key_field != "id" and key_field not in columns.values():
        db.session.commit()
        return _mapping_page(job, "The key field must be one of the mapped columns.", 422)
    if not any(columns.values()):
        db.session.commit()
        return _mapping_page(job, "Map at least one column to a field.", 422)
    busy = _busy_message(exclude=job.id)
    if busy is not None:
        db.session.commit()
        return _mapping_page(job, busy, 429)
    if save_as:
        try:
            importer.save_mapping(
                meta.name,
                save_as,
                columns,
                key_field,
                current_user.id,
                replace_any=has_permission(current_user, "admin.schema"),
            )
        except importer.ImportProblem as exc:
            db.session.rollback()
            return _mapping_page(job, exc.message, 422)
    job.status = "queued"
    job.dry_run = options["dry_run"]
    db.session.commit()
    if save_as:
        flash(f"Saved the mapping “{' '.join(save_as.split())}”.", "success")
    start_job(current_app._get_current_object(), job.id)  # type: ignore[attr-defined]
    return redirect(url_for("imports.job", job_id=job.id))


# --------------------------------------------------------------------------- progress


@bp.get("/imports/<int:job_id>")
@login_required
def job(job_id: int):
    job = _job(job_id)
    if job.status == "new":
        return redirect(url_for("imports.mapping", job_id=job.id))
    meta = request_service().object(job.object_name)
    return render_template("imports/job.html", job=job, meta=meta, **_state(job))


@bp.get("/imports/<int:job_id>/progress")
@login_required
def progress(job_id: int):
    job = _job(job_id)
    meta = request_service().object(job.object_name)
    return render_template("imports/_progress.html", job=job, meta=meta, **_state(job))


def _state(job: ImportJob) -> dict[str, Any]:
    processed, total = job.processed_rows, job.total_rows
    with _lock:
        live = _progress.get(job.id)
    if live is not None and job.status in ("queued", "running"):
        processed, total = live
    report = None
    problem = None
    if job.status in ("done", "failed"):
        data = _stored(job)
        problem = data.get("problem")
        if problem is None and "object" in data:
            report = importer.ImportReport.from_json(data)
    return {
        "record_url": _record_url,
        "running": job.status in ("queued", "running"),
        "processed": processed,
        "total": total,
        "report": report,
        "problem": problem,
    }


def _record_url(object_name: str, record_id: int) -> str | None:
    if "records.detail" not in current_app.view_functions:
        return None
    return url_for("records.detail", object=object_name, record_id=record_id)


# --------------------------------------------------------------------------- the job


def start_job(app: Flask, job_id: int) -> None:
    """Run the queued import in a background thread."""

    def run() -> None:
        try:
            with _slots, app.app_context():
                _run(app, job_id)
        except Exception:
            log.exception("Import job %s failed unexpectedly.", job_id)
        finally:
            with _lock:
                _progress.pop(job_id, None)
                _threads.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=f"bastion-import-{job_id}", daemon=True)
    with _lock:
        _threads.add(thread)
    thread.start()


def wait_for_imports(timeout: float = 30.0) -> None:
    """Wait for the running imports (tests, and a server shutting down)."""
    with _lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)


def _run(app: Flask, job_id: int) -> None:
    job = db.session.get(ImportJob, job_id)
    if job is None or job.status != "queued":
        return
    user = db.session.get(User, job.user_id) if job.user_id else None
    path = _file_of(job)
    stored = _stored(job)
    job.status = "running"
    db.session.commit()
    outcome: dict[str, Any]
    # The record service's per-request caches and the audit seam read the acting user
    # from the request context: give the thread one, signed in as the job's user.
    with app.test_request_context(f"/imports/{job_id}"):
        try:
            if user is None or not user.active:
                raise importer.ImportProblem("The user who started this import is disabled.")
            g._login_user = user
            options = importer.ImportOptions(
                mapping=stored.get("columns") or None,
                key_field=stored.get("key_field") or None,
                **stored.get("options", {}),
            )
            report = importer.run_import(
                RecordService(user),
                job.object_name,
                path.read_bytes(),
                options,
                progress=_Progress(job_id),
            )
            outcome = report.as_json()
            job.total_rows, job.processed_rows = report.total, report.processed
            job.created_count, job.updated_count = report.created, report.updated
            job.error_count = len(report.errors)
            job.status = "done"
        except (importer.ImportProblem, RecordError, OSError) as exc:
            db.session.rollback()
            message = getattr(exc, "message", None) or "The uploaded file is gone."
            outcome = {"problem": message}
            job = db.session.get(ImportJob, job_id)
            job.status = "failed"
        except Exception:
            db.session.rollback()
            log.exception("Import job %s failed.", job_id)
            outcome = {"problem": "The import failed unexpectedly; nothing more was written."}
            job = db.session.get(ImportJob, job_id)
            job.status = "failed"
        outcome["options"] = {k: stored.get(k) for k in ("columns", "key_field", "options")}
        job.report = json.dumps(outcome, default=str)
        job.finished_at = utcnow()
        db.session.commit()
    with contextlib.suppress(OSError):
        path.unlink()


class _Progress:
    """Where a running import reports its progress.

    Always in this process's memory (the page polling it is usually served here). In
    the database too when that does not disturb the import: between two committed
    batches, or through a second connection on PostgreSQL; an import holding SQLite's
    single write lock in one transaction cannot be joined by another writer.
    """

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.written_at = 0.0

    def __call__(self, processed: int, total: int) -> None:
        with _lock:
            _progress[self.job_id] = (processed, total)
        now = time.monotonic()
        if now - self.written_at < PROGRESS_EVERY and processed < total:
            return
        self.written_at = now
        statement = (
            update(ImportJob)
            .where(ImportJob.id == self.job_id)
            .values(processed_rows=processed, total_rows=total)
        )
        if db.session.info.get(ATOMIC_KEY, 0) == 0:
            db.session.execute(statement)
            db.session.commit()
        elif db.engine.dialect.name != "sqlite":
            with db.engine.begin() as connection:
                connection.execute(statement)
