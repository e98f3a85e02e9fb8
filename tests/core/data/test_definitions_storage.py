"""Definitions and real tables stay in step; a failed change leaves both as they were."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from bastion.data import definitions, storage
from bastion.data.catalog import stored_revision
from bastion.data.definitions import DefinitionError, sync_declared
from bastion.data.errors import ValidationFailed
from bastion.db import db
from bastion.runtime import platform
from tests.core.data.conftest import ADMIN, service_as


def columns(table: str) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns(table)}


def test_every_field_type_gets_real_columns_and_indexes(app):
    with app.app_context():
        assert {
            "id",
            "owner",
            "created_at",
            "updated_by",
            "version",
            "name",
            "parent",
            "annual_revenue",
            "annual_revenue__currency",
        } <= columns("obj_accounts")
        assert {"related_to", "related_to__object"} <= columns("obj_activities")
        assert "full_name" not in columns("obj_contacts")  # formulas are computed
        indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("obj_contacts")}
        assert {"ix_contacts_owner", "ix_contacts_account", "ix_contacts_email"} <= indexes


def test_syncing_unchanged_declarations_writes_nothing(app):
    with app.app_context():
        before = stored_revision()
        assert sync_declared(platform(app).objects) == []
        assert stored_revision() == before


def test_a_failed_change_leaves_schema_and_definitions_unchanged(app, monkeypatch):
    real = storage.add_field_storage

    def add_then_fail(connection, meta, item, tables):
        real(connection, meta, item, tables)  # the column exists inside the transaction...
        raise RuntimeError("disk full")  # ...when the change fails

    monkeypatch.setattr(storage, "add_field_storage", add_then_fail)
    with app.test_request_context():
        before = stored_revision()
        with pytest.raises(DefinitionError, match="nothing was changed"):
            definitions.add_field("accounts", {"name": "tier", "label": "Tier", "type": "text"})
        db.session.remove()
        assert stored_revision() == before
        assert "tier" not in columns("obj_accounts")
    with service_as(app, ADMIN) as records:
        assert "tier" not in records.object("accounts").all_fields


def test_unique_over_duplicates_fails_cleanly(app):
    with service_as(app, ADMIN) as records:
        definitions.add_field("accounts", {"name": "code", "label": "Code", "type": "text"})
    with service_as(app, ADMIN) as records:
        records.create("accounts", {"name": "A", "code": "X1"})
        records.create("accounts", {"name": "B", "code": "X1"})
        with pytest.raises(DefinitionError, match="same value twice"):
            definitions.update_field("accounts", "code", {"unique": True})
        indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("obj_accounts")}
        assert "uq_accounts_code" not in indexes
    with service_as(app, ADMIN) as records:
        assert records.object("accounts").field("code").unique is False


def test_removed_fields_keep_their_data_until_purged(app):
    with service_as(app, ADMIN) as records:
        definitions.add_field("accounts", {"name": "tier", "label": "Tier", "type": "text"})
    with service_as(app, ADMIN) as records:
        account = records.create("accounts", {"name": "A", "tier": "gold"})
        definitions.remove_field("accounts", "tier")
    with service_as(app, ADMIN) as records:
        assert "tier" not in records.get("accounts", account.id).values
        with pytest.raises(ValidationFailed):
            records.update("accounts", account.id, {"tier": "silver"}, version=1)
        definitions.update_object("accounts", {"label": "Customer", "label_plural": "Customers"})
        definitions.restore_field("accounts", "tier")
    with service_as(app, ADMIN) as records:
        assert records.get("accounts", account.id)["tier"] == "gold"  # relabel kept data too
        assert records.object("accounts").label == "Customer"
        definitions.remove_field("accounts", "tier")
        definitions.purge_field("accounts", "tier")
        assert "tier" not in columns("obj_accounts")
        with pytest.raises(DefinitionError, match="already has a field"):
            definitions.add_field("accounts", {"name": "name", "label": "N", "type": "text"})


def test_a_plugin_cannot_change_a_stored_type(app, caplog):
    from dataclasses import replace

    objects = dict(platform(app).objects)
    owner, accounts = objects["accounts"]
    changed = tuple(replace(f, type="integer") if f.name == "city" else f for f in accounts.fields)
    objects["accounts"] = (owner, replace(accounts, fields=changed))
    with app.app_context():
        sync_declared(objects)
    with service_as(app, ADMIN) as records:
        assert records.object("accounts").field("city").type == "text"
    assert "changed the type of accounts.city" in caplog.text
