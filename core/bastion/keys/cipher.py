"""The one encryption service for field values and credential material (TOTP secrets).

AES-256-GCM under the keyring's data keys, a fresh 96-bit nonce per value. A ciphertext
is ``v<version>:`` followed by urlsafe base64 of nonce and sealed bytes, so it names the
key version it needs (the pre-keyring ``v1:`` ciphertexts are exactly this format under
version 1). The caller's context (object, field and record id; or table, column and
user) is bound in as associated data: a ciphertext moved to another record or field, or
altered, raises DecryptionError and never yields wrong data.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidTag

from bastion.encryption import DecryptionError
from bastion.keys.keyring import Keyring, KeyringError, keyring
from bastion.keys.locks import hold_writer_lock

NONCE_BYTES = 12
TOKEN = re.compile(r"v([1-9][0-9]{0,8}):([A-Za-z0-9_\-]+={0,2})\Z")


def version_of(token: str) -> int | None:
    """The key version a ciphertext names, or None if it is not a ciphertext at all."""
    match = TOKEN.match(token)
    return int(match.group(1)) if match else None


class EnvelopeCipher:
    """Encrypts under the active data key version; decrypts under the version named."""

    def __init__(self, ring: Keyring | None = None) -> None:
        self._ring = ring

    @property
    def ring(self) -> Keyring:
        return self._ring or keyring()

    def encrypt(self, plaintext: str, *, context: str, version: int | None = None) -> str:
        ring = self.ring
        if version is None:
            # Until this transaction ends, the version read here cannot be retired
            # (callers passing a version hold the lock on their own connection).
            hold_writer_lock()
            version = ring.active_version()
        nonce = os.urandom(NONCE_BYTES)
        sealed = ring.aead(version).encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return f"v{version}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, context: str) -> str:
        match = TOKEN.match(token)
        if match is None:
            raise DecryptionError("The stored value is not a ciphertext of this format.")
        version = int(match.group(1))
        try:
            aead = self.ring.aead(version)
        except KeyringError as exc:
            raise DecryptionError(f"The ciphertext needs key version {version}: {exc}") from None
        try:
            raw = base64.urlsafe_b64decode(match.group(2).encode("ascii"))
            if len(raw) < NONCE_BYTES + 16:
                raise ValueError("too short")
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode(
                "utf-8"
            )
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("The ciphertext does not decrypt under this context.") from exc


def cipher() -> EnvelopeCipher:
    """The application's cipher (its keyring caches the unwrapped keys)."""
    return EnvelopeCipher()
