#!/usr/bin/env python3
"""Measure the cost of the credential checks at the production settings.

Argon2id hash and verify with Bastion's default parameters (or the BASTION_ARGON2_*
variables), the dummy verify an unknown email costs, the common-password look-up and a
TOTP check. Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_auth.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pyotp

from bastion.common_passwords import is_common
from bastion.config import load_settings
from bastion.passwords import Passwords


def timed(label: str, func: Callable[[], object], rounds: int) -> None:
    func()  # warm-up (lazy loading, first allocation)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        func()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    print(
        f"{label:<42} median {statistics.median(samples):8.2f} ms   "
        f"p90 {samples[int(len(samples) * 0.9) - 1]:8.2f} ms   (n={rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    settings = load_settings("/nonexistent-bastion-bench")
    passwords = Passwords(settings)
    print(
        f"Argon2id: time_cost={settings.argon2_time_cost} "
        f"memory={settings.argon2_memory_kib} KiB parallelism={settings.argon2_parallelism}"
    )
    password = "a benchmark passphrase of decent length"
    stored = passwords.hash(password)
    timed("argon2 hash (set or change a password)", lambda: passwords.hash(password), args.rounds)
    timed("argon2 verify (right password)", lambda: passwords.verify(stored, password), args.rounds)
    timed("argon2 verify (wrong password)", lambda: passwords.verify(stored, "nope"), args.rounds)
    timed("dummy verify (unknown email)", lambda: passwords.verify(None, password), args.rounds)
    timed("common-password look-up", lambda: is_common("correcthorse123"), args.rounds * 100)
    totp = pyotp.TOTP(pyotp.random_base32())
    timed("TOTP code computation", lambda: totp.at(time.time()), args.rounds * 100)


if __name__ == "__main__":
    main()
