"""Helpers for the encryption tests: an installation with encrypted fields on contacts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from bastion.data import definitions
from bastion.db import db
from bastion.models import User
from tests.conftest import ADMIN_EMAIL
from tests.core.data.conftest import service_as

PIN = {"name": "pin", "label": "PIN", "type": "text", "encrypted": True}
BADGE = {"name": "badge", "label": "Badge", "type": "integer", "encrypted": True}


@pytest.fixture
def enc_app(app):
    """The `app` installation with two encrypted custom fields on contacts."""
    with app.test_request_context():
        definitions.add_field("contacts", PIN)
        definitions.add_field("contacts", BADGE)
    return app


def create_contacts(app, count: int, prefix: str = "C") -> dict[int, tuple[str, int]]:
    """Contacts with a PIN and a badge each; returns id -> (pin, badge)."""
    made = {}
    with service_as(app, None) as records:
        for n in range(count):
            record = records.create(
                "contacts", {"last_name": f"{prefix}{n}", "pin": f"{prefix}-pin-{n}", "badge": n}
            )
            made[record.id] = (f"{prefix}-pin-{n}", n)
    return made


def read_contact(app, record_id: int) -> dict[str, Any]:
    with service_as(app, None) as records:
        record = records.get("contacts", record_id)
        return {"pin": record.get("pin"), "badge": record.get("badge"), "version": record.version}


def raw(app, column: str, record_id: int) -> str | None:
    with app.app_context():
        return db.session.execute(
            text(f"SELECT {column} FROM obj_contacts WHERE id = :id"),  # noqa: S608
            {"id": record_id},
        ).scalar()


def set_raw(app, column: str, record_id: int, value: str | None) -> None:
    with app.app_context():
        db.session.execute(
            text(f"UPDATE obj_contacts SET {column} = :v WHERE id = :id"),  # noqa: S608
            {"v": value, "id": record_id},
        )
        db.session.commit()


def admin_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == ADMIN_EMAIL))
