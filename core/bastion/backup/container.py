"""The archive file: a header, then the encrypted payload (a tar stream, see ``archive``).

Layout::

    MAGIC (16 bytes)
    header length (4 bytes, big endian)
    header (UTF-8 JSON, sorted keys): format version, cipher, chunk size, nonce prefix,
        HKDF salt, how to recover the file key (``keysource``), creation time, version
    header MAC (32 bytes): HMAC-SHA256 over everything above, under a key derived from
        the file key, so a wrong key is told apart from a damaged payload
    chunks (``stream``), each authenticated with everything above as associated data
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from bastion import __version__
from bastion.backup.errors import ArchiveFormatError, ArchiveKeyError
from bastion.backup.keysource import KeySource, b64, derive, unb64
from bastion.backup.stream import (
    DEFAULT_CHUNK_SIZE,
    NONCE_PREFIX_BYTES,
    DecryptingReader,
    EncryptingWriter,
)

MAGIC = b"\x89BASTION-BACKUP\n"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM-STREAM"
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAC_BYTES = 32


@dataclass(frozen=True)
class Header:
    fields: dict[str, Any]
    #: Magic, length and JSON exactly as in the file: the chunks' associated data.
    raw: bytes

    @property
    def key_entry(self) -> dict[str, Any]:
        return self.fields["key"]


def open_for_writing(
    sink: BinaryIO, source: KeySource, *, created_at: str, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> EncryptingWriter:
    """Write the header to ``sink``; return the writer for the payload (close it to finish)."""
    file_key, key_entry = source.new_file_key()
    salt = os.urandom(32)
    nonce_prefix = os.urandom(NONCE_PREFIX_BYTES)
    fields = {
        "format": FORMAT_VERSION,
        "cipher": CIPHER,
        "chunk_size": chunk_size,
        "nonce_prefix": b64(nonce_prefix),
        "salt": b64(salt),
        "key": key_entry,
        "created_at": created_at,
        "bastion_version": __version__,
    }
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    raw = MAGIC + struct.pack(">I", len(body)) + body
    sink.write(raw)
    sink.write(
        hmac.new(derive(file_key, salt=salt, purpose=b"header"), raw, hashlib.sha256).digest()
    )
    payload_key = derive(file_key, salt=salt, purpose=b"payload")
    return EncryptingWriter(
        sink, key=payload_key, nonce_prefix=nonce_prefix, aad=raw, chunk_size=chunk_size
    )


def read_header(source: BinaryIO) -> Header:
    """The header at the start of ``source`` (not yet authenticated: see open_for_reading)."""
    magic = source.read(len(MAGIC))
    if magic != MAGIC:
        raise ArchiveFormatError("This file is not a Bastion backup archive.")
    length_bytes = source.read(4)
    if len(length_bytes) != 4:
        raise ArchiveFormatError("The archive ends inside its header: it was truncated.")
    (length,) = struct.unpack(">I", length_bytes)
    if length > MAX_HEADER_BYTES:
        raise ArchiveFormatError("The archive header is implausibly large: the file is damaged.")
    body = source.read(length)
    if len(body) != length:
        raise ArchiveFormatError("The archive ends inside its header: it was truncated.")
    try:
        fields = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ArchiveFormatError(
            "The archive header is not readable: the file is damaged."
        ) from None
    if not isinstance(fields, dict) or not isinstance(fields.get("key"), dict):
        raise ArchiveFormatError("The archive header is not readable: the file is damaged.")
    if fields.get("format") != FORMAT_VERSION or fields.get("cipher") != CIPHER:
        raise ArchiveFormatError(
            f"The archive has format {fields.get('format')!r} ({fields.get('cipher')!r}), "
            f"made by Bastion {fields.get('bastion_version', '?')}; this version reads format "
            f"{FORMAT_VERSION}. Verify or restore it with a matching Bastion."
        )
    chunk_size = fields.get("chunk_size")
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ArchiveFormatError("The archive header's chunk size is out of range.")
    return Header(fields, MAGIC + length_bytes + body)


def open_for_reading(source: BinaryIO, keys: KeySource) -> tuple[Header, DecryptingReader]:
    """Read and authenticate the header; return it and a reader of the authenticated payload."""
    header = read_header(source)
    file_key = keys.file_key(header.key_entry)
    salt = unb64(header.fields.get("salt"), "salt")
    nonce_prefix = unb64(header.fields.get("nonce_prefix"), "nonce prefix")
    if len(nonce_prefix) != NONCE_PREFIX_BYTES:
        raise ArchiveFormatError("The archive header's nonce prefix has the wrong length.")
    mac = source.read(MAC_BYTES)
    if len(mac) != MAC_BYTES:
        raise ArchiveFormatError("The archive ends inside its header: it was truncated.")
    expected = hmac.new(derive(file_key, salt=salt, purpose=b"header"), header.raw, hashlib.sha256)
    if not hmac.compare_digest(mac, expected.digest()):
        raise ArchiveKeyError(
            f"The archive does not open with {keys.describe()}: the key is wrong, or the "
            "archive header was altered."
        )
    reader = DecryptingReader(
        source,
        key=derive(file_key, salt=salt, purpose=b"payload"),
        nonce_prefix=nonce_prefix,
        aad=header.raw,
        chunk_size=header.fields["chunk_size"],
    )
    return header, reader
