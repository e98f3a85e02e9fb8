"""Chunked AES-256-GCM: a streaming AEAD for archives larger than memory.

``cryptography`` offers one-shot AEADs (``AESGCM``) and a streaming GCM ``Cipher`` whose
single tag is only checked at the very end, after every plaintext byte was handed out.
Neither fits a multi-gigabyte backup that must be authenticated before any of it is
used, so the payload is cut into fixed-size chunks, each sealed on its own (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in Tink's streaming AEAD
and age):

- nonce = 7-byte random prefix || 4-byte big-endian chunk counter || 1-byte final flag,
  so a chunk moved to another position, or an inner chunk presented as the last one
  (truncation), fails to authenticate;
- every chunk's associated data is the archive header, so an edited header (key
  wrapping, parameters) fails every chunk;
- the last chunk always exists (possibly empty) and carries the final flag; bytes after
  it, or a missing one, are detected.

The key is unique per archive (random, or derived with a per-archive salt), so the
counter-based nonces never repeat under one key.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
#: Plaintext bytes per chunk unless the header says otherwise.
DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_CHUNKS = 2**32


class StreamError(ValueError):
    """The encrypted stream is damaged, truncated, reordered or under another key."""


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    if counter >= MAX_CHUNKS:
        raise StreamError("The archive has more chunks than the format allows.")
    return prefix + struct.pack(">I", counter) + (b"\x01" if final else b"\x00")


class EncryptingWriter(io.RawIOBase):
    """A write-only file object: plaintext in, sealed chunks out to ``sink``.

    ``close()`` seals the final chunk; until then the output is not a valid stream.
    """

    def __init__(
        self, sink: BinaryIO, *, key: bytes, nonce_prefix: bytes, aad: bytes, chunk_size: int
    ) -> None:
        if len(key) != 32 or len(nonce_prefix) != NONCE_PREFIX_BYTES or chunk_size < 1:
            raise ValueError("a 32-byte key, a 7-byte nonce prefix and a positive chunk size")
        self._sink = sink
        self._aead = AESGCM(key)
        self._prefix = nonce_prefix
        self._aad = aad
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._counter = 0
        self.plaintext_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed archive stream")
        self._buffer += data
        # Keep the last full chunk back: only close() knows whether it is the final one.
        while len(self._buffer) > self._chunk_size:
            self._seal(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        self.plaintext_bytes += len(data)
        return len(data)

    def _seal(self, chunk: bytes, *, final: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, final)
        self._sink.write(self._aead.encrypt(nonce, chunk, self._aad))
        self._counter += 1

    def abort(self) -> None:
        """Close without sealing the final chunk: the output stays an invalid stream."""
        self._buffer.clear()
        super().close()

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), final=True)
            self._buffer.clear()
            self._sink.flush()
        super().close()


class DecryptingReader(io.RawIOBase):
    """A read-only file object over ``source``: only authenticated plaintext comes out.

    Raises :class:`StreamError` at the first chunk that fails, and at the end of the
    source if the final chunk never came.
    """

    def __init__(
        self, source: BinaryIO, *, key: bytes, nonce_prefix: bytes, aad: bytes, chunk_size: int
    ) -> None:
        if len(key) != 32 or len(nonce_prefix) != NONCE_PREFIX_BYTES or chunk_size < 1:
            raise ValueError("a 32-byte key, a 7-byte nonce prefix and a positive chunk size")
        self._source = source
        self._aead = AESGCM(key)
        self._prefix = nonce_prefix
        self._aad = aad
        self._sealed_size = chunk_size + TAG_BYTES
        self._counter = 0
        # The chunk being handed out, and how much of it was: slicing bytes on every read
        # would copy the rest of the chunk each time.
        self._pending = memoryview(b"")
        self._next = self._read_sealed()  # read ahead one chunk to know which is last
        self._finished = False

    def readable(self) -> bool:
        return True

    def _read_sealed(self) -> bytes:
        parts = []
        wanted = self._sealed_size
        while wanted:
            part = self._source.read(wanted)
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def _open_next(self) -> None:
        current = self._next
        if not current:
            raise StreamError(
                "The archive ends before its last chunk: it was truncated or cut short."
            )
        following = self._read_sealed()
        final = not following
        if len(current) < TAG_BYTES:
            raise StreamError("The archive ends inside a chunk: it was truncated.")
        try:
            plain = self._aead.decrypt(
                _nonce(self._prefix, self._counter, final), current, self._aad
            )
        except InvalidTag:
            where = f"chunk {self._counter + 1}"
            raise StreamError(
                f"The archive's {where} fails authentication: the file was altered, "
                "truncated or reordered."
            ) from None
        self._counter += 1
        self._next = following
        self._pending = memoryview(plain)
        self._finished = final

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not len(self._pending) and not self._finished:
            self._open_next()
        size = min(len(target), len(self._pending))
        target[:size] = self._pending[:size]
        self._pending = self._pending[size:]  # a view: nothing is copied
        return size

    @property
    def chunks(self) -> int:
        """Chunks authenticated so far."""
        return self._counter
