"""Integrity of the record service's writes on both databases.

- Inside ``atomic()`` a write that fails (validation, a database refusal) undoes only
  itself: the caller may catch the error and go on, on PostgreSQL too (where a failed
  statement would otherwise abort the whole transaction).
- Records whose references a delete clears or a merge re-points, and records that lose
  many-to-many links when a record goes, each get their own audited update event, and
  are queued for the search index.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select

from bastion.data import definitions
from bastion.data.errors import ValidationFailed
from bastion.data.events import Cause, RecordChange, subscribe
from bastion.data.models import SearchOutbox
from bastion.data.records.validation import ValidationMixin
from bastion.db import db
from tests.core.data.conftest import ADMIN, service_as, user_id
from tests.core.data.ui_support import create, stored


def _audit(caplog, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


def _audited(caplog, action: str, object_type: str) -> dict[int, dict]:
    """The changes of the audit entries ``action`` on ``object_type``, by record id."""
    found: dict[int, dict] = {}
    for entry in _audit(caplog, action):
        if entry.object_type == object_type:
            assert int(entry.object_id) not in found, "one entry per record"
            found[int(entry.object_id)] = getattr(entry, "changes", None)
    return found


def _names(app, object_name: str) -> list[str]:
    with service_as(app, None) as records:
        return sorted(r["name"] for r in records.iterate(object_name))


def _outbox(app, object_name: str) -> set[int]:
    with app.app_context():
        statement = select(SearchOutbox.record_id).where(
            SearchOutbox.object_name == object_name, SearchOutbox.action == "index"
        )
        return set(db.session.scalars(statement))


def _clear_outbox(app) -> None:
    with app.app_context():
        db.session.execute(SearchOutbox.__table__.delete())
        db.session.commit()


def _listen(app) -> list[RecordChange]:
    """Every record change announced from now on (as a core listener sees them)."""
    seen: list[RecordChange] = []
    subscribe(app, seen.append)
    return seen


@contextlib.contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements sent to the database meanwhile."""
    sent: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


# --------------------------------------------------------------------------- a. savepoints


def _add_unique_code(app) -> None:
    with app.app_context():
        definitions.add_field(
            "accounts", {"name": "code", "label": "Code", "type": "text", "unique": True}
        )


def test_a_write_the_database_refuses_inside_atomic_undoes_only_itself(
    demo_app, monkeypatch, caplog
):
    _add_unique_code(demo_app)
    # A concurrent writer took the value after the service's own check: the database's
    # unique index refuses the INSERT.
    monkeypatch.setattr(ValidationMixin, "_check_unique", lambda *args, **kwargs: None)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records, records.atomic():
        first = records.create("accounts", {"name": "First", "code": "C1"})
        with pytest.raises(ValidationFailed) as refused:
            records.create("accounts", {"name": "Clash", "code": "C1"})
        assert set(refused.value.errors) == {"code"}
        # The transaction is still usable (PostgreSQL would refuse any statement here
        # had the failed INSERT aborted it), and the earlier write is still in it.
        records.update("accounts", first.id, {"name": "First, renamed"}, version=1)
        records.create("accounts", {"name": "After", "code": "C2"})
    assert _names(demo_app, "accounts") == ["After", "First, renamed"]
    created = [e.changes["name"]["after"] for e in _audit(caplog, "record.create")]
    assert created == ["First", "After"]


def test_a_write_failing_after_its_statements_inside_atomic_leaves_nothing(demo_app, caplog):
    def refuse(change: RecordChange) -> None:
        # Runs after the row is written, like any listener or plugin hook that fails.
        values = change.after or change.before or {}
        if values.get("name") == "Refused":
            raise ValidationFailed({"name": "A listener refused this record."})

    subscribe(demo_app, refuse)
    parent = create(demo_app, ADMIN, "accounts", {"name": "Parent"})
    child = create(demo_app, ADMIN, "accounts", {"name": "Child", "parent": parent})
    refused = create(demo_app, ADMIN, "accounts", {"name": "Kept"})
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records, records.atomic():
        with pytest.raises(ValidationFailed):
            records.create("accounts", {"name": "Refused", "parent": parent})
        with pytest.raises(ValidationFailed):
            records.update("accounts", refused, {"name": "Refused"}, version=1)
        records.update("accounts", parent, {"name": "Refused parent"}, version=1)
        with pytest.raises(ValidationFailed):
            records.update("accounts", parent, {"name": "Refused"}, version=2)
        records.create("accounts", {"name": "Later"})
    assert _names(demo_app, "accounts") == ["Child", "Kept", "Later", "Refused parent"]
    assert stored(demo_app, "accounts", child)["parent"] == parent
    assert stored(demo_app, "accounts", parent)["version"] == 2
    written = [e.changes for e in _audit(caplog, "record.update")]
    assert written == [{"name": {"before": "Parent", "after": "Refused parent"}}]


def test_a_delete_failing_inside_atomic_keeps_the_references_it_cleared(demo_app, caplog):
    def refuse(change: RecordChange) -> None:
        if change.action == "delete":
            raise ValidationFailed({"": "Deletes are refused here."})

    parent = create(demo_app, ADMIN, "accounts", {"name": "Parent"})
    child = create(demo_app, ADMIN, "accounts", {"name": "Child", "parent": parent})
    subscribe(demo_app, refuse)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records, records.atomic():
        with pytest.raises(ValidationFailed):
            records.delete("accounts", parent)
        records.create("accounts", {"name": "Later"})
    assert stored(demo_app, "accounts", child)["parent"] == parent
    assert stored(demo_app, "accounts", child)["version"] == 1
    assert not _audit(caplog, "record.update") and not _audit(caplog, "record.delete")
    assert len(_audit(caplog, "record.create")) == 1


def test_a_failed_nested_atomic_block_undoes_only_its_own_writes(demo_app, caplog):
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records:
        with records.atomic():
            records.create("accounts", {"name": "Outer before"})
            with pytest.raises(RuntimeError), records.atomic():
                records.create("accounts", {"name": "Inner"})
                raise RuntimeError("the inner block gives up")
            with records.atomic():
                records.create("accounts", {"name": "Inner kept"})
            records.create("accounts", {"name": "Outer after"})
        assert _names(demo_app, "accounts") == ["Inner kept", "Outer after", "Outer before"]
        names = [e.changes["name"]["after"] for e in _audit(caplog, "record.create")]
        assert names == ["Outer before", "Inner kept", "Outer after"]
        caplog.clear()
        # A nested block that succeeded is still undone when the outer one fails, and
        # its audit entries are never written.
        with pytest.raises(RuntimeError), records.atomic():
            with records.atomic():
                records.create("accounts", {"name": "Released, then rolled back"})
            raise RuntimeError("the outer block gives up")
    assert "Released, then rolled back" not in _names(demo_app, "accounts")
    assert not _audit(caplog, "record.create")


def test_the_first_write_of_an_atomic_block_rolls_back_with_it(demo_app):
    # On SQLite the driver begins the transaction only at the first INSERT: a savepoint
    # taken before would be the transaction, and its release would commit the write.
    with service_as(demo_app, ADMIN) as records, pytest.raises(RuntimeError), records.atomic():
        records.count("accounts")  # a read first: still no transaction on SQLite
        records.create("accounts", {"name": "First write"})
        records.create("accounts", {"name": "Second write"})
        raise RuntimeError("give up")
    assert _names(demo_app, "accounts") == []  # read in a fresh session
    with service_as(demo_app, ADMIN) as records, records.atomic():
        records.create("accounts", {"name": "Committed"})
    assert _names(demo_app, "accounts") == ["Committed"]


def test_a_merge_failing_inside_atomic_changes_nothing(demo_app):
    keep = create(demo_app, ADMIN, "accounts", {"name": "Keep"})
    other = create(demo_app, ADMIN, "accounts", {"name": "Other"})
    ada = create(demo_app, ADMIN, "contacts", {"last_name": "Ada", "account": other})
    with service_as(demo_app, ADMIN) as records, records.atomic():
        with pytest.raises(ValidationFailed):
            # References are re-pointed and the other deleted before the survivor's
            # values are checked: the refusal must undo them.
            records.merge("accounts", keep, [other], values={"name": ""}, version=1)
        records.create("accounts", {"name": "Later"})
    assert stored(demo_app, "accounts", other) is not None
    assert stored(demo_app, "contacts", ada)["account"] == other
    assert stored(demo_app, "accounts", keep)["version"] == 1
    assert _names(demo_app, "accounts") == ["Keep", "Later", "Other"]


# --------------------------------------------------------------------------- b. references


def test_a_delete_announces_every_record_whose_reference_it_cleared(demo_app, caplog):
    parent = create(demo_app, ADMIN, "accounts", {"name": "Parent"})
    children = [
        create(demo_app, ADMIN, "accounts", {"name": f"Child {i}", "parent": parent})
        for i in range(3)
    ]
    unrelated = create(demo_app, ADMIN, "accounts", {"name": "Unrelated"})
    link = {"object": "accounts", "id": parent}
    call = create(
        demo_app, ADMIN, "activities", {"kind": "call", "subject": "Call", "related_to": link}
    )
    _clear_outbox(demo_app)
    seen = _listen(demo_app)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records:
        records.delete("accounts", parent)
    cause = {"action": "delete", "object": "accounts", "ids": [parent]}
    assert _audited(caplog, "record.update", "accounts") == {
        child: {"parent": {"before": parent, "after": None}, "_cause": cause} for child in children
    }
    assert _audited(caplog, "record.update", "activities") == {
        call: {"related_to": {"before": link, "after": None}, "_cause": cause}
    }
    assert not _audit(caplog, "record.references_released")
    # Events as plugins get them: one update per record, with what changed and why.
    updates = [c for c in seen if c.action == "update"]
    assert sorted(c.record_id for c in updates if c.object == "accounts") == children
    assert all(c.cause == Cause("delete", "accounts", (parent,)) for c in updates)
    assert [c.action for c in seen][-1] == "delete"
    for child in children:
        row = stored(demo_app, "accounts", child)
        assert row["parent"] is None and row["version"] == 2
    assert stored(demo_app, "accounts", unrelated)["version"] == 1
    assert stored(demo_app, "activities", call)["version"] == 2
    with service_as(demo_app, None) as records:
        child = records.get("accounts", children[0], fields=["updated_by"])
        assert child["updated_by"] == user_id(demo_app, ADMIN)
    assert _outbox(demo_app, "accounts") == set(children)
    assert _outbox(demo_app, "activities") == {call}


def test_releasing_references_takes_as_many_statements_for_many_records_as_for_few(demo_app):
    def delete_with_children(count: int) -> int:
        parent = create(demo_app, ADMIN, "accounts", {"name": f"Parent of {count}"})
        with service_as(demo_app, ADMIN) as records:
            records.create_many(
                "accounts", [{"name": f"Child {i}", "parent": parent} for i in range(count)]
            )
            with _statements() as sent:
                records.delete("accounts", parent)
        return len(sent)

    assert delete_with_children(2) == delete_with_children(60)


def test_a_merge_announces_every_record_it_re_pointed(demo_app, caplog):
    with demo_app.app_context():
        definitions.add_field(
            "contacts",
            {"name": "partners", "label": "Partners", "type": "many_to_many", "target": "accounts"},
        )
    keep = create(demo_app, ADMIN, "accounts", {"name": "Keep"})
    other = create(demo_app, ADMIN, "accounts", {"name": "Other"})
    third = create(demo_app, ADMIN, "accounts", {"name": "Third"})
    # The survivor's own parent is the record merged into it: that link is cleared.
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", keep, {"parent": other}, version=1)
    child = create(demo_app, ADMIN, "accounts", {"name": "Child", "parent": other})
    ada = create(demo_app, ADMIN, "contacts", {"last_name": "Ada", "account": other})
    cy = create(demo_app, ADMIN, "contacts", {"last_name": "Cy", "partners": [other, third]})
    both = create(demo_app, ADMIN, "contacts", {"last_name": "Bo", "partners": [keep, other]})
    link = {"object": "accounts", "id": other}
    call = create(
        demo_app, ADMIN, "activities", {"kind": "call", "subject": "Call", "related_to": link}
    )
    _clear_outbox(demo_app)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records:
        records.merge("accounts", keep, [other], values={}, version=2)
    cause = {"action": "merge", "object": "accounts", "ids": [other], "into": keep}
    assert _audited(caplog, "record.update", "contacts") == {
        ada: {"account": {"before": other, "after": keep}, "_cause": cause},
        cy: {"partners": {"before": [other, third], "after": [keep, third]}, "_cause": cause},
        both: {"partners": {"before": [keep, other], "after": [keep]}, "_cause": cause},
    }
    accounts = _audited(caplog, "record.update", "accounts")
    assert accounts[child] == {"parent": {"before": other, "after": keep}, "_cause": cause}
    assert accounts[keep] == {"parent": {"before": other, "after": None}, "_cause": cause}
    activity = {"before": link, "after": {"object": "accounts", "id": keep}}
    assert _audited(caplog, "record.update", "activities") == {
        call: {"related_to": activity, "_cause": cause}
    }
    for contact in (ada, cy, both):
        assert stored(demo_app, "contacts", contact)["version"] == 2
    assert stored(demo_app, "contacts", cy)["partners"] == [keep, third]
    # The survivor moves on exactly one version, so an edit read before is refused.
    assert stored(demo_app, "accounts", keep)["version"] == 3
    assert stored(demo_app, "accounts", keep)["parent"] is None
    assert _outbox(demo_app, "contacts") == {ada, cy, both}
    assert {child, keep} <= _outbox(demo_app, "accounts")


def test_a_record_that_is_its_own_parent_can_be_deleted_at_its_version(demo_app, caplog):
    selfish = create(demo_app, ADMIN, "accounts", {"name": "Selfish"})
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", selfish, {"parent": selfish}, version=1)
        records.delete("accounts", selfish, version=2)
    assert stored(demo_app, "accounts", selfish) is None
    assert [e.object_id for e in _audit(caplog, "record.update")] == [str(selfish)]


# --------------------------------------------------------------------------- c. links


def test_deleting_a_record_audits_who_lost_which_link(demo_app, caplog):
    with demo_app.app_context():
        definitions.add_field(
            "contacts",
            {"name": "partners", "label": "Partners", "type": "many_to_many", "target": "accounts"},
        )
        definitions.add_field(
            "accounts",
            {"name": "related", "label": "Related", "type": "many_to_many", "target": "accounts"},
        )
    gone = create(demo_app, ADMIN, "accounts", {"name": "Gone"})
    third = create(demo_app, ADMIN, "accounts", {"name": "Third"})
    cy = create(demo_app, ADMIN, "contacts", {"last_name": "Cy", "partners": [gone, third]})
    untouched = create(demo_app, ADMIN, "contacts", {"last_name": "Un", "partners": [third]})
    fan = create(demo_app, ADMIN, "accounts", {"name": "Fan", "related": [gone, third]})
    with service_as(demo_app, ADMIN) as records:
        # The record going has links of its own: they leave with it (its delete entry).
        records.update("accounts", gone, {"related": [third]}, version=1)
    _clear_outbox(demo_app)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records:
        records.delete("accounts", gone)
    cause = {"action": "delete", "object": "accounts", "ids": [gone]}
    assert _audited(caplog, "record.update", "contacts") == {
        cy: {"partners": {"before": [gone, third], "after": [third]}, "_cause": cause}
    }
    assert _audited(caplog, "record.update", "accounts") == {
        fan: {"related": {"before": [gone, third], "after": [third]}, "_cause": cause}
    }
    (deleted,) = _audit(caplog, "record.delete")
    assert deleted.changes["related"] == {"before": [third], "after": None}
    assert stored(demo_app, "contacts", cy)["partners"] == [third]
    assert stored(demo_app, "contacts", cy)["version"] == 2
    assert stored(demo_app, "contacts", untouched)["version"] == 1
    assert stored(demo_app, "accounts", fan)["related"] == [third]
    assert _outbox(demo_app, "contacts") == {cy}
    assert _outbox(demo_app, "accounts") == {fan}


def test_a_hook_writing_through_the_service_cannot_commit_a_refused_write(demo_app, caplog):
    """A listener's own service write joins the outer write's transaction."""
    from bastion.data.records import RecordService

    def follow_up(change):
        outer = change.after and change.after.get("name") == "Outer"
        if change.object == "accounts" and change.action == "create" and outer:
            RecordService(None, system=True).create("accounts", {"name": "Follow-up"})

    def refuse(change):
        if change.object == "accounts" and change.after and change.after.get("name") == "Outer":
            raise ValidationFailed({"": "refused by a later listener"})

    subscribe(demo_app, follow_up)
    subscribe(demo_app, refuse)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    caplog.clear()
    with service_as(demo_app, ADMIN) as records, pytest.raises(ValidationFailed):
        records.create("accounts", {"name": "Outer"})
    with service_as(demo_app, None) as system:
        names = {r["name"] for r in system.iterate("accounts")}
    assert not {"Outer", "Follow-up"} & names
    assert not [r for r in caplog.records if getattr(r, "action", "") == "record.create"]
