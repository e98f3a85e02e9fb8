"""Object flags from the declaration: ``navigation`` and ``system_only``.

A small in-memory plugin declares ``fl_lines`` (navigation=False: out of the top menu,
still reachable) and ``fl_history`` (system_only: users read, only the system writes).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
from sqlalchemy import select

import bastion
from bastion.api import FieldDefinition, ObjectDefinition, PluginManifest, hookimpl
from bastion.data.errors import Forbidden
from bastion.db import db
from bastion.plugins import state
from bastion.plugins.registry import ENTRY_POINT_GROUP, PluginRegistry
from bastion.runtime import platform
from tests.conftest import dispose, make_app
from tests.core.data.conftest import ADMIN, SAM, bearer, client_as, service_as

PLUGIN = "flagtest"
MODULE = "bastion_flagtest"
LINES = "fl_lines"
HISTORY = "fl_history"
FIELDS = (FieldDefinition("name", "text", "Name", required=True),)


def register_objects() -> list[ObjectDefinition]:
    return [
        ObjectDefinition(
            LINES, "Flag line", "Flag lines", fields=FIELDS, name_field="name", navigation=False
        ),
        ObjectDefinition(
            HISTORY,
            "Flag entry",
            "Flag entries",
            fields=FIELDS,
            name_field="name",
            system_only=True,
        ),
    ]


def _registry(monkeypatch: pytest.MonkeyPatch) -> PluginRegistry:
    module = types.ModuleType(MODULE)
    module.manifest = PluginManifest(label="Flag tests")  # type: ignore[attr-defined]
    module.register_objects = hookimpl(register_objects)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, MODULE, module)
    registry = PluginRegistry(bastion.__version__)
    registry.discover([metadata.EntryPoint(PLUGIN, MODULE, ENTRY_POINT_GROUP)])
    return registry


def _allow_rep(app) -> None:
    """Sam's role gets every action on both objects: system_only must still refuse."""
    from bastion.models import Role, RoleObjectRule

    with app.app_context():
        row = db.session.scalar(select(Role).where(Role.name == "sales_rep"))
        for name in (LINES, HISTORY):
            rule = RoleObjectRule(object_name=name, scope="all")
            for action in ("read", "create", "edit", "delete", "import", "export"):
                setattr(rule, f"can_{action}", True)
            row.object_rules.append(rule)
        db.session.commit()


@pytest.fixture
def app(settings, monkeypatch) -> Iterator[Any]:
    application = make_app(settings, demo=True, registry=_registry(monkeypatch))
    with application.app_context():
        state.enable(platform(application).registry, [PLUGIN], actor="test")
    _allow_rep(application)
    yield application
    dispose(application)


def _system_record(app, object_name: str, name: str) -> int:
    with service_as(app, None) as system:
        return system.create(object_name, {"name": name}).id


def _nav_links(html: str) -> bool:
    """Whether the page's top navigation links to the flag lines list."""
    nav = html.split("<nav", 1)[1].split("</nav>", 1)[0]
    return f'href="/o/{LINES}"' in nav


@pytest.mark.parametrize("email", [ADMIN, SAM])
def test_navigation_false_leaves_the_menu_but_not_the_url(app, email):
    record_id = _system_record(app, LINES, "Line one")
    client = client_as(app, email)
    page = client.get("/o/contacts")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert not _nav_links(html)
    assert f'href="/o/{HISTORY}"' in html.split("<nav", 1)[1].split("</nav>", 1)[0]
    listing = client.get(f"/o/{LINES}")
    assert listing.status_code == 200
    assert "Line one" in listing.get_data(as_text=True)
    assert client.get(f"/o/{LINES}/{record_id}").status_code == 200
    api = app.test_client()
    found = api.get(f"/api/v1/{LINES}/{record_id}", headers=bearer(app, email))
    assert found.status_code == 200
    assert found.get_json()["name"] == "Line one"
    created = api.post(f"/api/v1/{LINES}", json={"name": "Line two"}, headers=bearer(app, email))
    assert created.status_code == 201, created.get_data(as_text=True)


@pytest.mark.parametrize("email", [ADMIN, SAM])
def test_system_only_refuses_users_writes_through_the_api(app, email):
    record_id = _system_record(app, HISTORY, "Entry")
    api = app.test_client()
    headers = bearer(app, email)
    assert api.get(f"/api/v1/{HISTORY}/{record_id}", headers=headers).status_code == 200
    assert api.get(f"/api/v1/{HISTORY}", headers=headers).status_code == 200
    refused = api.post(f"/api/v1/{HISTORY}", json={"name": "Mine"}, headers=headers)
    assert refused.status_code == 403
    assert "maintained by the system" in refused.get_json()["detail"]
    current = api.get(f"/api/v1/{HISTORY}/{record_id}", headers=headers).get_json()
    patch = api.patch(
        f"/api/v1/{HISTORY}/{record_id}",
        json={"name": "Changed", "version": current["version"]},
        headers=headers,
    )
    assert patch.status_code == 403
    assert (
        api.delete(f"/api/v1/{HISTORY}/{record_id}?version=1", headers=headers).status_code == 403
    )
    with service_as(app, None) as system:
        assert system.get(HISTORY, record_id)["name"] == "Entry"
        assert system.count(HISTORY) == 1


def test_system_only_refuses_the_service_and_allows_the_system(app):
    record_id = _system_record(app, HISTORY, "Entry")
    with service_as(app, ADMIN) as admin:
        assert admin.can(HISTORY, "read")
        for action in ("create", "edit", "delete", "import"):
            assert not admin.can(HISTORY, action)
        with pytest.raises(Forbidden):
            admin.create(HISTORY, {"name": "Mine"})
        with pytest.raises(Forbidden):
            admin.update(HISTORY, record_id, {"name": "Changed"}, version=1)
        with pytest.raises(Forbidden):
            admin.delete(HISTORY, record_id)
        with pytest.raises(Forbidden):
            admin.merge(HISTORY, record_id, [record_id], values={}, version=1)
    with service_as(app, None) as system:
        record = system.get(HISTORY, record_id)
        updated = system.update(HISTORY, record_id, {"name": "Changed"}, version=record.version)
        assert updated["name"] == "Changed"
        system.delete(HISTORY, record_id)
        assert system.count(HISTORY) == 0


def test_system_only_hides_the_forms(app):
    record_id = _system_record(app, HISTORY, "Entry")
    client = client_as(app, ADMIN)
    listing = client.get(f"/o/{HISTORY}")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert "Entry" in html
    assert 'id="record-new"' not in html
    assert "data-import" not in html
    detail = client.get(f"/o/{HISTORY}/{record_id}").get_data(as_text=True)
    assert 'id="record-edit"' not in detail
    assert 'id="record-delete"' not in detail
    assert f"/o/{HISTORY}/{record_id}/field/" not in detail  # no inline edit
    assert client.get(f"/o/{HISTORY}/{record_id}/field/name").status_code in (403, 404)
    assert client.get(f"/o/{HISTORY}/new").status_code == 403
    assert client.get(f"/o/{HISTORY}/{record_id}/edit").status_code == 403
    assert client.get(f"/o/{HISTORY}/import").status_code == 403
    # A plain object of the same plugin keeps its buttons.
    lines = client.get(f"/o/{LINES}").get_data(as_text=True)
    assert 'id="record-new"' in lines
