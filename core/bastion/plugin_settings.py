"""Settings a plugin keeps for its administrators (thresholds, day counts, ...).

Stored as JSON in the ``site_settings`` table under ``plugin:<plugin>:<key>``, so they
survive a disable/enable and every process reads the current value on its next call.
Each change is audited (``plugin.setting``) with the old and the new value (a secret's
only as changed, a large one by digest) and committed with its audit entry. Values are
plain JSON (numbers, strings, booleans, lists, objects); a Decimal is stored as its
string, so read it back with ``Decimal(value)``.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from bastion import audit
from bastion.data.records.transactions import ATOMIC_KEY, NESTING_KEY
from bastion.db import db
from bastion.models import SiteSetting, User, utcnow
from bastion.people import UserInfo

#: Longest JSON text a setting may hold: settings are knobs, not data.
MAX_VALUE_BYTES = 64 * 1024
#: Longer values are audited by SHA-256 and size only: the trail stays small and a
#: pasted blob (a certificate, a key list) is not copied into it.
AUDIT_VALUE_BYTES = 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
_PREFIX = "plugin"
# site_settings.key is 100 characters: "plugin:" + name + ":" + key must fit.
_MAX_KEY = 100


def _setting_key(plugin: str, key: str) -> str:
    if not isinstance(plugin, str) or not _NAME.match(plugin):
        raise ValueError(f"Plugin name {plugin!r} must be snake_case, such as 'sales'.")
    if not isinstance(key, str) or not _NAME.match(key):
        raise ValueError(f"Setting name {key!r} must be snake_case, such as 'follow_up_days'.")
    full = f"{_PREFIX}:{plugin}:{key}"
    if len(full) > _MAX_KEY:
        raise ValueError(f"Setting name {key!r} is too long for plugin {plugin!r}.")
    return full


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact; float would lose digits
    raise TypeError(f"{type(value).__name__} values cannot be stored in a setting")


def _encode(plugin: str, key: str, value: Any) -> str:
    try:
        text = json.dumps(value, default=_json_default, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Setting {plugin}.{key} must be a JSON value (number, string, boolean, list "
            f"or object): {exc}."
        ) from None
    if len(text.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValueError(
            f"Setting {plugin}.{key} is larger than {MAX_VALUE_BYTES // 1024} KB; "
            "keep settings small and store data in records."
        )
    return text


def get_plugin_setting(plugin: str, key: str, default: Any = None) -> Any:
    """The setting's JSON value, or ``default`` when it was never set."""
    row = db.session.get(SiteSetting, _setting_key(plugin, key))
    if row is None:
        return default
    try:
        return json.loads(row.value)
    except ValueError:
        return default  # a hand-edited row that is not JSON: behave as unset


def set_plugin_setting(
    plugin: str, key: str, value: Any, *, actor: Any, secret: bool = False
) -> bool:
    """Store the setting, audit the change and commit; True when it changed.

    ``actor`` is the acting user (a user, or None for the system). The audit entry holds
    the old and the new value, except for a ``secret`` setting (only that it changed) and
    a value longer than ``AUDIT_VALUE_BYTES`` (its SHA-256 and size). Storing the value
    the setting already has writes and audits nothing. Raises ValueError with a sentence
    for the user when the name or the value is unfit; nothing is written then.

    It commits the session, so it is for a settings page or a command, never for a
    record hook: called while a record write is in progress it raises RuntimeError
    rather than commit that write halfway.
    """
    full = _setting_key(plugin, key)
    text = _encode(plugin, key, value)
    actor_name = _actor_name(actor)
    _refuse_inside_record_write(plugin, key)
    row = db.session.get(SiteSetting, full)
    if row is not None and _canonical(row.value) == text:
        return False  # unchanged: no write, no audit entry
    before = None if row is None else _decode(row.value)
    after = json.loads(text)
    if row is None:
        row = SiteSetting(key=full)
        db.session.add(row)
    row.value, row.changed_at, row.changed_by = text, utcnow(), actor_name
    if secret:
        change: Any = {"changed": True, "secret": True}
    else:
        change = {"before": _audited(before), "after": _audited(after)}
    audit.record(
        "plugin.setting",
        actor=actor_name,
        object_type="setting",
        object_id=full,
        changes={key: change},
    )
    db.session.commit()  # the change and its audit entry together
    return True


def _refuse_inside_record_write(plugin: str, key: str) -> None:
    """Committing here would commit a record write (and its hooks' work) halfway."""
    info = db.session.info
    if info.get(ATOMIC_KEY, 0) or info.get(NESTING_KEY, 0) or db.session().in_nested_transaction():
        raise RuntimeError(
            f"Setting {plugin}.{key} cannot be changed while records are being written "
            "(from a record hook or inside atomic()): set_plugin_setting commits. Change "
            "settings from a settings page or a command."
        )


def _canonical(text: str) -> str | None:
    try:
        return json.dumps(json.loads(text), sort_keys=True, allow_nan=False)
    except ValueError:
        return None


def _audited(value: Any) -> Any:
    """The value as the audit trail keeps it: a large one only by digest and size."""
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True)
    size = len(text.encode("utf-8"))
    if size <= AUDIT_VALUE_BYTES:
        return value
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "bytes": size}


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _actor_name(actor: Any) -> str:
    """None (the system) or a user: a User, or a UserInfo from the people facade."""
    if actor is None:
        return "system"
    if isinstance(actor, User | UserInfo) and type(actor.id) is int:
        return f"user:{actor.id}"
    raise ValueError("actor must be a user (such as current_user), or None for the system.")
