"""Bringing the data model up: tables for declared objects, record listeners."""

from __future__ import annotations

import logging

from flask import Flask

from bastion.data.definitions import sync_declared
from bastion.db import db

log = logging.getLogger(__name__)


def sync_definitions(app: Flask) -> list[str]:
    """Store what installed plugins declare and create their tables (app context)."""
    from bastion.runtime import platform

    changes = sync_declared(platform(app).objects)
    if changes:
        objects = [line for line in changes if line.startswith("object ")]
        log.info(
            "Data model: %d definition changes (%s).", len(changes), "; ".join(objects) or "fields"
        )
    return changes


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
        except Exception:
            db.session.rollback()
            log.exception("Could not bring object tables in step with the definitions.")
