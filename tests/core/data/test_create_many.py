"""RecordService.create_many: the rules of create() for every row, in fewer queries."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select, text

from bastion.data import definitions
from bastion.data.errors import Forbidden, ValidationFailed
from bastion.data.models import SearchOutbox
from bastion.data.records import writing as records_module
from bastion.db import db
from tests.core.data.conftest import (
    ADMIN,
    MARIA,
    SAM,
    SOFIA,
    service_as,
    set_field_access,
    user_id,
)


@pytest.fixture
def linked(demo_app):
    """An account Sam can see (his own) and one he cannot (the administrator's)."""
    with service_as(demo_app, ADMIN) as records:
        theirs = records.create("accounts", {"name": "Not Sam's"}).id
        mine = records.create("accounts", {"name": "Sam's", "owner": user_id(demo_app, SAM)}).id
    return mine, theirs


def _rows(app, linked):
    mine, theirs = linked
    return [
        {"last_name": "Fine", "email": "Fine@Example.com", "account": mine},
        {"first_name": "No last name"},
        {"last_name": "Bad email", "email": "nope"},
        {"last_name": "Invisible account", "account": theirs},
        {"last_name": "Missing account", "account": 999_999},
        {"last_name": "Foreign owner", "owner": user_id(app, ADMIN)},
        {"last_name": "Nobody owns", "owner": 999_999},
        {"last_name": "Unknown field", "shoe_size": 44},
        {"last_name": "Computed", "full_name": "x"},
        {"last_name": "Hidden", "mobile": "+44 20 7946 0958"},
        {"last_name": "x" * 101},
        {"last_name": "Own", "owner": user_id(app, SAM), "do_not_contact": "yes"},
    ]


def test_each_row_gets_exactly_the_answer_of_create(demo_app, linked):
    """Every refusal create() gives, create_many gives for that row, word for word."""
    set_field_access(demo_app, "sales_rep", "contacts", "mobile", "hidden")
    rows = _rows(demo_app, linked)
    expected = []
    with service_as(demo_app, SAM) as records:
        for row in rows:
            try:
                created = records.create("contacts", row)
            except ValidationFailed as exc:
                expected.append(exc.errors)
            else:
                expected.append({k: v for k, v in created.values.items() if k in row})
        db.session.execute(text("DELETE FROM obj_contacts"))
        db.session.commit()
    with service_as(demo_app, SAM) as records:
        results = records.create_many("contacts", rows, return_errors=True)
        got = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, ValidationFailed):
                got.append(result.errors)
            else:
                values = records.get("contacts", result).values
                got.append({k: v for k, v in values.items() if k in row})
    assert got == expected
    assert sum(isinstance(item, int) for item in results) == 2
    assert got[0]["email"] == "fine@example.com" and got[-1]["do_not_contact"] is True


def test_a_bad_row_refuses_the_whole_call(demo_app, linked):
    with service_as(demo_app, MARIA) as records:
        with pytest.raises(ValidationFailed) as refused:
            records.create_many("contacts", [{"last_name": "Good"}, {"email": "x@"}])
        assert set(refused.value.errors) == {"last_name", "email"}
        assert records.count("contacts") == 0
        with pytest.raises(ValidationFailed):
            records.create_many("contacts", [{"last_name": "Good"}, "not a mapping"])  # type: ignore[list-item]
    with service_as(demo_app, SOFIA) as records, pytest.raises(Forbidden):
        records.create_many("contacts", [{"last_name": "Support may not"}])


def test_rules_across_fields_apply(demo_app):
    with service_as(demo_app, ADMIN) as records:
        results = records.create_many(
            "activities",
            [
                {"subject": "Done", "done": True, "completed_at": "2026-01-01T10:00Z"},
                {"subject": "Not done", "completed_at": "2026-01-01T10:00Z"},
            ],
            return_errors=True,
        )
    assert isinstance(results[0], int)
    assert results[1].errors == {
        "completed_at": "A completion time needs the activity to be marked done."
    }


def test_batches_announce_every_record(demo_app, monkeypatch, caplog):
    monkeypatch.setattr(records_module, "BATCH_SIZE", 2)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    rows = [{"last_name": f"Person {i}", "email": f"p{i}@example.com"} for i in range(5)]
    with service_as(demo_app, MARIA) as records:
        ids = records.create_many("contacts", rows)
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert [records.get("contacts", i)["last_name"] for i in ids] == [
            f"Person {i}" for i in range(5)
        ]
        owners = {records.get("contacts", i)["owner"] for i in ids}
        queued = db.session.scalars(
            select(SearchOutbox.record_id).where(SearchOutbox.object_name == "contacts")
        )
        assert sorted(queued) == ids
    assert owners == {user_id(demo_app, MARIA)}
    created = [r for r in caplog.records if getattr(r, "action", None) == "record.create"]
    assert sorted(int(r.object_id) for r in created) == ids
    assert created[0].changes["last_name"] == {"before": None, "after": "Person 0"}


def test_numbers_encryption_and_many_to_many(demo_app):
    with demo_app.test_request_context():
        definitions.add_field(
            "contacts", {"name": "ref", "label": "Ref", "type": "auto_number", "format": "C-{000}"}
        )
        definitions.add_field(
            "contacts",
            {"name": "national_id", "label": "National id", "type": "text", "encrypted": True},
        )
        definitions.add_field(
            "contacts",
            {"name": "partners", "label": "Partners", "type": "many_to_many", "target": "accounts"},
        )
        db.session.commit()
    with service_as(demo_app, ADMIN) as records:
        one = records.create("accounts", {"name": "One"}).id
        two = records.create("accounts", {"name": "Two"}).id
        first = records.create("contacts", {"last_name": "Single"})
        ids = records.create_many(
            "contacts",
            [
                {"last_name": "A", "national_id": "AB-1", "partners": [one, two]},
                {"last_name": "B", "partners": f"{two}"},
                {"last_name": "C", "national_id": "CD-2"},
            ],
        )
        later = records.create("contacts", {"last_name": "After"})
        got = [records.get("contacts", i) for i in ids]
        assert [r["ref"] for r in [first, *got, later]] == [f"C-00{n}" for n in range(1, 6)]
        assert [r["national_id"] for r in got] == ["AB-1", None, "CD-2"]
        assert [r["partners"] for r in got] == [[one, two], [two], []]
        stored = db.session.scalar(
            text("SELECT national_id FROM obj_contacts WHERE id = :id"), {"id": ids[0]}
        )
        assert stored and "AB-1" not in stored
        assert db.session.scalar(select(func.count()).select_from(SearchOutbox)) >= 5
