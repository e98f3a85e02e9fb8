"""The hash chain: what an entry's hash covers, and the hash itself.

An entry's hash is an HMAC-SHA256, under the chain key kept outside the database,
over its content, its position and the previous entry's hash, so editing, deleting,
inserting or reordering entries breaks the chain at that point, and whoever can write
the database but not read the secrets folder cannot forge a consistent chain. The
content is hashed as stored (``changes`` is canonical JSON text), so the same bytes
hash the same on SQLite and PostgreSQL and after a backup and restore.

Someone holding the key as well could rewrite the chain from some point on; the signed
checkpoints outside the database (``anchors``) are what catch that.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

#: The previous hash of the first entry ever written.
GENESIS = "0" * 64

#: The columns an entry's hash covers, in this order (then the previous hash).
HASHED_COLUMNS = (
    "seq",
    "occurred_at",
    "actor",
    "actor_user_id",
    "token_id",
    "client_addr",
    "request_id",
    "action",
    "outcome",
    "object_type",
    "object_id",
    "changes",
)
#: Every column of an entry, as exports and archives write them.
COLUMNS = (*HASHED_COLUMNS, "prev_hash", "hash")


def entry_hash(entry: Mapping[str, Any], prev_hash: str, key: bytes) -> str:
    values = [entry[name] for name in HASHED_COLUMNS]
    values.append(prev_hash)
    payload = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hmac.digest(key, payload.encode("utf-8"), "sha256").hex()


def canonical_changes(changes: Mapping[str, Any] | None) -> str | None:
    """The JSON text stored (and hashed) for an entry's changes."""
    if not changes:
        return None
    return json.dumps(
        changes, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
