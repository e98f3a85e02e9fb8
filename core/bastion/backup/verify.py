"""`bastion backup verify`: authenticate every chunk and check every member's checksum."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.backup.archive import read_archive
from bastion.backup.keysource import KeySource
from bastion.backup.manifest import Manifest


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    size: int
    manifest: Manifest
    chunks: int
    key: str

    def summary(self) -> str:
        m = self.manifest
        head = f"audit head {m.audit_head['seq']}" if m.audit_head else "no audit entries"
        return (
            f"{self.path.name}: made {m.created_at} by Bastion {m.bastion_version}, "
            f"{m.database_kind} database at revision {m.schema_revision}, "
            f"{m.record_total} records in {len(m.record_counts)} objects, {head}, "
            f"{len(m.members)} members, {self.chunks} chunks authenticated with {self.key}"
        )


def verify_backup(path: Path, keys: KeySource) -> VerifyReport:
    """Read the whole archive, keeping nothing; raises a BackupError subclass on any fault."""
    result = read_archive(path, keys, lambda _name: None)
    return VerifyReport(path, path.stat().st_size, result.manifest, result.chunks, keys.describe())
