"""What can go wrong with a backup; every message is a sentence that says what to do."""

from __future__ import annotations


class BackupError(RuntimeError):
    """A backup, verification or restore was refused or failed."""


class ArchiveFormatError(BackupError):
    """The file is not a Bastion backup, or one of a format this version cannot read."""


class ArchiveKeyError(BackupError):
    """The key given (master key or passphrase) is not the one the archive was made with."""


class ArchiveDamagedError(BackupError):
    """The archive fails authentication or a checksum: altered, truncated or incomplete."""
