"""The audit trail's tables: the hash-chained entries and the record of archived ranges.

Both are append-only: no code path updates or deletes them, and triggers (migration
0004) make the database refuse it too. The one exception is pruning entries that a
signed archive file already holds (``audit_archives``), which the triggers allow only
for sequence numbers an archive row covers.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db import db


class AuditEntry(db.Model):
    """One audited event, chained to the previous one by ``prev_hash``."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_object", "object_type", "object_id", "seq"),
        Index("ix_audit_entries_actor_user", "actor_user_id", "seq"),
        Index("ix_audit_entries_action", "action", "seq"),
        Index("ix_audit_entries_occurred_at", "occurred_at"),
    )

    #: Position in the chain: 1, 2, 3... without gaps (assigned by the writer, not a
    #: sequence, so a rolled-back transaction leaves no hole).
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: UTC, ISO 8601 with microseconds and "Z": text hashes and sorts the same everywhere.
    occurred_at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    token_id: Mapped[int | None] = mapped_column(Integer)
    client_addr: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(20))
    object_type: Mapped[str | None] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(100))
    #: Canonical JSON (sorted keys, no spaces), hashed as stored.
    changes: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditArchive(db.Model):
    """A range of entries moved to a signed archive file and then pruned from the table."""

    __tablename__ = "audit_archives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    #: Hash of the last archived entry: the first remaining entry's prev_hash.
    last_hash: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of the archive file as written.
    file_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    #: Ed25519 signature of the row's other columns (``archive.row_payload``): a row
    #: written by hand, to hide or prune entries, does not verify.
    signature: Mapped[str] = mapped_column(String(128))


class AuditHead(db.Model):
    """The chain's last position and hash (one row), advanced by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
