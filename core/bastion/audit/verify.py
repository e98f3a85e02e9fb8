"""Walking the chain: ``bastion audit verify`` and ``--archive FILE``.

The walk checks, entry by entry in position order: that positions follow without a
gap (a deleted or inserted entry), that each entry names the previous entry's hash
(reordering, insertion, deletion), and that each entry's hash matches its content (an
edit). Then every signed checkpoint must match the entry at its position: a chain cut
short (truncation of the tail) or rewritten from some entry on fails there. Entries
moved to archives are covered by the archive rows: the walk starts after the last one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bastion.audit.anchors import ARCHIVE_ROW_CONTEXT, AnchorError, Anchors
from bastion.audit.chain import COLUMNS, GENESIS, entry_hash
from bastion.audit.models import AuditArchive, AuditEntry
from bastion.db import db

BATCH = 10_000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    #: Entries checked (in the table, or in the archive file).
    count: int
    #: The first problem, naming the entry and why; None when ok.
    problem: str | None = None
    last_seq: int = 0
    last_hash: str = GENESIS
    #: Things worth knowing that are not failures (an archive file kept elsewhere).
    notes: tuple[str, ...] = ()


def read_head() -> tuple[int, str] | None:
    """The last entry's position and hash, or None for an empty chain."""
    row = db.session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def walk(
    entries: Iterable[dict[str, Any]], *, first_seq: int, prev_hash: str, key: bytes
) -> VerifyResult:
    """Check a run of entries that should start at ``first_seq`` after ``prev_hash``."""
    expected_seq, expected_prev, count = first_seq, prev_hash, 0
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            if seq > expected_seq:
                what = (
                    f"entry {expected_seq} is missing (deleted): the chain goes from "
                    f"{expected_seq - 1} to {seq}"
                    if expected_seq > first_seq
                    else f"the chain should start at entry {expected_seq} but starts at {seq}"
                )
            else:
                what = f"entry {seq} appears out of order after entry {expected_seq - 1}"
            return VerifyResult(False, count, what, expected_seq - 1, expected_prev)
        if entry["prev_hash"] != expected_prev:
            return VerifyResult(
                False,
                count,
                f"entry {seq} does not follow entry {seq - 1}: its previous hash does not "
                "match (an entry was inserted, deleted or moved here)",
                seq - 1,
                expected_prev,
            )
        actual = entry_hash(entry, expected_prev, key)
        if actual != entry["hash"]:
            return VerifyResult(
                False,
                count,
                f"entry {seq} was altered: its content does not match its hash",
                seq - 1,
                expected_prev,
            )
        count += 1
        expected_seq, expected_prev = seq + 1, actual
    return VerifyResult(True, count, None, expected_seq - 1, expected_prev)


def _table_entries(after_seq: int) -> Iterator[dict[str, Any]]:
    """Entries past ``after_seq`` in position order, a batch at a time (keyset)."""
    columns = [getattr(AuditEntry, name) for name in COLUMNS]
    last = after_seq
    while True:
        rows = db.session.execute(
            select(*columns).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield dict(zip(COLUMNS, row, strict=True))
        last = rows[-1][0]


#: What an ``audit_archives`` row's signature covers.
ARCHIVECOLUMNS = (
    "first_seq", "last_seq", "last_hash", "file_name", "file_sha256", "created_at",
)  # fmt: skip


def row_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ARCHIVECOLUMNS}


def _archived_prefix(anchors: Anchors) -> tuple[int, str, list[str]] | VerifyResult:
    """Where the table's chain starts: after the archived ranges, each of which must be
    signed by this installation and follow the one before it from entry 1 on."""
    start_after, prev_hash, notes = 0, GENESIS, []
    rows = db.session.scalars(select(AuditArchive).order_by(AuditArchive.first_seq)).all()
    for row in rows:
        where = f"archive record {row.id} ({row.file_name})"
        values = {name: getattr(row, name) for name in ARCHIVECOLUMNS}
        try:
            anchors.check_signature(
                ARCHIVE_ROW_CONTEXT,
                {**row_payload(values), "key": anchors.signing_key_id(), "sig": row.signature},
            )
        except AnchorError as exc:
            return VerifyResult(False, 0, f"{where}: {exc}")
        if row.first_seq != start_after + 1 or row.last_seq < row.first_seq:
            return VerifyResult(
                False,
                0,
                f"{where} covers entries {row.first_seq} to {row.last_seq}, but the archived "
                f"entries before it end at {start_after}",
            )
        start_after, prev_hash = int(row.last_seq), str(row.last_hash)
        if not (anchors.folder / "archives" / row.file_name).is_file():
            notes.append(
                f"entries {row.first_seq} to {row.last_seq} are archived in {row.file_name} "
                f"(SHA-256 {row.file_sha256}), which is not in {anchors.folder / 'archives'}; "
                "keep it safe and check it with --archive"
            )
    return start_after, prev_hash, notes


def verify_chain(anchors: Anchors) -> VerifyResult:
    """Walk the table's chain and check it against the checkpoints."""
    prefix = _archived_prefix(anchors)
    if isinstance(prefix, VerifyResult):
        return prefix
    start_after, prev_hash, notes = prefix
    # Checkpoints are read first: a signature problem is reported even for a good chain.
    try:
        checkpoints = anchors.checkpoints()
    except AnchorError as exc:
        return VerifyResult(False, 0, str(exc))
    for point in checkpoints:
        if point.seq == start_after and point.hash != prev_hash:
            return VerifyResult(
                False,
                0,
                f"the archived entries end at {start_after}, but the checkpoint of {point.at} "
                f"(line {point.line}) recorded another hash there",
            )
    pinned = {point.seq: point for point in checkpoints if point.seq > start_after}
    hashes: dict[int, str] = {}

    def watched(entries: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for entry in entries:
            if entry["seq"] in pinned:
                hashes[entry["seq"]] = entry["hash"]
            yield entry

    result = walk(
        watched(_table_entries(start_after)),
        first_seq=start_after + 1,
        prev_hash=prev_hash,
        key=anchors.chain_key(),
    )
    if not result.ok:
        return result
    for seq in sorted(pinned):
        point = pinned[seq]
        if seq > result.last_seq:
            return VerifyResult(
                False,
                result.count,
                f"the chain ends at entry {result.last_seq}, but a checkpoint of {point.at} "
                f"(line {point.line}) recorded entry {seq}: entries were removed from the end",
                result.last_seq,
                result.last_hash,
            )
        if hashes.get(seq) != point.hash:
            return VerifyResult(
                False,
                result.count,
                f"entry {seq} does not match the checkpoint of {point.at} (line {point.line}): "
                "the chain was rewritten from this entry or earlier",
                result.last_seq,
                result.last_hash,
            )
    return dataclasses.replace(result, notes=tuple(notes))
