"""manifest.json: what an archive holds, and the checksum of every other member."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bastion.backup.errors import ArchiveDamagedError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
DEFINITIONS_NAME = "definitions.json"
#: The members under these folders; each member name is relative, "/"-separated.
AUDIT_PREFIX = "audit/"
CONFIG_PREFIX = "config/"
DATABASE_PREFIX = "database/"
READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    bastion_version: str
    created_at: str
    #: "sqlite" or "postgresql"
    database_kind: str
    #: The member holding the database (an SQLite file, or a pg_dump custom archive).
    database_member: str
    #: Alembic revision of the database when it was copied.
    schema_revision: str | None
    #: Records per object, counted in the same snapshot as the copy.
    record_counts: dict[str, int]
    #: The audit chain's last entry in the snapshot: {"seq": n, "hash": h}, or None.
    audit_head: dict[str, Any] | None
    #: Fingerprint of the master key that wraps the database's data keys (not secret).
    master_key_id: str | None
    #: PostgreSQL schema the tables were in (None for SQLite).
    database_schema: str | None = None
    members: list[Member] = field(default_factory=list)
    format: int = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        data = asdict(self)
        return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("format") != MANIFEST_FORMAT:
                raise ArchiveDamagedError(
                    f"The archive's manifest has format {data.get('format')!r}; this version "
                    f"of Bastion reads format {MANIFEST_FORMAT}."
                )
            members = [
                Member(str(m["name"]), int(m["size"]), str(m["sha256"]))
                for m in data.pop("members")
            ]
            return cls(**data, members=members)
        except ArchiveDamagedError:
            raise
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise ArchiveDamagedError("The archive's manifest.json is not readable.") from None

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def record_total(self) -> int:
        return sum(self.record_counts.values())


def checksum(handle: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 (hex) of what ``handle`` yields until its end."""
    digest = hashlib.sha256()
    size = 0
    while block := handle.read(READ_SIZE):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def describe_file(path: Path, name: str) -> Member:
    with path.open("rb") as handle:
        size, sha = checksum(handle)
    return Member(name, size, sha)


def is_safe_member_name(name: str) -> bool:
    """A relative path without "..", empty or absolute parts: safe to extract below a folder."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in {"", ".", ".."} for part in name.split("/"))
