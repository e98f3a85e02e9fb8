"""The keyring: versioned data keys in the database, wrapped by the master key.

Purposes:

- ``data``: encrypts field values and credential material. Versioned: one version is
  active (new ciphertexts), older ones are decrypt-only until rotation has moved every
  value off them, then they can be retired (their key material is erased).
- ``blind_index``: the HMAC key of blind indexes; one version, never rotated.

Unwrapped keys are cached per process (a version's key never changes). Which version is
active is read from the database at every encryption (one indexed row), so every process
encrypts with a new version as soon as a rotation commits.

An installation from before the keyring has ``secrets/credentials.key``: bootstrapping
wraps it as data key version 1, so every ``v1:`` ciphertext keeps decrypting, and
`bastion upgrade` then removes the file (``retire_legacy_key_file``): no data key lies
unwrapped on disk. A fresh installation's version 1 is random and exists only wrapped.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.db import db
from bastion.keyfiles import CREDENTIALS_KEY
from bastion.keys.master import MasterKey, MasterKeyError, load_master_key
from bastion.keys.models import ACTIVE, DECRYPT_ONLY, RETIRED, EncryptionKey

DATA = "data"
BLIND_INDEX = "blind_index"
PURPOSES = (DATA, BLIND_INDEX)
KEY_BYTES = 32
_CACHE_KEY = "bastion.keyring"


class KeyringError(RuntimeError):
    """A key operation was refused; the message says why and what to do."""


@dataclass(frozen=True)
class KeyVersion:
    purpose: str
    version: int
    state: str
    created_at: datetime
    retired_at: datetime | None


def wrap_context(purpose: str, version: int) -> bytes:
    # Bound into the wrapping, so a wrapped key copied to another purpose or version
    # cannot be unwrapped there.
    return f"bastion.keys:{purpose}:{version}".encode()


def _now() -> datetime:
    return datetime.now(UTC)


class Keyring:
    """One process's view of the keyring: unwrapped keys cached, states read fresh."""

    def __init__(self, master: MasterKey) -> None:
        self.master = master
        self._keys: dict[tuple[str, int], bytes] = {}
        self._aeads: dict[int, AESGCM] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------

    def _session(self) -> Session:
        return db.session

    def key(self, purpose: str, version: int) -> bytes:
        """The unwrapped key of one version (cached); KeyringError if it does not exist."""
        cached = self._keys.get((purpose, version))
        if cached is not None:
            return cached
        query = select(EncryptionKey.wrapped_key).where(
            EncryptionKey.purpose == purpose, EncryptionKey.version == version
        )
        row = self._session().execute(query).first()
        if row is None and not self._has_any(purpose):
            # Created in its own transaction, which this session may not see yet (a
            # SQLite snapshot): ensure_keys leaves version 1 in the cache.
            ensure_keys(self)
            if (purpose, version) in self._keys:
                return self._keys[(purpose, version)]
        if row is None or row.wrapped_key is None:
            raise KeyringError(f"The {purpose} key version {version} does not exist or is retired.")
        key = self.master.unwrap(row.wrapped_key, context=wrap_context(purpose, version))
        with self._lock:
            self._keys[(purpose, version)] = key
        return key

    def aead(self, version: int) -> AESGCM:
        cached = self._aeads.get(version)
        if cached is None:
            cached = AESGCM(self.key(DATA, version))
            with self._lock:
                self._aeads[version] = cached
        return cached

    def _has_any(self, purpose: str) -> bool:
        return (
            self._session().scalar(
                select(EncryptionKey.id).where(EncryptionKey.purpose == purpose).limit(1)
            )
            is not None
        )

    def active_version(self, purpose: str = DATA) -> int:
        """The version new ciphertexts use, read from the database (never cached)."""
        version = self._session().scalar(
            select(EncryptionKey.version).where(
                EncryptionKey.purpose == purpose, EncryptionKey.state == ACTIVE
            )
        )
        if version is None and not self._has_any(purpose):
            ensure_keys(self)
            version = 1 if (purpose, 1) in self._keys else None
        if version is None:
            raise KeyringError(f"There is no active {purpose} key; run `bastion upgrade`.")
        return version

    def versions(self, purpose: str = DATA) -> list[KeyVersion]:
        rows = self._session().scalars(
            select(EncryptionKey)
            .where(EncryptionKey.purpose == purpose)
            .order_by(EncryptionKey.version)
        )
        return [KeyVersion(r.purpose, r.version, r.state, r.created_at, r.retired_at) for r in rows]

    # -- changing (each in its own transaction) ------------------------------------

    def new_data_version(self) -> int:
        """Create the next data key version and make it the active one."""
        with db.engine.begin() as connection:
            session = Session(bind=connection)
            current = session.scalar(
                select(EncryptionKey.version)
                .where(EncryptionKey.purpose == DATA)
                .order_by(EncryptionKey.version.desc())
                .limit(1)
                .with_for_update()
            )
            version = (current or 0) + 1
            session.execute(
                update(EncryptionKey)
                .where(EncryptionKey.purpose == DATA, EncryptionKey.state == ACTIVE)
                .values(state=DECRYPT_ONLY)
            )
            session.add(self._new_row(DATA, version, secrets.token_bytes(KEY_BYTES)))
            try:
                session.flush()
            except IntegrityError:
                # Another process made this version at the same moment (SQLite has no
                # FOR UPDATE); rotations hold a lock, so only a stray caller gets here.
                raise KeyringError(
                    "Another process created a data key version at the same time; "
                    "check `bastion keys status` and try again."
                ) from None
            session.commit()
        return version

    def retire(self, version: int, session: Session | None = None) -> None:
        """Erase a version's key material in the caller's transaction (``session``,
        default db.session); the caller checked nothing uses it and commits."""
        session = session if session is not None else self._session()
        result = session.execute(
            update(EncryptionKey)
            .where(
                EncryptionKey.purpose == DATA,
                EncryptionKey.version == version,
                EncryptionKey.state == DECRYPT_ONLY,
            )
            .values(state=RETIRED, wrapped_key=None, retired_at=_now())
        )
        if result.rowcount != 1:
            raise KeyringError(
                f"Data key version {version} is not a decrypt-only version; only an "
                "older version that nothing uses any more can be retired."
            )
        with self._lock:
            self._keys.pop((DATA, version), None)
            self._aeads.pop(version, None)

    def _new_row(self, purpose: str, version: int, key: bytes) -> EncryptionKey:
        return EncryptionKey(
            purpose=purpose,
            version=version,
            wrapped_key=self.master.wrap(key, context=wrap_context(purpose, version)),
            state=ACTIVE,
            master_key_id=self.master.key_id,
            created_at=_now(),
        )


def _legacy_credentials_key() -> bytes | None:
    """The pre-keyring credentials key, if this installation has one."""
    from bastion.runtime import platform

    path = platform().settings.secrets_dir / CREDENTIALS_KEY
    if not path.is_file():
        return None
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:
        raise KeyringError(f"The key file {path} is not hexadecimal.") from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"The key file {path} must hold {KEY_BYTES} bytes.")
    return key


def retire_legacy_key_file(ring: Keyring | None = None) -> tuple[Path, bool] | None:
    """Remove ``secrets/credentials.key`` once the keyring holds it as data key 1.

    Returns None when there is no such file, else (path, removed). The file is removed
    only when version 1 in the database unwraps to exactly its key; a file that does not
    match is left for the operator to look at (it may be the only copy of some key).
    """
    from bastion.runtime import platform

    path = platform().settings.secrets_dir / CREDENTIALS_KEY
    legacy = _legacy_credentials_key()
    if legacy is None:
        return None
    ring = ring or keyring()
    db.session.rollback()  # see the version 1 that ensure_keys committed
    try:
        stored = ring.key(DATA, 1)
    except KeyringError:
        return path, False
    if not secrets.compare_digest(stored, legacy):
        return path, False
    shred_legacy_key_file()
    return path, True


def shred_legacy_key_file() -> bool:
    """Overwrite and remove ``secrets/credentials.key`` if it exists (its key is data key
    version 1, wrapped in the database, or retired)."""
    from bastion.runtime import platform

    path = platform().settings.secrets_dir / CREDENTIALS_KEY
    if not path.is_file():
        return False
    # Overwrite before unlinking, so the key does not linger in the file's old blocks
    # on file systems that write in place.
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        handle.write(b"\0" * size)
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    return True


def ensure_keys(ring: Keyring | None = None) -> list[str]:
    """Create version 1 of every purpose that has no key yet; returns the purposes created.

    Runs in its own transaction; two processes racing here both end with the same keys
    (the unique constraint lets one of them win).
    """
    ring = ring or keyring()
    created = []
    for purpose in PURPOSES:
        with db.engine.connect() as connection:
            session = Session(bind=connection)
            first = select(EncryptionKey.wrapped_key).where(
                EncryptionKey.purpose == purpose, EncryptionKey.version == 1
            )
            if session.scalar(select(EncryptionKey.id).where(EncryptionKey.purpose == purpose)):
                continue
            legacy = _legacy_credentials_key() if purpose == DATA else None
            key = legacy or secrets.token_bytes(KEY_BYTES)
            session.add(ring._new_row(purpose, 1, key))
            try:
                session.commit()
                created.append(purpose)
            except IntegrityError:  # another process was first: use its key
                session.rollback()
                wrapped = session.scalar(first)
                session.rollback()
                if wrapped is None:
                    continue
                key = ring.master.unwrap(wrapped, context=wrap_context(purpose, 1))
            with ring._lock:
                ring._keys[(purpose, 1)] = key
    return created


def keyring() -> Keyring:
    """The application's keyring (built once per process; the master key read once)."""
    extensions = current_app.extensions
    ring = extensions.get(_CACHE_KEY)
    if ring is None:
        from bastion.runtime import platform

        plat = platform()
        ring = Keyring(load_master_key(plat.settings, registry=plat.registry))
        extensions[_CACHE_KEY] = ring
    return ring


def purpose_key(purpose: str) -> bytes:
    """The current key of a purpose (``blind_index``: the HMAC key of blind indexes)."""
    if purpose not in PURPOSES:
        raise KeyringError(f"Unknown key purpose {purpose!r}.")
    ring = keyring()
    return ring.key(purpose, ring.active_version(purpose))


def check_master_key() -> None:
    """Raise MasterKeyError unless the master key unwraps the stored keys."""
    ring = keyring()
    for purpose in PURPOSES:
        for version in ring.versions(purpose):
            if version.state != RETIRED:
                ring.key(purpose, version.version)


__all__ = [
    "ACTIVE",
    "BLIND_INDEX",
    "DATA",
    "DECRYPT_ONLY",
    "RETIRED",
    "Keyring",
    "KeyringError",
    "MasterKeyError",
    "check_master_key",
    "ensure_keys",
    "keyring",
    "purpose_key",
    "retire_legacy_key_file",
]
