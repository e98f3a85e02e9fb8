"""A small plugin for the record-service tests: read-only fields, aggregates, nested writes.

It declares ``rt_deals`` (with read-only ``score`` and ``grade`` that its
``record_changing`` hook computes) and ``rt_logs`` (written by the deal hooks through a
system service, with a read-only ``stamp`` its own hook sets). What the hooks do beyond
that is switched by the test through ``BEHAVIOUR``; every call is remembered in
``CALLS``.
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
from bastion.api import (
    FieldDefinition,
    ObjectDefinition,
    PluginManifest,
    RecordChange,
    RecordService,
    hookimpl,
)
from bastion.db import db
from bastion.plugins import state
from bastion.plugins.registry import ENTRY_POINT_GROUP, PluginRegistry
from bastion.runtime import platform
from tests.conftest import dispose, make_app

PLUGIN = "rtest"
MODULE = "bastion_rtest"
DEALS = "rt_deals"
LOGS = "rt_logs"

DEAL_FIELDS = (
    FieldDefinition("name", "text", "Deal name", required=True, max_length=100),
    FieldDefinition("amount", "currency", "Amount", scale=2),
    FieldDefinition("units", "integer", "Units"),
    FieldDefinition("weight", "decimal", "Weight", scale=3),
    FieldDefinition("close_date", "date", "Close date"),
    FieldDefinition("stage", "picklist", "Stage", options=("Open", "Won", "Lost"), default="Open"),
    FieldDefinition("secret_note", "text", "Secret note", encrypted=True),
    FieldDefinition("score", "integer", "Score", read_only=True, default=0),
    FieldDefinition("grade", "picklist", "Grade", options=("A", "B", "C"), read_only=True),
    FieldDefinition("tags", "multi_picklist", "Tags", options=("x", "y")),
)
LOG_FIELDS = (
    FieldDefinition("message", "text", "Message", required=True),
    FieldDefinition("deal", "lookup", "Deal", target=DEALS, on_delete="clear"),
    FieldDefinition("stamp", "text", "Stamp", read_only=True),
)

#: Switches the tests set: "log_on_changed", "log_on_changing", "refuse_deal",
#: "update_log_on_changed", "bad_nested", "loop", "crash_on_changing",
#: "crash_on_changed" (in the logs' hook), "crash_on_contacts".
BEHAVIOUR: set[str] = set()
#: (hook, object, action, record id) of every hook call.
CALLS: list[tuple[str, str, str, int | None]] = []


def _score(name: Any) -> int:
    return len(str(name or ""))


def _grade(score: int) -> str:
    return "A" if score >= 10 else "B" if score >= 5 else "C"


def record_changing(change: RecordChange) -> dict[str, str] | None:
    CALLS.append(("changing", change.object, change.action, change.record_id))
    if change.object == DEALS and "crash_on_changing" in BEHAVIOUR:
        raise RuntimeError("boom while checking")
    if change.object == LOGS and change.action == "create":
        change.values["stamp"] = "stamped"
        return None
    if change.object != DEALS or change.action == "delete":
        return None
    if "name" in change.values:  # the plugin computes its read-only fields
        score = _score(change.values["name"])
        change.values["score"] = score
        if change.values.get("grade") is None:  # unless the system gave one
            change.values["grade"] = _grade(score)
    if "log_on_changing" in BEHAVIOUR:
        RecordService(None, system=True).create(LOGS, {"message": f"changing {change.action}"})
    if "refuse_deal" in BEHAVIOUR:
        return {"name": "Refused by the test plugin."}
    return None


def record_changed(change: RecordChange) -> None:
    CALLS.append(("changed", change.object, change.action, change.record_id))
    if change.object == "contacts" and "crash_on_contacts" in BEHAVIOUR:
        raise RuntimeError("boom on a core object")
    if change.object == LOGS and "crash_on_changed" in BEHAVIOUR:
        raise RuntimeError("boom while following")
    if change.object == LOGS and "loop" in BEHAVIOUR:  # sets itself off, again and again
        RecordService(None, system=True).create(LOGS, {"message": "again"})
    if change.object != DEALS or change.action == "delete":
        return
    system = RecordService(None, system=True)
    if "log_on_changed" in BEHAVIOUR:
        log = system.create(
            LOGS, {"message": f"{change.action} {change.record_id}", "deal": change.record_id}
        )
        if "update_log_on_changed" in BEHAVIOUR:
            system.update(LOGS, log.id, {"message": "updated by hook"}, version=log.version)
    if "bad_nested" in BEHAVIOUR:
        try:
            system.create(LOGS, {"message": ""})  # required: refused, caught here
        except bastion.api.ValidationFailed:
            CALLS.append(("nested_refused", LOGS, "create", None))


def register_objects() -> list[ObjectDefinition]:
    return [
        ObjectDefinition(DEALS, "Deal", "Deals", fields=DEAL_FIELDS, name_field="name"),
        ObjectDefinition(LOGS, "Deal log", "Deal logs", fields=LOG_FIELDS, name_field="message"),
    ]


def _module() -> types.ModuleType:
    module = types.ModuleType(MODULE)
    module.manifest = PluginManifest(label="Record tests")  # type: ignore[attr-defined]
    for function in (register_objects, record_changing, record_changed):
        setattr(module, function.__name__, hookimpl(function))
    return module


def _registry(monkeypatch: pytest.MonkeyPatch) -> PluginRegistry:
    """Only this plugin: the tests do not depend on the bundled plugins' state."""
    monkeypatch.setitem(sys.modules, MODULE, _module())
    registry = PluginRegistry(bastion.__version__)
    registry.discover([metadata.EntryPoint(PLUGIN, MODULE, ENTRY_POINT_GROUP)])
    return registry


def _allow(app, role: str, scope: str, actions: tuple[str, ...]) -> None:
    from bastion.models import Role, RoleObjectRule

    with app.app_context():
        row = db.session.scalar(select(Role).where(Role.name == role))
        for name in (DEALS, LOGS):
            rule = RoleObjectRule(object_name=name, scope=scope)
            for action in actions:
                setattr(rule, f"can_{action}", True)
            row.object_rules.append(rule)
        db.session.commit()


def running_app(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The demo organization with the test plugin enabled; reps work deals of their team.

    Each test module makes it its fixture: ``yield from running_app(settings, monkeypatch)``.
    """
    BEHAVIOUR.clear()
    CALLS.clear()
    app = make_app(settings, demo=True, registry=_registry(monkeypatch))
    with app.app_context():
        state.enable(platform(app).registry, [PLUGIN], actor="test")
    _allow(app, "sales_rep", "team", ("read", "create", "edit", "import"))
    _allow(app, "sales_manager", "team_tree", ("read", "create", "edit", "delete", "import"))
    yield app
    BEHAVIOUR.clear()
    dispose(app)
