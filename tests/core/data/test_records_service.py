"""The record service itself: scope, field security, concurrency, references, paging."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bastion.data import definitions
from bastion.data.errors import BadQuery, Conflict, Forbidden, NotFound, ValidationFailed
from bastion.data.query import Filter
from bastion.db import db
from tests.core.data.conftest import (
    ADMIN,
    AIKO,
    MARIA,
    SAM,
    service_as,
    set_field_access,
    user_id,
)


@pytest.fixture
def owned(demo_app):
    """Accounts owned by Sam (Sales North), Maria (Sales) and the administrator."""
    ids = {}
    with service_as(demo_app, ADMIN) as records:
        for email in (SAM, MARIA, ADMIN):
            account = records.create(
                "accounts", {"name": f"Account of {email}", "owner": user_id(demo_app, email)}
            )
            ids[email] = account.id
    return ids


def test_scope_decides_what_each_user_reaches(demo_app, owned):
    with service_as(demo_app, SAM) as records:
        # A rep's scope is their team: Sales North holds only Sam.
        assert [r.id for r in records.query("accounts").records] == [owned[SAM]]
        for other in (owned[MARIA], owned[ADMIN]):
            with pytest.raises(NotFound):
                records.get("accounts", other)
            with pytest.raises(NotFound):
                records.update("accounts", other, {"name": "Mine now"}, version=1)
            with pytest.raises(Forbidden):  # reps delete nothing: said before looking
                records.delete("accounts", other)
        assert records.names("accounts", owned.values()) == {owned[SAM]: f"Account of {SAM}"}
        # Nor can a rep hand a record to someone outside their reach.
        with pytest.raises(ValidationFailed) as refused:
            records.update("accounts", owned[SAM], {"owner": user_id(demo_app, ADMIN)}, version=1)
        assert "owner" in refused.value.errors
        # Lookups may only point at records the user can see.
        with pytest.raises(ValidationFailed) as hidden_target:
            records.create("contacts", {"last_name": "X", "account": owned[ADMIN]})
        assert hidden_target.value.errors["account"].startswith("Account: no account")
    with service_as(demo_app, MARIA) as records:
        # The manager's team tree holds Sales and Sales North.
        visible = {r.id for r in records.query("accounts").records}
        assert visible == {owned[SAM], owned[MARIA]}
    with service_as(demo_app, AIKO) as records:
        assert records.count("accounts") == 3  # the auditor reads everything...
        with pytest.raises(Forbidden):
            records.create("accounts", {"name": "Nope"})  # ...and writes nothing


def test_hidden_and_read_only_fields(demo_app, owned):
    set_field_access(demo_app, "sales_rep", "accounts", "annual_revenue", "hidden")
    set_field_access(demo_app, "sales_rep", "accounts", "industry", "read_only")
    with service_as(demo_app, ADMIN) as records:
        records.update(
            "accounts", owned[SAM], {"annual_revenue": "5000000", "industry": "Banking"}, version=1
        )
    with service_as(demo_app, SAM) as records:
        account = records.get("accounts", owned[SAM])
        assert "annual_revenue" not in account.values
        assert account["industry"] == "Banking"
        with pytest.raises(BadQuery):
            records.query("accounts", filters=[Filter("annual_revenue", "gt", "1")])
        with pytest.raises(BadQuery):
            records.query("accounts", sort="annual_revenue")
        with pytest.raises(ValidationFailed) as refused:
            records.update(
                "accounts", owned[SAM], {"annual_revenue": "1", "industry": "Retail"}, version=2
            )
        assert refused.value.errors == {
            "annual_revenue": "Account has no field 'annual_revenue'.",
            "industry": "Industry cannot be changed.",
        }
        # Through a lookup the hidden field stays unknown too.
        with pytest.raises(BadQuery):
            records.query("contacts", filters=[Filter("account.annual_revenue", "gt", "1")])


def test_a_formula_over_a_hidden_field_is_hidden(demo_app):
    set_field_access(demo_app, "sales_rep", "contacts", "last_name", "hidden")
    with service_as(demo_app, SAM) as records:
        meta = records.object("contacts")
        assert records.field_access(meta)["full_name"] == "hidden"
        assert records.field_access(meta)["first_name"] == "edit"


def test_a_formula_reading_a_later_formula_over_a_hidden_field_is_hidden(demo_app):
    number = {"type": "formula", "formula_type": "integer"}
    with demo_app.test_request_context():
        definitions.add_field(
            "accounts", {"name": "outer", "label": "Outer", "formula": "1"} | number
        )
        definitions.add_field(
            "accounts", {"name": "inner", "label": "Inner", "formula": "employees + 1"} | number
        )
        definitions.update_field("accounts", "outer", {"formula": "inner * 2"})
    set_field_access(demo_app, "sales_rep", "accounts", "employees", "hidden")
    with service_as(demo_app, ADMIN) as records:
        created = records.create("accounts", {"name": "Co", "employees": 4})
        assert (created["inner"], created["outer"]) == (5, 10)
    with service_as(demo_app, SAM) as records:
        access = records.field_access(records.object("accounts"))
        assert access["inner"] == access["outer"] == "hidden"


def test_stale_versions_are_refused_and_nothing_is_overwritten(demo_app):
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Original"})
        records.update("accounts", account.id, {"name": "First writer"}, version=1)
        with pytest.raises(Conflict):
            records.update("accounts", account.id, {"name": "Second writer"}, version=1)
        with pytest.raises(ValidationFailed):
            records.update("accounts", account.id, {"name": "No version"}, version="2")
        stored = records.get("accounts", account.id)
        assert (stored["name"], stored.version) == ("First writer", 2)
        with pytest.raises(Conflict):
            records.delete("accounts", account.id, version=1)
        # An update that changes nothing keeps the version.
        assert (
            records.update("accounts", account.id, {"name": "First writer"}, version=2).version == 2
        )


def test_references_restrict_or_clear_on_delete(demo_app):
    with service_as(demo_app, ADMIN) as records:
        parent = records.create("accounts", {"name": "Parent"})
        child = records.create("accounts", {"name": "Child", "parent": parent.id})
        contact = records.create("contacts", {"last_name": "Kept", "account": child.id})
        activity = records.create(
            "activities",
            {"subject": "Call", "related_to": {"object": "accounts", "id": parent.id}},
        )
        with pytest.raises(Conflict) as blocked:
            records.delete("accounts", child.id)  # contacts.account restricts
        assert "1 contacts refer to this account" in blocked.value.message
        assert records.get("accounts", child.id)["name"] == "Child"
        records.delete("accounts", parent.id)  # accounts.parent clears
        assert records.get("accounts", child.id)["parent"] is None
        assert records.get("accounts", child.id).version == 2
        assert records.get("activities", activity.id)["related_to"] is None
        assert records.get("contacts", contact.id)["account"] == child.id


def test_keyset_pages_visit_every_record_once_with_nulls_and_ties(demo_app):
    with service_as(demo_app, ADMIN) as records, records.atomic():
        for index in range(23):
            city = None if index % 4 == 0 else f"City {index % 3}"
            records.create("accounts", {"name": f"A{index:02}", "city": city})
    for sort in ("city", "-city", "city,-name", "-id", "name"):
        with service_as(demo_app, ADMIN) as records:
            seen, cursor = [], None
            while True:
                page = records.query("accounts", sort=sort, limit=5, cursor=cursor)
                seen.extend(r["name"] for r in page.records)
                cursor = page.next_cursor
                if cursor is None:
                    break
            everything = records.query("accounts", sort=sort, limit=100).records
            assert seen == [r["name"] for r in everything], sort
            assert len(seen) == 23
    with service_as(demo_app, ADMIN) as records, pytest.raises(BadQuery):
        records.query("accounts", sort="city", cursor=page.next_cursor or "garbage")


def test_filters(demo_app):
    with service_as(demo_app, ADMIN) as records:
        bank = records.create("accounts", {"name": "Bank of Zoë", "industry": "Banking"})
        records.create("accounts", {"name": "Shop", "industry": "Retail", "employees": 12})
        records.create("contacts", {"last_name": "Ångström", "account": bank.id, "email": "A@B.io"})

        def names(obj, *filters):
            return sorted(
                r.values.get("name") or r["last_name"]
                for r in records.query(obj, filters=list(filters)).records
            )

        assert names("accounts", Filter("name", "contains", "ZOË")) == ["Bank of Zoë"]
        assert names("accounts", Filter("industry", "in", "Banking,Retail")) == [
            "Bank of Zoë",
            "Shop",
        ]
        assert names("accounts", Filter("employees", "gte", "10")) == ["Shop"]
        assert names("accounts", Filter("employees", "empty", "true")) == ["Bank of Zoë"]
        assert names("accounts", Filter("industry", "ne", "Retail")) == ["Bank of Zoë"]
        assert names("contacts", Filter("account.industry", "eq", "Banking")) == ["Ångström"]
        assert names("contacts", Filter("email", "eq", "a@b.io")) == ["Ångström"]
        with pytest.raises(BadQuery):
            records.query("accounts", filters=[Filter("employees", "contains", "1")])
        with pytest.raises(BadQuery):
            records.query("accounts", filters=[Filter("nope", "eq", "1")])


def test_encrypted_values_are_ciphertext_bound_to_their_record(demo_app):
    with demo_app.test_request_context():
        definitions.add_field(
            "contacts",
            {"name": "national_id", "label": "National id", "type": "text", "encrypted": True},
        )
    with service_as(demo_app, ADMIN) as records:
        first = records.create("contacts", {"last_name": "One", "national_id": "AB-123"})
        second = records.create("contacts", {"last_name": "Two", "national_id": "CD-456"})
        assert records.get("contacts", first.id)["national_id"] == "AB-123"
        stored = db.session.execute(
            text("SELECT national_id FROM obj_contacts WHERE id = :id"), {"id": first.id}
        ).scalar()
        assert "AB-123" not in stored
        # Copied onto another record, the ciphertext no longer decrypts.
        db.session.execute(
            text("UPDATE obj_contacts SET national_id = :v WHERE id = :id"),
            {"v": stored, "id": second.id},
        )
        with pytest.raises(Exception):  # noqa: B017 - any decryption failure, never wrong data
            records.get("contacts", second.id)
        with pytest.raises(BadQuery):
            records.query("contacts", filters=[Filter("national_id", "eq", "AB-123")])


def test_unique_values_are_refused_with_the_field_named(demo_app):
    with demo_app.test_request_context():
        definitions.add_field(
            "accounts",
            {"name": "registry_code", "label": "Registry code", "type": "text", "unique": True},
        )
    with service_as(demo_app, ADMIN) as records:
        first = records.create("accounts", {"name": "A", "registry_code": "HRB 1"})
        second = records.create("accounts", {"name": "B", "registry_code": "HRB 2"})
        with pytest.raises(ValidationFailed) as taken:
            records.create("accounts", {"name": "C", "registry_code": "HRB 1"})
        assert set(taken.value.errors) == {"registry_code"}
        with pytest.raises(ValidationFailed):
            records.update("accounts", second.id, {"registry_code": "HRB 1"}, version=1)
        # Saving a record with its own value is not a clash.
        assert (
            records.update(
                "accounts", first.id, {"registry_code": "HRB 1", "name": "A2"}, version=1
            ).version
            == 2
        )
        assert records.count("accounts") == 2


def test_audit_entries_are_written_only_for_committed_changes(demo_app, caplog):
    caplog.set_level("INFO", logger="bastion.audit")
    with service_as(demo_app, ADMIN) as records:
        with pytest.raises(RuntimeError), records.atomic():
            records.create("accounts", {"name": "Rolled back"})
            raise RuntimeError("the import found a bad row")
        assert "record.create" not in caplog.text
        with records.atomic():
            kept = records.create("accounts", {"name": "Kept"})
            with pytest.raises(ValidationFailed), db.session.begin_nested():
                records.create("accounts", {"name": "In a savepoint"})
                raise ValidationFailed({"name": "refused after the write"})
        assert records.count("accounts") == 1
    entries = [r for r in caplog.records if getattr(r, "action", "") == "record.create"]
    assert [e.object_id for e in entries] == [str(kept.id)]


def test_contains_folds_non_ascii_case_on_both_databases(demo_app):
    with service_as(demo_app, ADMIN) as records:
        records.create("accounts", {"name": "ÄRGER Straße GmbH"})
        for probe in ("ärger", "ÄRGER", "straße"):
            found = records.query("accounts", filters=[Filter("name", "contains", probe)])
            assert [r["name"] for r in found.records] == ["ÄRGER Straße GmbH"], probe


def test_ids_of_deleted_records_are_never_reused(demo_app):
    with service_as(demo_app, ADMIN) as records:
        first = records.create("accounts", {"name": "First"})
        records.delete("accounts", first.id)
        assert records.create("accounts", {"name": "Second"}).id != first.id
