"""Plugins' record hooks see each row of RecordService.create_many like a create()."""

from __future__ import annotations

from bastion.data.errors import ValidationFailed
from bastion.data.records import RecordService
from tests.core.plugins_platform.support import set_enabled
from tests.core.plugins_platform.test_hooks import example_module


def test_create_many_runs_record_changing_and_record_changed_per_row(plugin_app):
    module = example_module(plugin_app)
    set_enabled(plugin_app, "example")
    module.CHANGES.clear()
    with plugin_app.test_request_context():
        records = RecordService(None, system=True)
        results = records.create_many(
            "example_things",
            [
                {"name": "  first one", "size": 1},
                {"name": "too big", "size": module.MAX_SIZE + 1},
                {"name": "third", "size": 3},
            ],
            return_errors=True,
        )
        first, refused, third = results
        assert isinstance(refused, ValidationFailed)
        assert refused.errors == {"size": "Example things are at most 100 big."}
        # The hook's adjustment is what was written.
        assert records.get("example_things", first)["name"] == "First one"
        assert records.count("example_things") == 2
    assert [(o, a, i) for o, a, i, _ in module.CHANGES] == [
        ("example_things", "create", first),
        ("example_things", "create", third),
    ]
    assert "name" in module.CHANGES[0][3]
