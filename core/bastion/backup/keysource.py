"""Where an archive's key comes from: the master key, or a passphrase for off-site copies.

Every archive has its own 256-bit *file key*:

- master key: the file key is random and stored in the header, wrapped by the master key
  (``MasterKey.wrap``, so an HSM or KMS provider works too). Restoring needs that master
  key, supplied separately; the archive never holds it.
- passphrase: the file key is derived from the passphrase with scrypt; salt and cost
  parameters are in the header. Such an archive can be restored anywhere with the
  passphrase alone (the restored system then still needs the installation's master key
  to read its encrypted fields).

The payload key and the header's MAC key are derived from the file key with HKDF, so the
same file key never serves two purposes.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bastion.backup.errors import ArchiveFormatError, ArchiveKeyError, BackupError
from bastion.keys.master import MasterKey, MasterKeyError

FILE_KEY_BYTES = 32
#: scrypt cost: 2**17 * 8 * 128 bytes = 128 MiB of memory, about half a second.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
#: Bounds a header may ask for: a forged header must not make us allocate gigabytes.
SCRYPT_MAX_N = 2**20
SCRYPT_MAX_R = 16
SCRYPT_MAX_P = 4
MIN_PASSPHRASE_CHARS = 12
WRAP_CONTEXT = b"bastion-backup/v1 file key"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ArchiveFormatError(f"The archive header's {what} is not valid base64.") from None


def derive(file_key: bytes, *, salt: bytes, purpose: bytes) -> bytes:
    """A 32-byte subkey of the file key for one purpose (payload, header MAC)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"bastion-backup/v1 " + purpose
    ).derive(file_key)


class KeySource(Protocol):
    """Makes a new file key for an archive, or recovers one from an archive's header."""

    def new_file_key(self) -> tuple[bytes, dict[str, Any]]:
        """A fresh file key and the header's ``key`` entry that lets it be recovered."""
        ...

    def file_key(self, entry: dict[str, Any]) -> bytes:
        """The file key described by a header's ``key`` entry; ArchiveKeyError if not ours."""
        ...

    def describe(self) -> str: ...


@dataclass
class MasterKeySource:
    master_key: MasterKey

    def new_file_key(self) -> tuple[bytes, dict[str, Any]]:
        file_key = os.urandom(FILE_KEY_BYTES)
        try:
            wrapped = self.master_key.wrap(file_key, context=WRAP_CONTEXT)
        except MasterKeyError as exc:
            raise BackupError(str(exc)) from None
        entry = {"source": "master-key", "key_id": self.master_key.key_id, "wrapped": b64(wrapped)}
        return file_key, entry

    def file_key(self, entry: dict[str, Any]) -> bytes:
        if entry.get("source") != "master-key":
            raise ArchiveKeyError(
                "This archive is protected by a passphrase; give it with --passphrase-file."
            )
        key_id = str(entry.get("key_id", ""))
        if key_id != self.master_key.key_id:
            raise ArchiveKeyError(
                f"This archive's key is wrapped by the master key {key_id}, but the master "
                f"key supplied is {self.master_key.key_id}; supply the installation's "
                "original master key (BASTION_MASTER_KEY or --master-key-file)."
            )
        try:
            file_key = self.master_key.unwrap(
                unb64(entry.get("wrapped"), "wrapped key"), context=WRAP_CONTEXT
            )
        except MasterKeyError:
            raise ArchiveKeyError(
                f"The master key {key_id} cannot unwrap this archive's key: it is the wrong "
                "key, or the archive header was altered."
            ) from None
        if len(file_key) != FILE_KEY_BYTES:
            raise ArchiveKeyError("The archive's unwrapped key has the wrong length.")
        return file_key

    def describe(self) -> str:
        return f"the master key {self.master_key.key_id}"


@dataclass
class PassphraseSource:
    passphrase: bytes

    def _scrypt(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=FILE_KEY_BYTES, n=n, r=r, p=p).derive(self.passphrase)

    def new_file_key(self) -> tuple[bytes, dict[str, Any]]:
        salt = os.urandom(16)
        file_key = self._scrypt(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        entry = {
            "source": "passphrase",
            "kdf": "scrypt",
            "salt": b64(salt),
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
        }
        return file_key, entry

    def file_key(self, entry: dict[str, Any]) -> bytes:
        if entry.get("source") != "passphrase":
            raise ArchiveKeyError(
                "This archive is protected by the master key, not a passphrase; leave out "
                "--passphrase-file and supply the master key."
            )
        if entry.get("kdf") != "scrypt":
            raise ArchiveFormatError(
                f"The archive uses an unknown key derivation {entry.get('kdf')!r}."
            )
        n, r, p = entry.get("n"), entry.get("r"), entry.get("p")
        if not _valid_scrypt(n, r, p):
            raise ArchiveFormatError("The archive header's scrypt parameters are out of range.")
        return self._scrypt(unb64(entry.get("salt"), "salt"), n, r, p)

    def describe(self) -> str:
        return "the passphrase"


def _valid_scrypt(n: Any, r: Any, p: Any) -> bool:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
        return False
    power_of_two = n & (n - 1) == 0
    return (
        2 <= n <= SCRYPT_MAX_N
        and power_of_two
        and 1 <= r <= SCRYPT_MAX_R
        and 1 <= p <= SCRYPT_MAX_P
    )


def read_passphrase_file(path: Path) -> PassphraseSource:
    """The passphrase in ``path``: its first line, which must be long enough."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"The passphrase file {path} cannot be read: {exc}.") from None
    lines = text.splitlines()
    passphrase = lines[0] if lines else ""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BackupError(
            f"The passphrase in {path} is shorter than {MIN_PASSPHRASE_CHARS} characters; "
            "use a long random one (for example `openssl rand -base64 32`)."
        )
    return PassphraseSource(passphrase.encode("utf-8"))
