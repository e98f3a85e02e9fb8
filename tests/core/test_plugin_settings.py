"""Plugin settings: JSON values in site_settings, validated, audited with old and new."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from bastion import api
from bastion.audit.models import AuditEntry
from bastion.data.records.transactions import NESTING_KEY
from bastion.db import db
from bastion.identity import find_user_by_email
from bastion.models import SiteSetting
from tests.conftest import ADMIN_EMAIL


def _entries():
    return list(
        db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "plugin.setting").order_by(AuditEntry.seq)
        )
    )


def test_a_setting_is_stored_read_back_and_audited(app):
    with app.test_request_context():
        admin = find_user_by_email(ADMIN_EMAIL)
        assert api.get_plugin_setting("sales", "follow_up_days") is None
        assert api.get_plugin_setting("sales", "follow_up_days", 14) == 14
        api.set_plugin_setting("sales", "follow_up_days", 21, actor=admin)
        api.set_plugin_setting("sales", "follow_up_days", 30, actor=admin)
        api.set_plugin_setting("sales", "stages", {"a": [1, "two", True, None]}, actor=None)
        api.set_plugin_setting("sales", "discount_threshold", Decimal("12.50"), actor=admin)
        db.session.remove()  # a fresh session: the values were committed
        assert api.get_plugin_setting("sales", "follow_up_days", 14) == 30
        assert api.get_plugin_setting("sales", "stages") == {"a": [1, "two", True, None]}
        assert Decimal(api.get_plugin_setting("sales", "discount_threshold")) == Decimal("12.50")
        row = db.session.get(SiteSetting, "plugin:sales:follow_up_days")
        assert row.value == "30" and row.changed_by == f"user:{admin.id}"
        entries = _entries()
        assert [json.loads(e.changes) for e in entries[:2]] == [
            {"follow_up_days": {"before": None, "after": 21}},
            {"follow_up_days": {"before": 21, "after": 30}},
        ]
        assert entries[0].actor == f"user:{admin.id}" and entries[2].actor == "system"
        assert entries[0].object_id == "plugin:sales:follow_up_days"


def test_settings_of_plugins_do_not_mix(app):
    with app.test_request_context():
        api.set_plugin_setting("sales", "limit", 1, actor=None)
        api.set_plugin_setting("support", "limit", 2, actor=None)
        assert api.get_plugin_setting("sales", "limit") == 1
        assert api.get_plugin_setting("support", "limit") == 2


@pytest.mark.parametrize(
    ("plugin", "key", "message"),
    [
        ("Sales", "x", "Plugin name"),
        ("sales", "Follow-Up", "Setting name"),
        ("sales", "", "Setting name"),
        ("sales", "a:b", "Setting name"),
        ("sales", "x" * 100, "too long"),
    ],
)
def test_bad_names_are_refused(app, plugin, key, message):
    with app.test_request_context():
        with pytest.raises(ValueError, match=message):
            api.set_plugin_setting(plugin, key, 1, actor=None)
        with pytest.raises(ValueError, match=message):
            api.get_plugin_setting(plugin, key)


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), "x" * (65 * 1024)])
def test_bad_values_are_refused_and_nothing_is_written(app, value):
    with app.test_request_context():
        api.set_plugin_setting("sales", "knob", "kept", actor=None)
        with pytest.raises(ValueError, match=r"Setting sales\.knob"):
            api.set_plugin_setting("sales", "knob", value, actor=None)
        db.session.remove()
        assert api.get_plugin_setting("sales", "knob") == "kept"
        assert len(_entries()) == 1


def test_an_unchanged_value_writes_and_audits_nothing(app):
    with app.test_request_context():
        assert api.set_plugin_setting("sales", "days", 14, actor=None) is True
        assert api.set_plugin_setting("sales", "days", 14, actor=None) is False
        # JSON keeps true and 1 apart even though Python's == does not.
        assert api.set_plugin_setting("sales", "days", True, actor=None) is True
        assert api.set_plugin_setting("sales", "days", {"b": 1, "a": 2}, actor=None) is True
        assert api.set_plugin_setting("sales", "days", {"a": 2, "b": 1}, actor=None) is False
        assert len(_entries()) == 3


def test_secret_and_large_values_stay_out_of_the_audit_trail(app):
    with app.test_request_context():
        api.set_plugin_setting("sales", "api_key", "s3cr3t-old", actor=None, secret=True)
        api.set_plugin_setting("sales", "api_key", "s3cr3t-new", actor=None, secret=True)
        big = "x" * 5000
        api.set_plugin_setting("sales", "blob", big, actor=None)
        assert api.get_plugin_setting("sales", "api_key") == "s3cr3t-new"
        assert api.get_plugin_setting("sales", "blob") == big
        entries = _entries()
        assert not any("s3cr3t" in (e.changes or "") for e in entries)
        assert json.loads(entries[1].changes) == {"api_key": {"changed": True, "secret": True}}
        blob = json.loads(entries[2].changes)["blob"]
        assert blob["before"] is None and blob["after"]["bytes"] == 5002
        assert len(blob["after"]["sha256"]) == 64 and big not in entries[2].changes


def test_a_setting_is_refused_while_records_are_being_written(app):
    from bastion.data.records import RecordService

    with app.test_request_context():
        service = RecordService(None, system=True)
        with (
            pytest.raises(RuntimeError, match="while records are being written"),
            service.atomic(),
        ):
            service.create("accounts", {"name": "Half-written"})
            api.set_plugin_setting("sales", "knob", 1, actor=None)
        # A record hook runs inside the write (its nesting counted in the session).
        db.session.info[NESTING_KEY] = 1
        try:
            with pytest.raises(RuntimeError, match="from a record hook"):
                api.set_plugin_setting("sales", "knob", 1, actor=None)
        finally:
            db.session.info[NESTING_KEY] = 0
        db.session.remove()
        # Neither the setting nor the record (rolled back with the block) was committed.
        assert api.get_plugin_setting("sales", "knob") is None
        assert service.count("accounts") == 0
        assert _entries() == []


@pytest.mark.parametrize("actor", ["admin@example.com", "user:1", 1, object()])
def test_the_actor_is_a_user_or_none(app, actor):
    with app.test_request_context():
        with pytest.raises(ValueError, match="actor must be a user"):
            api.set_plugin_setting("sales", "knob", 1, actor=actor)
        assert api.get_plugin_setting("sales", "knob") is None
        admin = api.find_user_info(ADMIN_EMAIL)
        api.set_plugin_setting("sales", "knob", 2, actor=admin)
        assert _entries()[-1].actor == f"user:{admin.id}"
