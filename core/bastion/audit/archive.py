"""Retention: moving old entries to a signed archive file, and checking such a file.

``bastion audit archive`` writes the oldest entries (all those before a cut-off, as a
prefix of the chain) to a gzip'd JSON-lines file: a header naming the range and the
hash the range follows, the entries with every column, and an end line with the count,
the last hash and the SHA-256 of everything before it, signed with the audit signing
key. Only after the file is written and read back does one transaction record the
archive (``audit_archives``) and delete the range: the triggers allow deleting exactly
the positions an archive row covers, and the archiving itself is an audit entry. The
chain in the table then starts after the archive's last hash, so nothing leaves the
chain silently.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from bastion import audit
from bastion.audit.anchors import ARCHIVE_CONTEXT, ARCHIVE_ROW_CONTEXT, AnchorError, Anchors
from bastion.audit.chain import COLUMNS, GENESIS
from bastion.audit.entries import utc_timestamp
from bastion.audit.models import AuditArchive, AuditEntry
from bastion.audit.verify import BATCH, VerifyResult, row_payload, verify_chain, walk
from bastion.db import db

HEADER_TYPE = "bastion-audit-archive"
FORMAT_VERSION = 1


class ArchiveError(RuntimeError):
    """The archive cannot be written, or a file is not a sound archive."""


@dataclass(frozen=True)
class Archived:
    path: Path
    first_seq: int
    last_seq: int
    count: int


def archive_before(anchors: Anchors, cutoff: str, folder: Path) -> Archived | None:
    """Archive the chain's prefix of entries that occurred before ``cutoff`` (ISO UTC)."""
    checked = verify_chain(anchors)
    if not checked.ok:
        raise ArchiveError(
            f"the audit chain does not verify, so nothing was archived: {checked.problem}"
        )
    last_archive = db.session.execute(
        select(AuditArchive.last_seq, AuditArchive.last_hash)
        .order_by(AuditArchive.last_seq.desc())
        .limit(1)
    ).first()
    start_after, prev_hash = (
        (int(last_archive[0]), str(last_archive[1])) if last_archive else (0, GENESIS)
    )
    first_kept = db.session.execute(
        select(func.min(AuditEntry.seq)).where(
            AuditEntry.seq > start_after, AuditEntry.occurred_at >= cutoff
        )
    ).scalar()
    last_seq = (int(first_kept) - 1) if first_kept is not None else checked.last_seq
    if last_seq <= start_after:
        return None
    first_seq = start_after + 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"audit-archive-{first_seq:012d}-{last_seq:012d}.jsonl.gz"
    if path.exists():
        raise ArchiveError(f"{path} already exists; move it away first.")
    last_hash = _write_file(anchors, path, first_seq, last_seq, prev_hash)
    file_sha256 = _sha256(path)
    # Read back before anything leaves the table.
    result = verify_archive(anchors, path)
    if not result.ok or result.last_hash != last_hash:
        path.unlink(missing_ok=True)
        raise ArchiveError(f"the archive written to {path} did not read back: {result.problem}")
    count = last_seq - first_seq + 1
    row = {
        "first_seq": first_seq,
        "last_seq": last_seq,
        "last_hash": last_hash,
        "file_name": path.name,
        "file_sha256": file_sha256,
        "created_at": utc_timestamp(),
    }
    signed = anchors.sign(ARCHIVE_ROW_CONTEXT, row_payload(row))
    db.session.execute(insert(AuditArchive).values(**row, signature=signed["sig"]))
    db.session.execute(
        delete(AuditEntry).where(AuditEntry.seq >= first_seq, AuditEntry.seq <= last_seq)
    )
    audit.record(
        "audit.archive",
        object_type="audit_archive",
        object_id=path.name,
        changes={
            "first_seq": first_seq,
            "last_seq": last_seq,
            "count": count,
            "sha256": file_sha256,
            "before": cutoff,
        },
    )
    db.session.commit()
    return Archived(path, first_seq, last_seq, count)


def _write_file(anchors: Anchors, path: Path, first_seq: int, last_seq: int, prev_hash: str) -> str:
    digest = hashlib.sha256()
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    last_hash, count = prev_hash, 0
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:

        def emit(item: dict[str, Any]) -> None:
            line = (json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            digest.update(line)
            out.write(line)

        emit(
            {
                "type": HEADER_TYPE,
                "version": FORMAT_VERSION,
                "first_seq": first_seq,
                "last_seq": last_seq,
                "prev_hash": prev_hash,
                "created_at": utc_timestamp(),
            }
        )
        columns = [getattr(AuditEntry, name) for name in COLUMNS]
        after = first_seq - 1
        while after < last_seq:
            rows = db.session.execute(
                select(*columns)
                .where(AuditEntry.seq > after, AuditEntry.seq <= last_seq)
                .order_by(AuditEntry.seq)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            for row in rows:
                entry = dict(zip(COLUMNS, row, strict=True))
                emit(entry)
                last_hash = entry["hash"]
                count += 1
            after = rows[-1][0]
        end = anchors.sign(
            ARCHIVE_CONTEXT,
            {"type": "end", "count": count, "last_hash": last_hash, "digest": digest.hexdigest()},
        )
        out.write((json.dumps(end, separators=(",", ":")) + "\n").encode())
        out.flush()
        raw.flush()
        os.fsync(raw.fileno())
    if count != last_seq - first_seq + 1:
        partial.unlink(missing_ok=True)
        raise ArchiveError("entries changed while they were archived; nothing was archived")
    os.replace(partial, path)
    return last_hash


def verify_archive(anchors: Anchors, path: Path) -> VerifyResult:
    """Check an archive file (streamed): its signature, its digest and its chain."""
    digest = hashlib.sha256()
    state: dict[str, Any] = {"header": None, "end": None}

    def lines() -> Iterator[bytes]:
        with gzip.open(path, "rb") as handle:
            held: bytes | None = None
            for line in handle:
                if held is not None:
                    digest.update(held)
                    yield held
                held = line
            state["end"] = held

    def entries(source: Iterator[bytes]) -> Iterator[dict[str, Any]]:
        for line in source:
            yield json.loads(line)

    try:
        source = lines()
        first = next(source, None)
        if first is None:
            return VerifyResult(False, 0, f"{path} is not a complete archive (no end line)")
        header = json.loads(first)
        if header.get("type") != HEADER_TYPE:
            return VerifyResult(False, 0, f"{path} is not an audit archive")
        result = walk(
            entries(source),
            first_seq=int(header["first_seq"]),
            prev_hash=str(header["prev_hash"]),
            key=anchors.chain_key(),
        )
        for _ in source:  # a failed walk stops early; the digest needs every line
            pass
        end = json.loads(state["end"] or b"{}")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return VerifyResult(False, 0, f"{path} cannot be read as an archive: {exc}")
    except (ValueError, KeyError, TypeError):
        return VerifyResult(False, 0, f"{path} holds a line that is not an archive line")
    if end.get("type") != "end":
        return VerifyResult(False, 0, f"{path} is not a complete archive (no end line)")
    try:
        anchors.check_signature(ARCHIVE_CONTEXT, end)
    except AnchorError as exc:
        return VerifyResult(False, 0, f"the archive's end line: {exc}")
    if digest.hexdigest() != end.get("digest"):
        return VerifyResult(False, 0, "the archive's content does not match its signed digest")
    if not result.ok:
        return result
    if result.count != end.get("count") or result.last_hash != end.get("last_hash"):
        return VerifyResult(
            False, result.count, "the archive's entries do not match its signed count and last hash"
        )
    if result.last_seq != int(header["last_seq"]):
        return VerifyResult(
            False, result.count, "the archive ends before the range its header names"
        )
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
