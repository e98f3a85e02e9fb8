"""Tables of the keyring (created by migration 0005)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db import db

ACTIVE = "active"
DECRYPT_ONLY = "decrypt-only"
RETIRED = "retired"


class EncryptionKey(db.Model):
    """One version of a data key, wrapped by the master key; never the key itself."""

    __tablename__ = "encryption_keys"
    __table_args__ = (
        UniqueConstraint("purpose", "version", name="uq_encryption_keys_purpose_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    master_key_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EncryptionJob(db.Model):
    """An online re-encryption: a rotation, or a field turning encrypted or plain."""

    __tablename__ = "encryption_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    object_name: Mapped[str | None] = mapped_column(String(40), nullable=True)
    field_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    target_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    migrated: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
