"""The chunked AES-256-GCM stream and the archive header, without an installation."""

from __future__ import annotations

import io
import os

import pytest

from bastion.backup.container import open_for_reading, open_for_writing
from bastion.backup.errors import ArchiveFormatError, ArchiveKeyError
from bastion.backup.keysource import PassphraseSource
from bastion.backup.stream import TAG_BYTES, DecryptingReader, EncryptingWriter, StreamError

KEY = bytes(range(32))
PREFIX = b"\x01" * 7
AAD = b"header"
CHUNK = 64


def seal(data: bytes, chunk: int = CHUNK) -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, key=KEY, nonce_prefix=PREFIX, aad=AAD, chunk_size=chunk)
    writer.write(data)
    writer.close()
    return sink.getvalue()


def open_(sealed: bytes, *, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    reader = DecryptingReader(
        io.BytesIO(sealed), key=key, nonce_prefix=PREFIX, aad=aad, chunk_size=CHUNK
    )
    return reader.read()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_at_every_chunk_boundary(size):
    data = os.urandom(size)
    sealed = seal(data)
    # Full chunks, the last of them final; an empty stream still has its final chunk.
    chunks = max(-(-size // CHUNK), 1)
    assert len(sealed) == size + chunks * TAG_BYTES
    assert open_(sealed) == data


def test_small_reads_return_everything():
    data = os.urandom(10 * CHUNK + 3)
    reader = DecryptingReader(
        io.BytesIO(seal(data)), key=KEY, nonce_prefix=PREFIX, aad=AAD, chunk_size=CHUNK
    )
    parts = []
    while part := reader.read(7):
        parts.append(part)
    assert b"".join(parts) == data


def test_a_flipped_bit_anywhere_is_detected():
    sealed = bytearray(seal(os.urandom(3 * CHUNK + 5)))
    for position in (0, CHUNK + TAG_BYTES + 3, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x80
        with pytest.raises(StreamError, match="fails authentication"):
            open_(bytes(damaged))


def test_truncation_at_a_chunk_boundary_is_detected():
    sealed = seal(os.urandom(3 * CHUNK + 5))
    whole_chunks = 2 * (CHUNK + TAG_BYTES)
    with pytest.raises(StreamError):
        open_(sealed[:whole_chunks])  # the last full chunk was never sealed as final
    with pytest.raises(StreamError, match="truncated"):
        open_(b"")


def test_reordered_or_repeated_chunks_are_detected():
    sealed = seal(os.urandom(3 * CHUNK + 5))
    size = CHUNK + TAG_BYTES
    first, second, rest = sealed[:size], sealed[size : 2 * size], sealed[2 * size :]
    with pytest.raises(StreamError):
        open_(second + first + rest)
    with pytest.raises(StreamError):
        open_(first + first + rest)


def test_appended_bytes_are_detected():
    with pytest.raises(StreamError):
        open_(seal(os.urandom(2 * CHUNK)) + b"extra")


def test_another_key_or_header_fails():
    sealed = seal(b"secret records")
    with pytest.raises(StreamError):
        open_(sealed, key=bytes(32))
    with pytest.raises(StreamError):
        open_(sealed, aad=b"other header")


def test_a_passphrase_archive_needs_the_same_passphrase(monkeypatch):
    # Cheap scrypt parameters keep the test fast; the header records what was used.
    monkeypatch.setattr("bastion.backup.keysource.SCRYPT_N", 2**10)
    sink = io.BytesIO()
    writer = open_for_writing(sink, PassphraseSource(b"right passphrase"), created_at="now")
    writer.write(b"payload")
    writer.close()
    header, reader = open_for_reading(
        io.BytesIO(sink.getvalue()), PassphraseSource(b"right passphrase")
    )
    assert reader.read() == b"payload"
    assert header.key_entry["n"] == 2**10
    with pytest.raises(ArchiveKeyError, match="does not open with the passphrase"):
        open_for_reading(io.BytesIO(sink.getvalue()), PassphraseSource(b"wrong passphrase"))


def test_forged_scrypt_parameters_are_refused(monkeypatch):
    monkeypatch.setattr("bastion.backup.keysource.SCRYPT_N", 2**10)
    sink = io.BytesIO()
    writer = open_for_writing(sink, PassphraseSource(b"pass"), created_at="now")
    writer.close()
    forged = sink.getvalue().replace(b'"n":1024', b'"n":9999')
    with pytest.raises(ArchiveFormatError, match="out of range"):
        open_for_reading(io.BytesIO(forged), PassphraseSource(b"pass"))


def test_other_files_are_not_archives():
    with pytest.raises(ArchiveFormatError, match="not a Bastion backup"):
        open_for_reading(io.BytesIO(b"PK\x03\x04 a zip file"), PassphraseSource(b"x"))
