"""Key operations: rotate, resume, status, retire. Audited with version numbers only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from bastion import audit
from bastion.db import db
from bastion.keys.keyring import (
    ACTIVE,
    DATA,
    DECRYPT_ONLY,
    RETIRED,
    KeyringError,
    keyring,
    shred_legacy_key_file,
)
from bastion.keys.locks import RotationRunning, exclude_writers, rotation_lock
from bastion.keys.models import EncryptionJob
from bastion.keys.reencrypt import (
    DEFAULT_BATCH_SIZE,
    Progress,
    all_targets,
    count_versions,
    reencrypt,
)

ROTATE = "rotate"
RUNNING = "running"
DONE = "done"
#: Passes over every column: a write that read the old active version just before the
#: rotation committed can land behind the first pass; the next one picks it up.
MAX_PASSES = 3


@dataclass
class RotationResult:
    version: int
    rewritten: int = 0
    passes: int = 0
    retired: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    created_at: datetime
    retired_at: datetime | None
    #: Values per column ("contacts.national_id", "users.mfa_secret") under this version.
    uses: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.uses.values())


def _now() -> datetime:
    return datetime.now(UTC)


def _fresh() -> None:
    # A snapshot taken before another connection committed (SQLite) must not be reused.
    db.session.rollback()


def _running_rotation() -> EncryptionJob | None:
    return db.session.scalar(
        select(EncryptionJob)
        .where(EncryptionJob.kind == ROTATE, EncryptionJob.state == RUNNING)
        .order_by(EncryptionJob.id.desc())
        .limit(1)
    )


def rotate(
    *,
    resume: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    retire_unused: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> RotationResult:
    """Make a new data key version active and move every value to it, online.

    ``resume``: no new version; continue moving values to the active one (after an
    interrupted rotation). ``retire_unused``: afterwards retire every decrypt-only
    version that no value uses any more.
    """
    if batch_size < 1:
        raise KeyringError("The batch size must be at least 1.")
    try:
        with rotation_lock():
            result = _rotate(resume=resume, batch_size=batch_size, on_progress=on_progress)
    except RotationRunning:
        raise KeyringError(
            "Another rotation is running right now; wait for it to finish "
            "(`bastion keys status` shows its progress)."
        ) from None
    if retire_unused:
        for entry in status():
            if entry.state == DECRYPT_ONLY and entry.total == 0:
                retire(entry.version)
                result.retired.append(entry.version)
    return result


def _rotate(
    *, resume: bool, batch_size: int, on_progress: Callable[[Progress], None] | None
) -> RotationResult:
    """The rotation itself; the caller holds the rotation lock."""
    ring = keyring()
    _fresh()
    previous = ring.active_version()
    if resume:
        version = previous
        job = _running_rotation()
        if job is None:
            job = _start_job(version)
        audit.record("keys.rotate_resume", changes={"version": version})
    else:
        version = ring.new_data_version()
        job = _start_job(version)
        audit.record("keys.rotate", changes={"from_version": previous, "to_version": version})
    job_id = job.id
    db.session.commit()
    result = RotationResult(version)
    for _ in range(MAX_PASSES):
        _fresh()
        result.passes += 1
        rewritten = 0
        for target in all_targets():
            done = 0
            for progress in reencrypt(target, version, batch_size=batch_size):
                done = progress.rewritten
                if on_progress is not None:
                    on_progress(progress)
            rewritten += done
        result.rewritten += rewritten
        if rewritten == 0:
            break
    _fresh()
    # Only this rotation's job; an older interrupted one (another target) is done too,
    # since every value now uses this version.
    db.session.execute(
        update(EncryptionJob)
        .where(EncryptionJob.id == job_id, EncryptionJob.state == RUNNING)
        .values(state=DONE, finished_at=_now(), migrated=EncryptionJob.migrated + result.rewritten)
    )
    db.session.execute(
        update(EncryptionJob)
        .where(
            EncryptionJob.kind == ROTATE,
            EncryptionJob.state == RUNNING,
            EncryptionJob.id < job_id,
        )
        .values(state=DONE, finished_at=_now())
    )
    audit.record("keys.rotate_complete", changes={"version": version, "values": result.rewritten})
    db.session.commit()
    return result


def _start_job(version: int) -> EncryptionJob:
    job = EncryptionJob(
        kind=ROTATE, target_version=version, state=RUNNING, migrated=0, started_at=_now()
    )
    db.session.add(job)
    db.session.flush()
    return job


def status() -> list[VersionStatus]:
    """Every data key version with its state and how many values use it, per column."""
    _fresh()
    return _status()


def _status() -> list[VersionStatus]:
    ring = keyring()
    versions = ring.versions(DATA)
    numbers = [v.version for v in versions]
    uses: dict[int, dict[str, int]] = {n: {} for n in numbers}
    for target in all_targets():
        counts = count_versions(target, numbers)
        for number in numbers:
            if counts.get(number):
                uses[number][target.label] = counts[number]
    return [
        VersionStatus(v.version, v.state, v.created_at, v.retired_at, uses[v.version])
        for v in versions
    ]


def retire(version: int) -> None:
    """Erase a decrypt-only version's key; refused while any value still uses it.

    The count and the erasure happen in one transaction that excludes every writer of
    ciphertexts (bastion.keys.locks): a value encrypted under this version by a
    transaction not yet committed is either counted or never written.
    """
    _fresh()
    try:
        exclude_writers(db.session.connection())
    except OperationalError:
        db.session.rollback()
        raise KeyringError(
            "Writes that encrypt values are still running; try `bastion keys retire` again "
            "in a moment."
        ) from None
    try:
        _retire_counted(version)
    except BaseException:
        db.session.rollback()
        raise
    audit.record("keys.retire", changes={"version": version})
    db.session.commit()
    if version == 1:
        # An installation older than the keyring may still have version 1 on disk.
        shred_legacy_key_file()


def _retire_counted(version: int) -> None:
    entries = {entry.version: entry for entry in _status()}
    entry = entries.get(version)
    if entry is None:
        raise KeyringError(f"There is no data key version {version}; see `bastion keys status`.")
    if entry.state == ACTIVE:
        raise KeyringError(
            f"Data key version {version} is the active one; rotate first (`bastion keys rotate`)."
        )
    if entry.state == RETIRED:
        raise KeyringError(f"Data key version {version} is already retired.")
    if entry.total:
        raise KeyringError(
            f"Data key version {version} still encrypts {entry.total} values; finish the "
            "rotation first (`bastion keys rotate --resume`)."
        )
    if _running_rotation() is not None:
        raise KeyringError(
            "A rotation is still running or was interrupted; finish it first "
            "(`bastion keys rotate --resume`)."
        )
    keyring().retire(version)
