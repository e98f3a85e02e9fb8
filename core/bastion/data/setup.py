"""Bringing the data model up: tables for declared objects, record listeners."""

from __future__ import annotations

import logging

from flask import Flask

from bastion import audit
from bastion.data.definitions import DeclarationError, DefinitionError, sync_declared
from bastion.db import db

log = logging.getLogger(__name__)
#: Lines of a sync named in its audit entry (the count says how many there were).
MAX_AUDITED_CHANGES = 500


class DeclarationsHeld(DefinitionError):
    """Some plugins' declarations could not be stored; the others were synced."""

    def __init__(self, errors: list[DeclarationError], changes: list[str]):
        super().__init__(" ".join(str(error) for error in errors))
        self.errors = errors
        self.changes = changes


def sync_definitions(app: Flask) -> list[str]:
    """Store what installed plugins declare and create their tables (app context).

    A plugin whose declarations cannot be stored is held back (its stored definitions
    stay as they are), its failure is shown on the plugins page, and the others are
    synced; then DeclarationsHeld says which were held back.
    """
    from bastion.runtime import platform

    declared = platform(app).objects
    held: dict[str, DeclarationError] = {}
    while True:  # each round holds back one more plugin, so this ends
        try:
            changes = sync_declared(declared, hold=frozenset(held))
            break
        except DeclarationError as exc:
            db.session.rollback()
            if exc.plugin in held:
                raise
            held[exc.plugin] = exc
    _log_changes(changes)
    _audit_changes(changes)
    if held:
        registry = platform(app).registry
        for plugin, error in held.items():
            registry.record_failure(plugin, "definitions", str(error), error)
        raise DeclarationsHeld(list(held.values()), changes)
    return changes


def _log_changes(changes: list[str]) -> None:
    if changes:
        objects = [line for line in changes if line.startswith("object ")]
        log.info(
            "Data model: %d definition changes (%s).", len(changes), "; ".join(objects) or "fields"
        )


def _audit_changes(changes: list[str]) -> None:
    """Definition changes that plugins' declarations made are schema changes too."""
    if changes:
        audit.record(
            "schema.sync",
            actor="system",
            changes={"count": len(changes), "changes": changes[:MAX_AUDITED_CHANGES]},
        )


def sync_at_start(app: Flask) -> None:
    """At start-up, pick up newly installed plugins' objects when the schema is current.

    Before `bastion init` or with an outdated schema there is nothing to do: those
    commands sync themselves. Any failure is logged and start-up continues; pages of
    objects whose tables are missing then answer with an error instead of the whole
    site being down.
    """
    from bastion import schema

    with app.app_context():
        try:
            if schema.is_current():
                sync_definitions(app)
        except DeclarationsHeld:
            pass  # the others are synced; the held-back plugins' failures are recorded
        except Exception:
            db.session.rollback()
            log.exception("Could not bring object tables in step with the definitions.")
