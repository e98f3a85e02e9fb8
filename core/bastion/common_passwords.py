"""The list of common passwords that new passwords are checked against.

The list is the "passwords" frequency list of the ``zxcvbn`` package (zxcvbn-python,
versions >=4.4.28,<5, MIT licence, copyright Dropbox, Inc. and Ryan Pearl): 30,000
passwords most often found in breaches, most frequent first, already lower case. It
ships inside the package, so nothing is fetched at run time (air-gapped installs work).

It is loaded once, on first use, into a frozenset: importing Bastion stays cheap and
processes that never check a password never load it.
"""

from __future__ import annotations

import unicodedata
from functools import cache


@cache
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(entry.lower() for entry in FREQUENCY_LISTS["passwords"])


def normalize(password: str) -> str:
    """The form passwords are compared in: NFKC, case folded, outer spaces dropped."""
    return unicodedata.normalize("NFKC", password).strip().casefold()


def is_common(password: str) -> bool:
    """Is the password (ignoring case) one of the common passwords?"""
    return normalize(password) in _common()
