"""Calling plugins' record hooks from the record service.

Every enabled plugin's ``record_changing`` and ``record_changed`` run; a plugin's
exception is caught and recorded, and the write goes on - except the exception of the
plugin that declares the object: it keeps that object's computed values consistent, so
its failure refuses the write (a record error as it is, anything else as
``PluginRefused``), and the transaction rolls back.
"""

from __future__ import annotations

from typing import Any

from bastion.data.catalog import Catalog
from bastion.data.errors import PluginRefused, RecordError
from bastion.data.events import RecordChange


def run_record_hook(hook: str, change: RecordChange, catalog: Catalog) -> list[tuple[str, Any]]:
    from bastion.runtime import platform

    meta = catalog.objects.get(change.object)
    owner = meta.plugin if meta is not None else None
    try:
        return platform().record_hook(hook, owner, change=change)
    except RecordError:
        raise
    except Exception:
        raise PluginRefused(owner or "declaring") from None
