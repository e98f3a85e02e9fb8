"""Enabling and disabling plugins: the database row, the dependency rules, the audit entry."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from bastion import audit
from bastion.db import db
from bastion.models import PluginState, utcnow
from bastion.plugins.registry import PluginRegistry


class PluginStateError(ValueError):
    """A change was refused; the message says why and what to do instead."""


def stored_enabled() -> set[str]:
    return set(db.session.scalars(select(PluginState.name).where(PluginState.enabled)))


def stored_enabled_or_none() -> set[str]:
    """Like stored_enabled, but an empty set where there is no schema yet or no database."""
    try:
        return stored_enabled()
    except SQLAlchemyError:
        db.session.rollback()
        return set()


def _check_names(registry: PluginRegistry, names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    if not names:
        raise PluginStateError("Name at least one plugin.")
    unknown = [n for n in names if n not in registry.plugins]
    if unknown:
        installed = ", ".join(sorted(registry.plugins)) or "none"
        raise PluginStateError(
            f"No plugin named {', '.join(unknown)} is installed. Installed plugins: {installed}."
        )
    return names


def _serialized(change: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """Serialize changes so two admins cannot break a dependency rule between them.

    PostgreSQL holds a table lock until the change commits (or is refused and rolled
    back). SQLite serializes writers itself, and a stored state that breaks a rule anyway
    leaves the dependent plugin waiting (PluginRegistry.effective_enabled), never running
    without its dependency.
    """

    @functools.wraps(change)
    def locked(*args: Any, **kwargs: Any) -> list[str]:
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(text("LOCK TABLE plugin_state IN SHARE ROW EXCLUSIVE MODE"))
        try:
            return change(*args, **kwargs)
        except PluginStateError:
            db.session.rollback()
            raise

    return locked


@_serialized
def enable(registry: PluginRegistry, names: Iterable[str], actor: str) -> list[str]:
    """Enable plugins (together); refuse broken ones and ones whose dependencies are off."""
    names = _check_names(registry, names)
    current = stored_enabled()
    target = current | set(names)
    for name in names:
        plugin = registry.plugins[name]
        if not plugin.usable:
            raise PluginStateError(f"Cannot enable {name}: {plugin.error}")
        for dep in plugin.requires:
            if dep not in registry.plugins:
                raise PluginStateError(
                    f"Cannot enable {name}: it needs the plugin {dep}, which is not installed."
                )
            if not registry.plugins[dep].usable:
                raise PluginStateError(
                    f"Cannot enable {name}: it needs {dep}, which cannot run "
                    f"({registry.plugins[dep].error})"
                )
            if dep not in target:
                raise PluginStateError(
                    f"Cannot enable {name}: it needs {dep}, which is disabled. Enable {dep} "
                    f"first, or both together (bastion plugins enable {dep} {name})."
                )
    changed = [n for n in names if n not in current]
    _write(changed, enabled=True, actor=actor)
    return changed


@_serialized
def disable(registry: PluginRegistry, names: Iterable[str], actor: str) -> list[str]:
    """Disable plugins (together); refuse while an enabled plugin outside the set needs one."""
    names = _check_names(registry, names)
    current = stored_enabled()
    remaining = current - set(names)
    for other in sorted(remaining):
        plugin = registry.plugins.get(other)
        if plugin is None:
            continue
        needed = [n for n in names if n in plugin.requires]
        if needed:
            raise PluginStateError(
                f"Cannot disable {needed[0]}: the enabled plugin {other} needs it. Disable "
                f"{other} first, or both together (bastion plugins disable {other} {needed[0]})."
            )
    changed = [n for n in names if n in current]
    _write(changed, enabled=False, actor=actor)
    return changed


def _write(names: list[str], *, enabled: bool, actor: str) -> None:
    for name in names:
        row = db.session.get(PluginState, name) or PluginState(name=name)
        row.enabled = enabled
        row.changed_at = utcnow()
        row.changed_by = actor
        db.session.add(row)
    for name in names:
        audit.record(
            "plugin.enable" if enabled else "plugin.disable",
            actor=actor,
            object_type="plugin",
            object_id=name,
        )
    db.session.commit()  # the states and their audit entries together


def sync_new_plugins(registry: PluginRegistry) -> list[str]:
    """Give every newly installed plugin its row: enabled if it asks to be and can be."""
    known = set(db.session.scalars(select(PluginState.name)))
    enabled = stored_enabled()
    fresh = [n for n, p in sorted(registry.plugins.items()) if n not in known and p.manifest]
    asking = {n for n in fresh if registry.plugins[n].manifest.enabled_by_default}
    # Only what can run, its dependencies on (or arriving together).
    wanted = set(registry.effective_enabled(enabled | asking) & asking)
    for name in fresh:
        db.session.add(PluginState(name=name, enabled=name in wanted, changed_by="system"))
    for name in sorted(wanted):
        audit.record("plugin.enable", actor="system", object_type="plugin", object_id=name)
    db.session.commit()
    return sorted(wanted)
