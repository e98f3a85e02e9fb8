"""Key management for encryption at rest.

- ``master``: the master key (plugin hook, environment, or key file) that wraps data keys.
- ``keyring``: versioned data keys and the blind-index key, wrapped, in the database.
- ``cipher``: the one AES-256-GCM service for field values and credential material.
- ``reencrypt``: the online batch engine of rotations and field (de)encryption.
"""

from __future__ import annotations


def purpose_key(purpose: str) -> bytes:
    """The current key of a purpose, e.g. ``purpose_key("blind_index")`` for blind indexes."""
    from bastion.keys.keyring import purpose_key as current

    return current(purpose)
