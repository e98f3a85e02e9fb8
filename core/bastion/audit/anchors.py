"""Signed checkpoints of the chain's head, kept outside the database.

Whoever can write the database can rewrite the chain from some entry on and make it
consistent again. Checkpoints — (position, hash) pairs signed with an Ed25519 key whose
private half lives in the secrets folder — pin the chain as it was: ``verify`` finds a
rewritten, reordered or truncated chain by a checkpoint it no longer matches. They are
appended to ``<data_dir>/audit/checkpoints.jsonl`` at least every ``EVERY_ENTRIES``
entries (after the commit that passes the mark) and every ``EVERY_SECONDS`` while
entries are added (a thread in each serving process, ``start_checkpointer``), and
optionally sent to syslog (setting ``audit_syslog``: ``/dev/log`` or ``host:port``).

Both keys (the chain's HMAC key and the signing key) are made by ``bastion init`` or
``bastion upgrade`` and travel with backups; they are never made up later, since a new
key would make the existing trail look forged. Only the installation's own signing key
is trusted when checking; its public half is also published as ``keys/<key id>.pub``
for auditors' own tools.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask

from bastion.audit.entries import utc_timestamp
from bastion.keyfiles import SecretFileError, ensure_secrets_dir, read_secret

log = logging.getLogger(__name__)

SIGNING_KEY = "audit-signing.key"
#: The HMAC key of the entries' hashes (``chain``). Both files travel with backups.
CHAIN_KEY = "audit-chain.key"
CHECKPOINTS = "checkpoints.jsonl"
EVERY_ENTRIES = 1_000
EVERY_SECONDS = 60.0
CHECKPOINT_CONTEXT = b"bastion audit checkpoint\n"
ARCHIVE_CONTEXT = b"bastion audit archive\n"
ARCHIVE_ROW_CONTEXT = b"bastion audit archive row\n"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    key: str
    line: int


class AnchorError(RuntimeError):
    """A checkpoint or signature that does not check out."""


class Anchors:
    """The checkpoints and signing keys of one data directory."""

    def __init__(self, data_dir: Path, secrets_dir: Path) -> None:
        self.folder = data_dir / "audit"
        self.secrets_dir = secrets_dir
        self._private: Ed25519PrivateKey | None = None
        self._key_id = ""
        self._chain_key: bytes | None = None

    @property
    def checkpoints_path(self) -> Path:
        return self.folder / CHECKPOINTS

    # Signing ----------------------------------------------------------------------

    def chain_key(self) -> bytes:
        if self._chain_key is None:
            self._chain_key = _read_key(self.secrets_dir, CHAIN_KEY)
        return self._chain_key

    def _signer(self) -> tuple[Ed25519PrivateKey, str]:
        if self._private is None:
            seed = _read_key(self.secrets_dir, SIGNING_KEY)
            private = Ed25519PrivateKey.from_private_bytes(seed)
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            key_id = hashlib.sha256(public).hexdigest()[:16]
            keys = self.folder / "keys"
            keys.mkdir(parents=True, exist_ok=True)
            published = keys / f"{key_id}.pub"
            if not published.exists():
                published.write_text(public.hex() + "\n", encoding="ascii")
            self._private, self._key_id = private, key_id
        return self._private, self._key_id

    def signing_key_id(self) -> str:
        return self._signer()[1]

    def sign(self, context: bytes, payload: dict[str, Any]) -> dict[str, Any]:
        private, key_id = self._signer()
        body = {**payload, "key": key_id}
        signature = private.sign(context + _canonical(body))
        return {**body, "sig": signature.hex()}

    def check_signature(self, context: bytes, signed: dict[str, Any]) -> None:
        """Only this installation's signing key is trusted: a key file dropped into the
        data directory next to the checkpoints proves nothing."""
        body = {key: value for key, value in signed.items() if key != "sig"}
        try:
            private, trusted_id = self._signer()
        except SecretFileError as exc:
            raise AnchorError(str(exc)) from None
        if body.get("key") != trusted_id:
            raise AnchorError(f"it is signed with an unknown key {str(body.get('key'))!r}")
        try:
            private.public_key().verify(
                bytes.fromhex(str(signed.get("sig", ""))), context + _canonical(body)
            )
        except (InvalidSignature, ValueError):
            raise AnchorError("its signature does not match its content") from None

    # Checkpoints ------------------------------------------------------------------

    def write_checkpoint(self, seq: int, chain_hash: str) -> dict[str, Any]:
        signed = self.sign(
            CHECKPOINT_CONTEXT, {"seq": seq, "hash": chain_hash, "at": utc_timestamp()}
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps(signed, separators=(",", ":")) + "\n"
        fd = os.open(self.checkpoints_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return signed

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, its signature checked; AnchorError names the first bad line."""
        if not self.checkpoints_path.exists():
            return []
        found: list[Checkpoint] = []
        with self.checkpoints_path.open(encoding="ascii", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                where = f"checkpoint line {number} of {self.checkpoints_path}"
                try:
                    signed = json.loads(text)
                    self.check_signature(CHECKPOINT_CONTEXT, signed)
                    found.append(
                        Checkpoint(
                            int(signed["seq"]),
                            str(signed["hash"]),
                            str(signed["at"]),
                            str(signed["key"]),
                            number,
                        )
                    )
                except AnchorError as exc:
                    raise AnchorError(f"{where}: {exc}") from None
                except (ValueError, KeyError, TypeError):
                    raise AnchorError(f"{where} is not a checkpoint") from None
        return found

    def last_checkpoint_seq(self) -> int:
        """The position of the last checkpoint line (unchecked; for scheduling only)."""
        try:
            with self.checkpoints_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 1024))
                lines = handle.read().splitlines()
            return int(json.loads(lines[-1])["seq"]) if lines else 0
        except (OSError, ValueError, KeyError, IndexError):
            return 0


def ensure_audit_keys(secrets_dir: Path) -> None:
    """Create the chain and signing keys of a new installation (``bastion init``, and
    ``bastion upgrade`` of one from before the audit trail); keeps existing ones."""
    for name in (CHAIN_KEY, SIGNING_KEY):
        target = secrets_dir / name
        if target.exists():
            continue
        ensure_secrets_dir(secrets_dir)
        scratch = secrets_dir / f".{name}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(scratch, target)  # never replaces a key another process just made
        except FileExistsError:
            pass
        finally:
            scratch.unlink()


def _read_key(directory: Path, name: str) -> bytes:
    """A 32-byte audit key. Never made up when missing: a new key would turn every
    existing entry into an apparent forgery."""
    target = directory / name
    if not target.exists():
        raise SecretFileError(
            f"The audit key file {target} is missing. Restore it from a backup "
            "(`bastion backup` archives carry it); without it the audit trail can be "
            "neither extended nor verified."
        )
    try:
        key = bytes.fromhex(read_secret(directory, name))
    except ValueError:
        raise SecretFileError(f"The key file {target} is not hexadecimal.") from None
    if len(key) != 32:
        raise SecretFileError(f"The key file {target} must hold 32 bytes.")
    return key


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


# Scheduling -------------------------------------------------------------------------

_lock = threading.Lock()
#: Per data directory: the last position checkpointed by this process (or read back).
_last: dict[str, int] = {}


def anchors_for(app: Flask) -> Anchors:
    found = app.extensions.get("bastion.audit_anchors")
    if found is None:
        settings = app.extensions["bastion"].settings
        found = app.extensions["bastion.audit_anchors"] = Anchors(
            Path(settings.data_dir), settings.secrets_dir
        )
    return found


def after_append(app: Flask, last_seq: int, last_hash: str) -> None:
    """Checkpoint when this commit took the chain past ``EVERY_ENTRIES`` more entries."""
    anchors = anchors_for(app)
    key = str(anchors.folder)
    with _lock:
        previous = _last.get(key)
        if previous is None:
            previous = _last[key] = anchors.last_checkpoint_seq()
        if last_seq - previous < EVERY_ENTRIES:
            return
    checkpoint(app, last_seq, last_hash)  # advances _last only when written


def checkpoint(app: Flask, seq: int, chain_hash: str) -> dict[str, Any] | None:
    """Write a checkpoint (and send it to syslog when configured); never raises: it runs
    after commits, whose data is saved whatever becomes of the checkpoint."""
    anchors = anchors_for(app)
    try:
        signed = anchors.write_checkpoint(seq, chain_hash)
    except Exception:
        log.exception("the audit checkpoint could not be written")
        return None
    with _lock:
        _last[str(anchors.folder)] = max(_last.get(str(anchors.folder), 0), seq)
    _send_to_syslog(app, signed)
    return signed


def _send_to_syslog(app: Flask, signed: dict[str, Any]) -> None:
    target = app.extensions["bastion"].settings.audit_syslog
    if not target:
        return
    try:
        if target.startswith("/"):
            handler = logging.handlers.SysLogHandler(address=target)
        else:
            host, _, port = target.rpartition(":")
            handler = logging.handlers.SysLogHandler(address=(host or target, int(port or 514)))
        try:
            message = "bastion-audit-checkpoint " + json.dumps(signed, separators=(",", ":"))
            handler.emit(
                logging.makeLogRecord(
                    {"msg": message, "levelno": logging.INFO, "levelname": "INFO"}
                )
            )
        finally:
            handler.close()
    except (OSError, ValueError):
        log.warning("the audit checkpoint could not be sent to syslog at %s", target)


def start_checkpointer(app: Flask, stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread that checkpoints the head every ``EVERY_SECONDS`` if it moved
    (until ``stop`` is set)."""
    stop = stop or threading.Event()

    def run() -> None:
        from bastion.audit.verify import read_head

        while not stop.wait(EVERY_SECONDS):
            try:
                with app.app_context():
                    head = read_head()
                if head is not None and head[0] > anchors_for(app).last_checkpoint_seq():
                    checkpoint(app, *head)
            except Exception:
                log.exception("the periodic audit checkpoint failed")

    thread = threading.Thread(target=run, name="bastion-audit-checkpoints", daemon=True)
    thread.start()
    return thread
