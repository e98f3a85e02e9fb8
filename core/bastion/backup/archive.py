"""The payload: a tar stream of manifest.json first, then the members it lists.

Writing streams file by file into the encrypting writer; reading streams the decrypted
tar, checking each member against the manifest as it passes and handing its bytes to
the caller (verify throws them away, restore writes them below a private folder). Tar
members are never extracted by ``tarfile`` itself: only regular files the manifest names
are accepted, at names checked to stay below the target folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bastion.backup.container import Header, open_for_reading, open_for_writing
from bastion.backup.errors import ArchiveDamagedError, ArchiveFormatError, BackupError
from bastion.backup.keysource import KeySource
from bastion.backup.manifest import MANIFEST_NAME, READ_SIZE, Manifest, is_safe_member_name
from bastion.backup.stream import StreamError

#: Called with a member's name; returns where to write its bytes, or None to discard them.
Destination = Callable[[str], Path | None]


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(mtime)
    info.type = tarfile.REGTYPE
    return info


def write_archive(
    output: BinaryIO,
    keys: KeySource,
    manifest: Manifest,
    files: dict[str, Path],
    *,
    mtime: float,
) -> None:
    """Write the encrypted archive of ``manifest`` and the ``files`` it lists to ``output``."""
    writer = open_for_writing(output, keys, created_at=manifest.created_at)
    buffered = io.BufferedWriter(writer, buffer_size=READ_SIZE)
    try:
        with tarfile.open(fileobj=buffered, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            raw = manifest.to_json()
            tar.addfile(_info(MANIFEST_NAME, len(raw), mtime), io.BytesIO(raw))
            for member in manifest.members:
                with files[member.name].open("rb") as handle:
                    tar.addfile(_info(member.name, member.size, mtime), handle)
        buffered.flush()
    except BaseException:
        # An unfinished archive must never look finished: no final chunk is sealed.
        writer.abort()
        raise
    buffered.close()  # seals the final chunk


@dataclass
class ReadResult:
    header: Header
    manifest: Manifest
    chunks: int


def read_archive(path: Path, keys: KeySource, destination: Destination) -> ReadResult:
    """Authenticate every chunk of ``path`` and check every member against the manifest.

    Raises ArchiveFormatError, ArchiveKeyError or ArchiveDamagedError naming what is wrong.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BackupError(f"The archive {path} cannot be opened: {exc.strerror}.") from None
    with handle:
        header, reader = open_for_reading(handle, keys)
        buffered = io.BufferedReader(reader, buffer_size=READ_SIZE)
        try:
            manifest = _read_members(buffered, destination)
            # The tar end marker may come before the stream's end: authenticate the rest,
            # which is where truncation and appended bytes show.
            while buffered.read(READ_SIZE):
                pass
        except StreamError as exc:
            raise ArchiveDamagedError(str(exc)) from None
        except tarfile.TarError as exc:
            raise ArchiveDamagedError(
                f"The archive's contents are not a valid tar stream: {exc}."
            ) from None
    return ReadResult(header, manifest, reader.chunks)


def _read_members(source: BinaryIO, destination: Destination) -> Manifest:
    manifest: Manifest | None = None
    seen: set[str] = set()
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for info in tar:
            if manifest is None:
                if info.name != MANIFEST_NAME or not info.isreg():
                    raise ArchiveDamagedError("The archive does not start with its manifest.json.")
                manifest = Manifest.from_json(_read_all(tar, info))
                for member in manifest.members:
                    if not is_safe_member_name(member.name) or member.name == MANIFEST_NAME:
                        raise ArchiveDamagedError(
                            f"The manifest lists an unsafe name {member.name!r}."
                        )
                continue
            expected = manifest.member(info.name)
            if expected is None or not info.isreg():
                raise ArchiveDamagedError(
                    f"The archive holds {info.name!r}, which its manifest does not list."
                )
            if info.name in seen:
                raise ArchiveDamagedError(f"The archive holds {info.name!r} twice.")
            seen.add(info.name)
            _copy_member(tar, info, expected.size, expected.sha256, destination(info.name))
    if manifest is None:
        raise ArchiveDamagedError("The archive is empty: it has no manifest.json.")
    missing = [m.name for m in manifest.members if m.name not in seen]
    if missing:
        raise ArchiveDamagedError(
            f"The archive lacks {len(missing)} member(s) its manifest lists, first {missing[0]!r}."
        )
    return manifest


def _read_all(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    if info.size > 64 * 1024 * 1024:
        raise ArchiveFormatError("The archive's manifest.json is implausibly large.")
    extracted = tar.extractfile(info)
    assert extracted is not None  # a regular file
    return extracted.read()


def _copy_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, size: int, sha256: str, target: Path | None
) -> None:
    extracted = tar.extractfile(info)
    assert extracted is not None  # a regular file
    digest = hashlib.sha256()
    written = 0
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        while block := extracted.read(READ_SIZE):
            digest.update(block)
            written += len(block)
            if out is not None:
                out.write(block)
    finally:
        if out is not None:
            out.close()
    if written != size or digest.hexdigest() != sha256:
        raise ArchiveDamagedError(
            f"The member {info.name!r} does not match its checksum in the manifest "
            f"({written} bytes, {size} expected)."
        )
