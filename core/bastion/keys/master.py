"""The master key: wraps the data keys kept in the database; it never enters the database.

Sources, the first one found wins:

1. a plugin's ``master_key_provider`` hook (an HSM or a KMS that wraps and unwraps for us),
2. the environment variable ``BASTION_MASTER_KEY`` (64 hexadecimal characters),
3. the key file at the setting ``master_key_file`` (default ``<data_dir>/secrets/master.key``),
   which must be readable by its owner only.

Whatever the source, callers get an object with ``key_id``, ``wrap`` and ``unwrap``. The
local key wraps with AES-256-GCM, binding the caller's context (what the wrapped key is
for) in as associated data, so a wrapped key copied to another purpose fails to unwrap.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.plugins.registry import PluginRegistry

ENV_VARIABLE = "BASTION_MASTER_KEY"
KEY_FILE_NAME = "master.key"
KEY_BYTES = 32
NONCE_BYTES = 12
#: First byte of a blob wrapped by the local key, so the format can change later.
WRAP_FORMAT = b"\x01"


class MasterKeyError(RuntimeError):
    """The master key is missing, malformed, exposed, or not the one the data was wrapped with."""


@runtime_checkable
class MasterKey(Protocol):
    """Wraps and unwraps data keys. Implementations may live in an HSM or a KMS."""

    #: Stable, non-secret fingerprint stored next to every wrapped key.
    key_id: str

    def wrap(self, key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes:
        """Return the key, or raise MasterKeyError if this is the wrong key or it was tampered."""
        ...


class LocalMasterKey:
    """A 256-bit master key held in this process (from the environment or the key file)."""

    def __init__(self, key: bytes, *, source: str) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"The master key from {source} must be {KEY_BYTES} bytes.")
        self._aead = AESGCM(key)
        self.source = source
        # Derived from the key alone, so moving the key from the file to the environment
        # keeps its id; one-way, so the id reveals nothing about the key.
        digest = hmac.new(key, b"bastion master key id", hashlib.sha256).hexdigest()
        self.key_id = f"local-{digest[:16]}"

    def __repr__(self) -> str:  # never show the key
        return f"LocalMasterKey(key_id={self.key_id!r}, source={self.source!r})"

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return WRAP_FORMAT + nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, blob: bytes, *, context: bytes) -> bytes:
        if blob[:1] != WRAP_FORMAT or len(blob) < 1 + NONCE_BYTES + 16:
            raise MasterKeyError(
                "A wrapped key has an unknown format; restore the database from a backup."
            )
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, context)
        except InvalidTag:
            raise MasterKeyError(
                f"The master key from {self.source} (id {self.key_id}) cannot unwrap the "
                "data keys: it is not the master key this database was set up with, or the "
                f"key table was tampered with; restore the original key file or "
                f"{ENV_VARIABLE}."
            ) from None


def key_file_path(settings: Settings) -> Path:
    """Where the master key file lives for these settings."""
    configured = settings.master_key_file.strip()
    if configured:
        return Path(configured).expanduser()
    return settings.secrets_dir / KEY_FILE_NAME


def _parse_hex(value: str, source: str) -> bytes:
    text = value.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"The master key in {source} must be {KEY_BYTES * 2} hexadecimal characters; "
            f"generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`."
        )
    return key


def file_problems(path: Path) -> list[str]:
    """Sentences saying why the key file at ``path`` cannot be used (empty: it can)."""
    if not path.is_file():
        return [
            f"The master key file {path} does not exist; run `bastion init`, restore it from "
            f"your key backup, or set {ENV_VARIABLE}."
        ]
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    problems = []
    if mode & 0o077:
        problems.append(
            f"The master key file {path} has mode {mode:o}, so other users can read it; "
            f"run `chmod 600 {path}`."
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        problems.append(
            f"The master key file {path} belongs to another user (uid {info.st_uid}); it "
            "must belong to the user that runs Bastion."
        )
    return problems


def _from_file(path: Path) -> LocalMasterKey:
    problems = file_problems(path)
    if problems:
        raise MasterKeyError(problems[0])
    try:
        content = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"The master key file {path} cannot be read: {exc}.") from None
    return LocalMasterKey(_parse_hex(content, f"the file {path}"), source=f"the file {path}")


def _from_plugins(registry: PluginRegistry) -> MasterKey | None:
    # Every usable installed plugin is asked, enabled or not: the key is needed before
    # the database (where enabled states live) is trusted, and a disable must not make
    # every encrypted value unreadable.
    answers = registry.call("master_key_provider", None)
    if not answers:
        return None
    if len(answers) > 1:
        names = ", ".join(name for name, _ in answers)
        raise MasterKeyError(
            f"Several plugins supply the master key ({names}); uninstall all but one."
        )
    name, provider = answers[0]
    if not (
        isinstance(getattr(provider, "key_id", None), str)
        and callable(getattr(provider, "wrap", None))
        and callable(getattr(provider, "unwrap", None))
    ):
        raise MasterKeyError(
            f"The plugin {name} returned a master key without key_id, wrap and unwrap; "
            "fix or uninstall the plugin."
        )
    return provider


def _current_registry() -> PluginRegistry | None:
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    from bastion.runtime import EXTENSION_KEY

    plat = current_app.extensions.get(EXTENSION_KEY)
    return plat.registry if plat is not None else None


def load_master_key(
    settings: Settings,
    *,
    registry: PluginRegistry | None = None,
    environ: dict[str, str] | None = None,
) -> MasterKey:
    """The installation's master key, from a plugin hook, the environment or the key file.

    ``registry`` defaults to the current application's plugins (none outside an app
    context); ``environ`` to ``os.environ``. Raises MasterKeyError with a sentence saying
    what to do when no usable key is found.
    """
    registry = registry if registry is not None else _current_registry()
    if registry is not None:
        provided = _from_plugins(registry)
        if provided is not None:
            return provided
    env = os.environ if environ is None else environ
    value = env.get(ENV_VARIABLE)
    if value is not None and value.strip():
        return LocalMasterKey(_parse_hex(value, ENV_VARIABLE), source=ENV_VARIABLE)
    return _from_file(key_file_path(settings))


def master_key_supplied_elsewhere(
    settings: Settings,
    *,
    registry: PluginRegistry | None = None,
    environ: dict[str, str] | None = None,
) -> bool:
    """True when a plugin or the environment supplies the key, so no file is needed."""
    registry = registry if registry is not None else _current_registry()
    if registry is not None and _from_plugins(registry) is not None:
        return True
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_VARIABLE, "").strip())


def create_key_file(path: Path) -> bool:
    """Write a new random master key file (0600, folder 0700); keep an existing one.

    Returns True when a file was created.
    """
    if path.exists():
        return False
    if not path.parent.exists():
        # An operator's own folder (master_key_file elsewhere) keeps its mode.
        path.parent.mkdir(parents=True, mode=0o700)
    # A temporary file of its own (two processes initializing at once never share one),
    # flushed to disk before it gets its name.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails instead of replacing a key another process created meanwhile.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    """Make the new file's name durable too (a crash must not lose the only key)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def ensure_key_file(settings: Settings, *, registry: PluginRegistry | None = None) -> Path | None:
    """Create the master key file unless a plugin or the environment supplies the key.

    Returns the path of a file created now, else None. Called by `bastion init` and
    `bastion upgrade`.
    """
    if master_key_supplied_elsewhere(settings, registry=registry):
        return None
    path = key_file_path(settings)
    return path if create_key_file(path) else None
