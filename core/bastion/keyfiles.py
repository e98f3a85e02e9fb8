"""Secret files in the data directory: created 0600 in a 0700 folder, read back, checked.

The master encryption key of the encryption issue lives here too; values read from
these files are never logged.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

SESSION_KEY = "session.key"
#: The pre-keyring key of credential material. No longer created: `bastion upgrade`
#: wraps an existing one as data key version 1 of the keyring and removes the file.
CREDENTIALS_KEY = "credentials.key"
#: Secret files every initialized data directory must hold.
REQUIRED_SECRETS = (SESSION_KEY,)


class SecretFileError(RuntimeError):
    """A secret file is missing, empty or readable by others."""


def ensure_secrets_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_secret(directory: Path, name: str, nbytes: int = 32, *, replace: bool = False) -> Path:
    """Create a random secret file readable only by its owner; keep an existing one."""
    ensure_secrets_dir(directory)
    target = directory / name
    if target.exists() and not replace:
        return target
    value = secrets.token_hex(nbytes)
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.replace(tmp, target)
    return target


def read_secret(directory: Path, name: str) -> str:
    target = directory / name
    try:
        value = target.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise SecretFileError(
            f"The secret file {target} does not exist; run `bastion init` for this data directory."
        ) from None
    if not value:
        raise SecretFileError(f"The secret file {target} is empty.")
    return value


def permission_problems(directory: Path) -> list[str]:
    """Sentences describing secret files or folders that others could read."""
    problems: list[str] = []
    if not directory.is_dir():
        return [f"The secrets folder {directory} does not exist; run `bastion init`."]
    uid = os.getuid() if hasattr(os, "getuid") else None
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        problems.append(
            f"The secrets folder {directory} has mode {mode:o}; run `chmod 700 {directory}`."
        )
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        info = entry.stat()
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            problems.append(
                f"The secret file {entry} has mode {mode:o}, so other users can read it; "
                f"run `chmod 600 {entry}`."
            )
        if uid is not None and info.st_uid != uid:
            problems.append(
                f"The secret file {entry} belongs to another user (uid {info.st_uid}); "
                "it should belong to the user that runs Bastion."
            )
    return problems
