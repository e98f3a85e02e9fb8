"""Argon2id password hashing with the operator's cost settings."""

from __future__ import annotations

from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.config import Settings


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; the message says how."""


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

    def check_policy(self, password: str) -> None:
        if len(password) < self.min_length:
            raise PasswordPolicyError(
                f"The password must be at least {self.min_length} characters long."
            )
        if len(password) > 1024:
            raise PasswordPolicyError("The password must be at most 1024 characters long.")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)
