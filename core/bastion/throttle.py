"""Throttling of sign-in attempts per account and per client address, without enumeration.

Policy (the numbers operators and auditors ask for):

* **Per account** (key ``acct:`` + SHA-256 of the lower-cased email address, so an email
  nobody has behaves exactly like a real account): the first 4 failed attempts are free;
  the 5th and later each block the account's next attempt for 2^(n-5) seconds (1, 2, 4,
  8, 16, 32 s), capped at 60 s. The fastest possible attacker therefore reaches the
  password check 69 times in the first hour and 60 times an hour after that. As a hard
  backstop (:data:`HOURLY_CAP`), once 100 failures have been counted without a quiet hour
  in between (about 90 minutes of non-stop guessing), only one attempt per hour is let
  through until the account has had an hour without attempts: **at most 100 failed
  attempts per account per hour ever reach the password check**, whatever the timing
  and however many requests race (measured by tests/core/identity/test_throttle.py).
* **Per client address** (key ``addr:`` + the address Flask reports, already corrected
  for trusted proxies): 20 failures are free (an office behind one NAT address shares
  it), then 1, 2, 4, ... seconds, capped at 60 s. A successful sign-in takes back its own
  attempt, so colleagues signing in correctly never slow each other down.
* **Per user, for MFA codes** (key ``mfa:<user id>``): 5 wrong codes are free, then 1, 2,
  4, ... seconds, capped at 60 s, with the same hourly backstop. With two codes valid at
  a time, an attacker who knows the password has a chance of about 1 in 7,000 in the
  first hour and 1 in 500,000 per hour once the backstop engages. Each pending sign-in
  also allows only 5 codes before the password is needed again (bastion.web.auth).
* Counters decay: a key with no attempt for an hour (:data:`DECAY_SECONDS`) starts from
  zero again. Rows untouched for a day are pruned now and then.

How the limit holds under concurrency: before the password is checked, :func:`reserve`
inserts the key's row if it is missing and then runs one conditional UPDATE that counts
the attempt as a failure (pessimistically) only if the key is not blocked right now. The
database serializes writers on the row, so of many racing requests exactly as many get
through as the policy allows; a request whose UPDATE matched no row is throttled and its
password is never checked. Each of these statements commits on a connection of its own
at once, whatever the request does afterwards.

Throttled, wrong, unknown and disabled all look the same to the client (bastion.web.auth).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from bastion.db import db
from bastion.models import AuthThrottle

#: A key with no attempt for this long starts counting from zero again.
DECAY_SECONDS = 3600
#: The backstop: at most this many failures per key per hour reach the check.
HOURLY_CAP = 100
#: Rows untouched for this long are deleted (about one failure in PRUNE_ONE_IN prunes).
PRUNE_AFTER_SECONDS = 86400
PRUNE_ONE_IN = 50


@dataclass(frozen=True)
class Policy:
    """How many failures are free, and how the delay grows after them."""

    free_failures: int
    max_delay: int
    #: None: no hourly backstop (addresses are shared; they only ever wait max_delay).
    hourly_cap: int | None = None

    def delay(self, failures: int) -> int:
        """Seconds the key stays blocked after its ``failures``-th counted failure."""
        if self.hourly_cap is not None and failures >= self.hourly_cap:
            return DECAY_SECONDS
        if failures <= self.free_failures:
            return 0
        return min(2 ** (failures - self.free_failures - 1), self.max_delay)


#: 4 free, then 1, 2, 4, 8, 16, 32, 60, 60, ... seconds; one per hour from the 100th.
ACCOUNT_POLICY = Policy(free_failures=4, max_delay=60, hourly_cap=HOURLY_CAP)
#: 20 free, then 1, 2, 4, 8, 16, 32, 60, 60, ... seconds.
ADDRESS_POLICY = Policy(free_failures=20, max_delay=60)
#: 5 free, then 1, 2, 4, ... 60 seconds; one per hour from the 100th.
MFA_POLICY = Policy(free_failures=5, max_delay=60, hourly_cap=HOURLY_CAP)


def now() -> int:
    """The clock of the throttle (Unix seconds); tests move it by patching this function."""
    return int(time.time())


def account_key(email: str) -> str:
    """The same key for "Ann@Example.com " and "ann@example.com", known or not."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8", "replace")).hexdigest()
    return f"acct:{digest}"


def address_key(address: str | None) -> str:
    return f"addr:{(address or 'unknown')[:90]}"


def mfa_key(user_id: int) -> str:
    return f"mfa:{user_id}"


def _ensure_row(connection: Connection, key: str, at: int) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: racing requests create the row once."""
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    connection.execute(
        dialect.insert(AuthThrottle)
        .values(key=key, failures=0, last_attempt=at, blocked_until=0)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def _delay_sql(failures: ColumnElement[int], policy: Policy) -> ColumnElement[int]:
    """policy.delay() as a SQL CASE over the (new) failure count; no math functions needed."""
    whens: list[tuple[ColumnElement[bool], int]] = []
    if policy.hourly_cap is not None:
        whens.append((failures >= policy.hourly_cap, DECAY_SECONDS))
    whens.append((failures <= policy.free_failures, 0))
    n = policy.free_failures + 1
    while policy.delay(n) < policy.max_delay:
        whens.append((failures == n, policy.delay(n)))
        n += 1
    return case(*whens, else_=policy.max_delay)


def _next_failures(at: int) -> ColumnElement[int]:
    """The failure count after this attempt: restart from 1 after a quiet hour."""
    return case(
        (literal(at) - AuthThrottle.last_attempt > DECAY_SECONDS, 1),
        else_=AuthThrottle.failures + 1,
    )


def _maybe_prune(connection: Connection, at: int) -> None:
    if secrets.randbelow(PRUNE_ONE_IN) == 0:
        connection.execute(
            delete(AuthThrottle).where(
                AuthThrottle.last_attempt < at - PRUNE_AFTER_SECONDS,
                AuthThrottle.blocked_until < at,
            )
        )


def reserve(key: str, policy: Policy) -> bool:
    """Count an attempt as a failure before checking it; False: throttled, do not check.

    Call :func:`succeeded` (account) or :func:`undo` (address) when the attempt turns
    out right.
    """
    at = now()
    failures = _next_failures(at)
    with db.engine.begin() as connection:
        _ensure_row(connection, key, at)
        result = connection.execute(
            update(AuthThrottle)
            .where(AuthThrottle.key == key, AuthThrottle.blocked_until <= at)
            .values(
                failures=failures,
                last_attempt=at,
                blocked_until=at + _delay_sql(failures, policy),
            )
        )
        _maybe_prune(connection, at)
    return result.rowcount == 1


def is_blocked(key: str) -> bool:
    """Is the key waiting out a delay right now? Only to choose an answer: a check made
    before the attempt is counted is not atomic, so limits use :func:`reserve`."""
    with db.engine.connect() as connection:
        blocked_until = connection.scalar(
            select(AuthThrottle.blocked_until).where(AuthThrottle.key == key)
        )
    return blocked_until is not None and blocked_until > now()


def just_locked(key: str, policy: Policy) -> bool:
    """Did the failure just counted lock the key out (the hourly backstop engaged)?

    True exactly once per lockout: for the failure that reached the cap, not for the
    single hourly attempts that follow it. Only to choose what to audit.
    """
    if policy.hourly_cap is None:
        return False
    with db.engine.connect() as connection:
        failures = connection.scalar(select(AuthThrottle.failures).where(AuthThrottle.key == key))
    return failures == policy.hourly_cap


def succeeded(key: str) -> None:
    """The right credentials: the key's count starts from zero."""
    with db.engine.begin() as connection:
        connection.execute(delete(AuthThrottle).where(AuthThrottle.key == key))


def undo(key: str) -> None:
    """Take back one reserved attempt that succeeded (shared keys: client addresses)."""
    at = now()
    with db.engine.begin() as connection:
        connection.execute(
            update(AuthThrottle)
            .where(AuthThrottle.key == key)
            .values(
                failures=case((AuthThrottle.failures > 0, AuthThrottle.failures - 1), else_=0),
                blocked_until=at,
            )
        )


# Attempts of one sign-in's code step ------------------------------------------------


def open_attempts(key: str) -> None:
    """Start counting the attempts of one pending sign-in (see :func:`take_attempt`)."""
    at = now()
    with db.engine.begin() as connection:
        _ensure_row(connection, key, at)


def take_attempt(key: str, limit: int) -> bool:
    """Atomically use one of ``limit`` attempts; False when they are used up or unknown.

    Held on the server, so a client replaying an older copy of its session cookie gets
    no extra attempts.
    """
    with db.engine.begin() as connection:
        result = connection.execute(
            update(AuthThrottle)
            .where(AuthThrottle.key == key, AuthThrottle.failures < limit)
            .values(failures=AuthThrottle.failures + 1, last_attempt=now())
        )
    return result.rowcount == 1


def close_attempts(key: str, limit: int) -> None:
    """No attempt is left for this key (the sign-in it belonged to is complete)."""
    with db.engine.begin() as connection:
        connection.execute(
            update(AuthThrottle).where(AuthThrottle.key == key).values(failures=limit)
        )
