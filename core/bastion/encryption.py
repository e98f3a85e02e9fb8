"""The pre-keyring cipher of credential material, and the error every cipher raises.

Bastion now encrypts with ``bastion.keys.cipher`` (versioned data keys wrapped by the
master key). ``CredentialCipher`` is kept to describe the format older installations
wrote: AES-256-GCM under ``secrets/credentials.key``, ``v1:`` + urlsafe base64 of nonce
and sealed bytes, the context as associated data. `bastion upgrade` wraps that key as
data key version 1 of the keyring, so those ciphertexts keep decrypting unchanged.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.keyfiles import CREDENTIALS_KEY, SecretFileError, read_secret

FORMAT = "v1"  # AES-256-GCM, key version 1 (the credentials key file)
NONCE_BYTES = 12


class DecryptionError(RuntimeError):
    """A ciphertext was tampered with, moved, or made under another key."""


class CredentialCipher:
    def __init__(self, secrets_dir: Path) -> None:
        self._secrets_dir = secrets_dir
        self._aead: AESGCM | None = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            try:
                key = bytes.fromhex(read_secret(self._secrets_dir, CREDENTIALS_KEY))
            except ValueError:
                raise SecretFileError(
                    f"The key file {self._secrets_dir / CREDENTIALS_KEY} is not hexadecimal."
                ) from None
            if len(key) != 32:
                raise SecretFileError(
                    f"The key file {self._secrets_dir / CREDENTIALS_KEY} must hold 32 bytes."
                )
            self._aead = AESGCM(key)
        return self._aead

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher().encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return f"{FORMAT}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, context: str) -> str:
        version, _, body = token.partition(":")
        if version != FORMAT:
            raise DecryptionError(f"Unknown ciphertext format {version!r}.")
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            return self._cipher().decrypt(nonce, sealed, context.encode()).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("The ciphertext does not decrypt under this context.") from exc
