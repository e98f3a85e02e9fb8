"""Argon2id password hashing with the operator's cost settings, and the password policy."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.common_passwords import is_common
from bastion.config import Settings

#: Longer passwords are refused: hashing megabytes would be a denial of service.
MAX_LENGTH = 1024
#: Shorter names and email local parts ("li", "bob") are not checked: too many false hits.
MIN_CONTEXT_WORD = 4


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; the message says how."""


def _squeeze(text: str) -> str:
    """NFKC, case folded, without white space: "Alice Martin" and "alicemartin" match."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _context_words(context: Iterable[str]) -> set[str]:
    """The email local part (whole) and the name (whole and each word) of the user."""
    words: set[str] = set()
    for item in context:
        if not item:
            continue
        if "@" in item:
            words.add(_squeeze(item.rpartition("@")[0]))
        else:
            words.add(_squeeze(item))
            words.update(_squeeze(part) for part in item.split())
    return {word for word in words if len(word) >= MIN_CONTEXT_WORD}


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self.min_length = settings.password_min_length
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    @cached_property
    def _dummy_hash(self) -> str:
        # Verified against when the account does not exist, so both take as long.
        return self.hasher.hash("bastion-timing-equalizer")

    def check_policy(self, password: str, *, context: Iterable[str] = ()) -> None:
        """Refuse a new password that is too short, too long, common, or about the user.

        ``context`` holds what an attacker knows about the user: their email address (its
        local part is checked) and name. Following NIST SP 800-63B and OWASP ASVS there
        are no composition rules and no rotation; length counts Unicode code points after
        NFKC normalization, so a full-width letter counts as one. Nothing is truncated: Argon2
        hashes the whole password.
        """
        length = len(unicodedata.normalize("NFKC", password))
        if length < self.min_length:
            raise PasswordPolicyError(
                f"The password must be at least {self.min_length} characters long. "
                f"This one has {length}; a few unrelated words make a good one."
            )
        if length > MAX_LENGTH:
            raise PasswordPolicyError(
                f"The password must be at most {MAX_LENGTH} characters long. This one has {length}."
            )
        if is_common(password):
            raise PasswordPolicyError(
                "This password is on the list of commonly used passwords that attackers try "
                "first. Choose another one."
            )
        folded = _squeeze(password)
        for word in _context_words(context):
            if word in folded:
                raise PasswordPolicyError(
                    "The password must not contain your name or email address. Choose another one."
                )

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True only for an Argon2 hash of ``password``; every other case takes as long.

        No hash (unknown user, throttled attempt) or a stored value that is not an Argon2
        hash (an invited user without a password) is checked against a dummy hash and
        refused, so the answer's timing does not tell these cases from a wrong password.
        """
        usable = stored_hash is not None and stored_hash.startswith("$argon2")
        try:
            matched = self.hasher.verify(stored_hash if usable else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(matched) and usable

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)
