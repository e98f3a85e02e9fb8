"""Definition changes that must not break stored data: plugin upgrades and name clashes.

A plugin's new version may not change how stored values are read (type, scale, ...),
may not declare what the admin pages would refuse, and turning an index on or off
reconciles the real indexes. A name whose tables or indexes would collide with another
object's or field's is refused wherever it is defined.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bastion.data import definitions
from bastion.data.catalog import current_catalog, forget_catalog, stored_revision
from bastion.data.definitions import DefinitionError, sync_declared
from bastion.data.errors import ValidationFailed
from bastion.data.setup import sync_at_start
from bastion.db import db
from bastion.plugins.contributions import FieldDefinition as F
from bastion.runtime import platform
from tests.core.data.conftest import ADMIN, bearer, service_as

PROBLEM = "application/problem+json"


def redeclared(
    app, object_name: str, changes: dict[str, dict[str, Any]], added: tuple[F, ...] = ()
) -> dict[str, Any]:
    """The installed declarations, as if the owner's next version changed ``object_name``."""
    objects = dict(platform(app).objects)
    owner, definition = objects[object_name]
    fields = tuple(replace(f, **changes.get(f.name, {})) for f in definition.fields)
    objects[object_name] = (owner, replace(definition, fields=fields + added))
    return objects


def owner_of(app, object_name: str) -> str:
    return platform(app).objects[object_name][0]


def field(app, object_name: str, name: str):
    with app.test_request_context():
        forget_catalog()
        return current_catalog().get(object_name).all_fields.get(name)


def indexes(app, table: str) -> dict[str, dict[str, Any]]:
    with app.app_context():
        return {ix["name"]: ix for ix in inspect(db.engine).get_indexes(table)}


def sync(app, objects) -> list[str]:
    with app.app_context():
        return sync_declared(objects)


def revision(app) -> int:
    with app.app_context():
        return stored_revision()


# --------------------------------------------------------------------------- storage settings


def test_a_plugin_cannot_change_how_stored_values_are_stored_or_read(app, caplog):
    with service_as(app, ADMIN) as records:
        money = {"amount": "1234.56", "currency": "EUR"}
        account = records.create(
            "accounts", {"name": "Acme", "annual_revenue": money, "street": "Main 1"}
        )
    objects = redeclared(
        app,
        "accounts",
        {
            "annual_revenue": {"scale": 4, "currency": "USD", "help_text": "Per year"},
            "street": {"encrypted": True, "label": "Street address"},
        },
    )
    _, contacts = objects["contacts"]
    objects["contacts"] = (
        objects["contacts"][0],
        replace(
            contacts,
            fields=tuple(
                replace(f, target="contacts") if f.name == "account" else f for f in contacts.fields
            ),
        ),
    )
    assert sync(app, objects) == [
        "field accounts.annual_revenue updated",
        "field accounts.street updated",
    ]
    revenue = field(app, "accounts", "annual_revenue")
    assert (revenue.scale, revenue.currency, revenue.help_text) == (2, "EUR", "Per year")
    street = field(app, "accounts", "street")
    assert (street.encrypted, street.label) == (False, "Street address")
    assert field(app, "contacts", "account").target == "accounts"
    plugin = owner_of(app, "accounts")
    for setting, subject in [
        ("scale", "accounts.annual_revenue"),
        ("currency", "accounts.annual_revenue"),
        ("encrypted", "accounts.street"),
        ("target", "contacts.account"),
    ]:
        assert f"Plugin {plugin} changed the {setting} of {subject}" in caplog.text
    with service_as(app, ADMIN) as records:
        stored = records.get("accounts", account.id)
        assert str(stored["annual_revenue"]) == "1234.56 EUR"
        assert stored["street"] == "Main 1"
    # The kept settings are no change to write again at the next start.
    before = revision(app)
    assert sync(app, objects) == []
    assert revision(app) == before


def test_a_kept_type_keeps_the_settings_it_needs(app, caplog):
    """A picklist the new code turns into text keeps its options, and takes the label."""
    objects = redeclared(
        app, "accounts", {"industry": {"type": "text", "options": (), "label": "Sector"}}
    )
    assert sync(app, objects) == ["field accounts.industry updated"]
    industry = field(app, "accounts", "industry")
    assert (industry.type, industry.label) == ("picklist", "Sector")
    assert "Banking" in industry.options
    assert "changed the type of accounts.industry" in caplog.text
    with service_as(app, ADMIN) as records:
        assert records.create("accounts", {"name": "B", "industry": "Banking"})["industry"]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (F("planet", "lookup", "Planet", target="planets"), "no object 'planets'"),
        (F("secret", "text", "Secret", encrypted=True, indexed=True), "cannot be unique"),
        (F("score", "integer", "Score", default="lots"), "Default value"),
        (F("loop", "formula", "Loop", formula="loop + 1", formula_type="integer"), "own value"),
    ],
)
def test_a_plugin_declaring_an_invalid_field_syncs_nothing(app, bad, problem):
    objects = redeclared(
        app, "accounts", {"city": {"label": "Town"}}, (F("tier", "text", "Tier"), bad)
    )
    before = revision(app)
    with app.app_context(), pytest.raises(DefinitionError) as refused:
        sync_declared(objects)
    message = str(refused.value)
    assert f"plugin {owner_of(app, 'accounts')}" in message
    assert f"accounts.{bad.name}" in message and problem in message
    assert revision(app) == before
    assert field(app, "accounts", "tier") is None  # the valid changes are not applied either
    assert field(app, "accounts", "city").label == "City"
    with app.app_context():
        assert "tier" not in {c["name"] for c in inspect(db.engine).get_columns("obj_accounts")}


def test_start_up_reports_a_plugin_declaring_an_invalid_field(app, caplog):
    declared = platform(app).objects
    original = declared["accounts"]
    bad = F("planet", "lookup", "Planet", target="planets")
    declared["accounts"] = redeclared(app, "accounts", {}, (bad,))["accounts"]
    try:
        sync_at_start(app)  # logs, and the site starts with the stored definitions
    finally:
        declared["accounts"] = original
    assert f"plugin {owner_of(app, 'accounts')} declares accounts.planet" in caplog.text
    assert field(app, "accounts", "planet") is None
    # The plugins page lists it under the plugin, where an administrator looks.
    failures = platform(app).registry.failures_by_plugin()[owner_of(app, "accounts")]
    assert any("accounts.planet" in failure.message for failure in failures)


def test_upgrade_reports_an_invalid_declaration_without_a_traceback(app, cli, monkeypatch):
    from bastion import core_hooks

    # The command builds its own application, which asks the core for its objects.
    broken = replace(
        core_hooks.BASE_OBJECTS[0],
        fields=(
            *core_hooks.BASE_OBJECTS[0].fields,
            F("planet", "lookup", "Planet", target="planets"),
        ),
    )
    monkeypatch.setattr(core_hooks, "BASE_OBJECTS", (broken, *core_hooks.BASE_OBJECTS[1:]))
    result = cli("upgrade")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # a message, not a traceback
    assert last.startswith("Error: The database schema is upgraded"), result.output
    assert "accounts.planet" in last and "run `bastion upgrade` again" in last


def test_a_plugin_raising_max_length_widens_the_column(app):
    assert sync(app, redeclared(app, "accounts", {"postal_code": {"max_length": 400}}))
    with service_as(app, ADMIN) as records:
        created = records.create("accounts", {"name": "Long", "postal_code": "9" * 300})
        assert records.get("accounts", created.id)["postal_code"] == "9" * 300


# --------------------------------------------------------------------------- indexes


def test_a_plugin_turning_unique_and_indexed_on_and_off_reconciles_indexes(app):
    assert {"ix_accounts_city", "ox_accounts_city"} <= set(indexes(app, "obj_accounts"))
    sync(app, redeclared(app, "accounts", {"city": {"indexed": False}, "street": {"unique": True}}))
    found = indexes(app, "obj_accounts")
    assert not {"ix_accounts_city", "ox_accounts_city"} & set(found)
    assert found["uq_accounts_street"]["unique"]

    sync(app, redeclared(app, "accounts", {"city": {"unique": True}}))
    found = indexes(app, "obj_accounts")
    assert found["uq_accounts_city"]["unique"] and "ix_accounts_city" not in found
    assert "uq_accounts_street" not in found
    with service_as(app, ADMIN) as records:
        records.create("accounts", {"name": "A", "city": "Oslo"})
        with pytest.raises(ValidationFailed, match="already used"):
            records.create("accounts", {"name": "B", "city": "Oslo"})

    sync(app, platform(app).objects)  # back to the installed version
    found = indexes(app, "obj_accounts")
    assert {"ix_accounts_city", "ox_accounts_city"} <= set(found)
    assert "uq_accounts_city" not in found
    assert sync(app, platform(app).objects) == []  # nothing stale is left to reconcile


def test_a_plugin_making_a_field_unique_over_duplicates_changes_nothing(app):
    with service_as(app, ADMIN) as records:
        records.create("accounts", {"name": "A", "city": "Oslo"})
        records.create("accounts", {"name": "B", "city": "Oslo"})
    objects = redeclared(app, "accounts", {"city": {"unique": True}, "street": {"label": "Road"}})
    before = revision(app)
    with app.app_context(), pytest.raises(DefinitionError, match="same value twice") as refused:
        sync_declared(objects)
    assert "accounts.city" in str(refused.value)
    assert f"plugin {owner_of(app, 'accounts')}" in str(refused.value)
    assert revision(app) == before
    assert field(app, "accounts", "city").unique is False
    assert field(app, "accounts", "street").label == "Street"
    found = indexes(app, "obj_accounts")
    assert "ix_accounts_city" in found and "uq_accounts_city" not in found


def test_a_new_name_field_takes_the_name_sorting_indexes(app):
    with app.test_request_context():
        definitions.create_object(
            {
                "name": "projects",
                "label": "Project",
                "fields": [
                    {"name": "project_name", "label": "Name", "type": "text"},
                    {"name": "code", "label": "Code", "type": "text"},
                ],
            }
        )
    assert indexes(app, "obj_projects")["nx_projects"]["column_names"] == ["project_name", "id"]
    with app.test_request_context():
        definitions.update_object("projects", {"name_field": "code"})
    found = indexes(app, "obj_projects")
    assert found["nx_projects"]["column_names"] == ["code", "id"]
    assert found["onx_projects"]["column_names"] == ["owner", "code", "id"]


# --------------------------------------------------------------------------- name clashes


def _post(app, path: str, body: dict[str, Any]):
    client = app.test_client()
    return client.post(path, headers=bearer(app, ADMIN), json=body)


def _refused(response, *words: str) -> dict[str, Any]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    for word in (*words, "choose another name"):
        assert word in body["detail"], body
    return body


def test_objects_and_fields_whose_storage_names_collide_are_refused(app):
    orders = {
        "name": "orders",
        "label": "Order",
        "fields": [
            {"name": "line_total", "label": "Line total", "type": "decimal", "indexed": True},
            {"name": "line_items", "label": "Items", "type": "many_to_many", "target": "accounts"},
        ],
    }
    assert _post(app, "/api/v1/meta", orders).status_code == 201
    before = revision(app)
    line = {"name": "orders_line", "label": "Order line"}
    total = {"name": "total", "label": "Total", "type": "decimal"}
    body = _refused(
        _post(app, "/api/v1/meta", line | {"fields": [total]}),
        "ix_orders_line_total",
        "orders.line_total",
    )
    assert body["field"] == "name"
    assert revision(app) == before
    assert _post(app, "/api/v1/meta", line).status_code == 201
    fields = "/api/v1/meta/orders_line/fields"
    _refused(_post(app, fields, total), "orders.line_total")
    items = {"name": "items", "label": "Items", "type": "many_to_many", "target": "accounts"}
    _refused(_post(app, fields, items), "m2m_orders_line_items", "orders.line_items")
    assert (
        _post(app, fields, {"name": "amount", "label": "Amount", "type": "decimal"}).status_code
        == 201
    )
    # PostgreSQL names the primary key's index obj_orders_pkey: no table may take it.
    _refused(_post(app, "/api/v1/meta", {"name": "orders_pkey", "label": "P"}), "obj_orders_pkey")


def test_a_name_left_in_the_database_is_refused(app):
    with app.app_context():
        db.session.execute(text("CREATE TABLE obj_leftovers (id INTEGER)"))
        db.session.commit()
    created = _post(app, "/api/v1/meta", {"name": "leftovers", "label": "Leftover"})
    _refused(created, "obj_leftovers", "existing table or index")


def test_a_plugin_object_whose_storage_names_collide_syncs_nothing(app):
    # accounts.annual_revenue would share ix_accounts_annual_revenue with it, once indexed.
    clash = replace(
        platform(app).objects["accounts"][1],
        name="accounts_annual",
        fields=(F("revenue", "decimal", "Revenue"),),
        name_field=None,
        duplicate_keys=(),
    )
    objects = dict(platform(app).objects) | {"accounts_annual": ("late", clash)}
    before = revision(app)
    with app.app_context(), pytest.raises(DefinitionError) as refused:
        sync_declared(objects)
    message = str(refused.value)
    assert "plugin late declares accounts_annual.revenue" in message
    assert "ix_accounts_annual_revenue" in message and "accounts.annual_revenue" in message
    assert revision(app) == before
    with app.app_context():
        assert "obj_accounts_annual" not in inspect(db.engine).get_table_names()


def test_long_names_get_distinct_identifiers(app):
    """PostgreSQL cuts names at 63 characters; two long ones must still differ."""
    obj = "a" * 40
    first, second = "f" * 49 + "1", "f" * 49 + "2"
    spec = {
        "name": obj,
        "label": "Long",
        "fields": [
            {"name": first, "label": "First", "type": "text", "unique": True},
            {"name": second, "label": "Second", "type": "text", "unique": True},
            {"name": "e" * 50, "label": "Links", "type": "many_to_many", "target": "accounts"},
            {"name": "e" * 49 + "x", "label": "More", "type": "many_to_many", "target": "accounts"},
        ],
    }
    assert _post(app, "/api/v1/meta", spec).status_code == 201
    unique = [ix for ix in indexes(app, f"obj_{obj}").values() if ix["unique"]]
    assert sorted(ix["column_names"][0] for ix in unique) == [first, second]
    assert len({ix["name"] for ix in unique}) == 2
    assert all(len(ix["name"]) <= 63 for ix in unique)
    with app.app_context():
        junctions = [t for t in inspect(db.engine).get_table_names() if t.startswith("m2m_a")]
    assert len(junctions) == 2 and all(len(name) <= 63 for name in junctions)


def test_one_plugins_bad_declaration_holds_back_only_that_plugin(app):
    from bastion.data.setup import DeclarationsHeld, sync_definitions
    from bastion.plugins.contributions import ObjectDefinition

    declared = platform(app).objects
    saved = dict(declared)
    widgets = ObjectDefinition(
        "widgets", "Widget", "Widgets", fields=(F("title", "text", "Title"),), name_field="title"
    )
    declared["widgets"] = ("gadgets", widgets)
    declared["accounts"] = redeclared(
        app,
        "accounts",
        {"city": {"label": "Town"}},
        (F("planet", "lookup", "Planet", target="planets"),),
    )["accounts"]
    try:
        with app.app_context(), pytest.raises(DeclarationsHeld) as held:
            sync_definitions(app)
    finally:
        declared.clear()
        declared.update(saved)
    assert [error.plugin for error in held.value.errors] == [owner_of(app, "accounts")]
    assert "object widgets added" in held.value.changes
    assert field(app, "widgets", "title") is not None  # the other plugin's object is stored
    assert field(app, "accounts", "city").label == "City"  # the held plugin: as it was
    assert field(app, "accounts", "planet") is None
    with app.app_context():
        assert "obj_widgets" in inspect(db.engine).get_table_names()
    failures = platform(app).registry.failures_by_plugin()[owner_of(app, "accounts")]
    assert any("accounts.planet" in failure.message for failure in failures)


def test_an_administrators_presentation_of_a_plugin_object_outlives_the_next_sync(app):
    with app.app_context():
        definitions.update_object("accounts", {"name_field": "city", "icon": "bank"})
    assert sync(app, platform(app).objects) == []  # nothing to undo
    with app.test_request_context():
        forget_catalog()
        meta = current_catalog().get("accounts")
        assert (meta.name_field, meta.icon) == ("city", "bank")
