"""Secret files a restored system cannot do without, carried wrapped by the master key.

The audit chain's HMAC key (and its checkpoint signing key) live in ``secrets/``; a
restored chain verifies and goes on only with the same key. They travel in the member
``secrets.wrapped.json``, each wrapped by the master key (``MasterKey.wrap``), never in
plain, not even inside the encrypted payload: a passphrase archive still needs the
master key to recover them, as it needs it for the encrypted fields. The session key
is made anew and the master key itself is never carried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bastion.audit.anchors import CHAIN_KEY, SIGNING_KEY
from bastion.backup.errors import ArchiveDamagedError, ArchiveKeyError
from bastion.backup.keysource import b64, unb64
from bastion.keys.master import MasterKey, MasterKeyError

CARRIED_NAME = "secrets.wrapped.json"
CARRIED_SECRETS = (CHAIN_KEY, SIGNING_KEY)


def _context(name: str) -> bytes:
    return b"bastion-backup/v1 secret file " + name.encode("ascii")


def wrap_secrets(secrets_dir: Path, master: MasterKey) -> bytes:
    """The member's content: every carried secret file that exists, wrapped."""
    files = {}
    for name in CARRIED_SECRETS:
        path = secrets_dir / name
        if path.is_file():
            files[name] = b64(master.wrap(path.read_bytes(), context=_context(name)))
    body = {"master_key_id": master.key_id, "files": files}
    return json.dumps(body, sort_keys=True, indent=2).encode("utf-8")


def unwrap_secrets(raw: bytes, master: MasterKey) -> dict[str, bytes]:
    """Name -> file content; ArchiveKeyError if ``master`` is not the key they were wrapped by."""
    try:
        body = json.loads(raw.decode("utf-8"))
        files = dict(body["files"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ArchiveDamagedError(f"The archive's {CARRIED_NAME} is not readable.") from None
    unwrapped = {}
    for name, blob in files.items():
        if name not in CARRIED_SECRETS:
            raise ArchiveDamagedError(f"The archive carries an unexpected secret {name!r}.")
        try:
            unwrapped[name] = master.unwrap(unb64(blob, name), context=_context(name))
        except MasterKeyError:
            raise ArchiveKeyError(
                f"The archive's secret files are wrapped by the master key "
                f"{body.get('master_key_id')}, not by {master.key_id}; supply the "
                "installation's original master key."
            ) from None
    return unwrapped


def install_secrets(secrets_dir: Path, unwrapped: dict[str, bytes]) -> None:
    """Write the carried secrets (0600) into a new data directory's secrets folder."""
    for name, content in unwrapped.items():
        scratch = secrets_dir / f".{name}.restore"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(scratch, secrets_dir / name)
