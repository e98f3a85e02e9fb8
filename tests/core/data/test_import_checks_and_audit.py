"""What the fast paths of a large import must keep: the same e-mail and phone verdicts
as the libraries give, and an audit entry per written record (only written ones).

Emails and phones are checked once per distinct domain or number and remembered; the
audit entries of an import are queued per savepoint and written at each commit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from bastion.audit import buffer as audit_buffer
from bastion.data import importer
from bastion.data.catalog import FieldMeta
from bastion.data.errors import ValidationFailed
from bastion.data.values import FieldValueError, ValueContext, parse
from tests.core.data.conftest import ADMIN, service_as
from tests.core.data.ui_support import add_field

LONG_LOCAL = "l" * 243  # with "@example.com": 255 characters, one over the limit

ADDRESSES = [
    "Ada.Lovelace+crm@Example.COM",
    "INFO@example.org",
    "o'neil_{x}~=?^`|#$%&*/-@example.org",
    "ada@bücher.de",
    "ada@xn--bcher-kva.de",
    "l" * 65 + "@example.com",  # over 64 before the @: accepted when not strict
    LONG_LOCAL[:-1] + "@example.com",  # exactly 254
    LONG_LOCAL + "@example.com",  # example.com is known good by now: still too long
    "ada@localhost",
    "ada@exa_mple.com",
    "ada@@example.com",
    "a..b@example.com",
    ".ada@example.com",
    "ada.@example.com",
    "ada@example",
    "ada@x.test",
    "ada@-example.com",
    "ada@example..com",
    "ada lovelace@example.com",
    '"ada lovelace"@example.com',
    "Ada <ada@example.com>",
    "zoë@example.com",
    "ada\uff20example.com",  # the full-width at-sign
    "ada@example.com@example.com",
    "no-at-sign.example.com",
]


def _expected(text: str) -> str:
    """email-validator's own verdict, as the field reports it."""
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"Email: {exc}"


@pytest.mark.parametrize("text", ADDRESSES)
def test_emails_get_email_validators_verdict_through_the_record_service(demo_app, text):
    with service_as(demo_app, ADMIN) as records, records.atomic():
        # Twice: the second answer comes from what the first remembered.
        for attempt in range(2):
            try:
                created = records.create("contacts", {"last_name": "L", "email": text})
            except ValidationFailed as exc:
                assert exc.errors["email"] == _expected(text), attempt
            else:
                assert records.get("contacts", created.id)["email"] == _expected(text)
                records.delete("contacts", created.id)


def test_a_remembered_phone_answer_names_the_field_asked_about(demo_app):
    with service_as(demo_app, ADMIN) as records:
        with pytest.raises(ValidationFailed) as first:
            records.create("contacts", {"last_name": "L", "mobile": "12"})
        with pytest.raises(ValidationFailed) as second:
            records.create("contacts", {"last_name": "L", "phone": "12"})
        assert first.value.errors["mobile"].startswith("Mobile is not a phone number")
        assert second.value.errors["phone"].startswith("Phone is not a phone number")
        with pytest.raises(ValidationFailed) as short:
            records.create("contacts", {"last_name": "L", "phone": "+1 555"})
        assert short.value.errors["phone"] == (
            "Phone has the wrong number of digits for a phone number."
        )
        for _ in range(2):
            made = records.create("contacts", {"last_name": "L", "phone": "+44 20 7946 0958"})
            assert made["phone"] == "+442079460958"


def test_a_remembered_phone_answer_depends_on_the_region():
    phone = FieldMeta("phone", "phone", "Phone")
    national = "020 7946 0958"
    assert parse(phone, national, ValueContext(phone_region="GB")) == "+442079460958"
    with pytest.raises(FieldValueError, match="country code"):
        parse(phone, national, ValueContext())
    assert parse(phone, national, ValueContext(phone_region="GB")) == "+442079460958"


# --------------------------------------------------------------------------- audit


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _created(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "record.create"]


def _ids(app) -> list[int]:
    with service_as(app, None) as records:
        return sorted(record.id for record in records.iterate("contacts"))


def test_every_imported_record_has_its_audit_entry_with_its_values(
    demo_app, cli, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)  # several batches, each committed
    caplog.set_level(logging.INFO, logger="bastion.audit")
    rows = [f"Person {n},P{n}@Example.org" for n in range(5)]
    rows.insert(2, "Bad,bad@")
    text = "last_name,email\n" + "\n".join(rows) + "\n"
    result = cli("import", "contacts", _write(tmp_path, text), "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "5 created" in result.output and "line 4: column email" in result.output
    entries = _created(caplog)
    assert sorted(int(entry.object_id) for entry in entries) == _ids(demo_app)
    by_name = {entry.changes["last_name"]["after"]: entry for entry in entries}
    assert sorted(by_name) == [f"Person {n}" for n in range(5)]
    assert by_name["Person 3"].changes["email"] == {"before": None, "after": "p3@example.org"}
    assert by_name["Person 3"].object_type == "contacts"


def test_rolled_back_rows_leave_no_audit_entry(demo_app, cli, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(importer, "BATCH_ROWS", 3)
    add_field(
        demo_app,
        "contacts",
        {"name": "customer_no", "label": "Customer no", "type": "text", "unique": True},
    )
    caplog.set_level(logging.INFO, logger="bastion.audit")
    bad = _write(tmp_path, "last_name,email\nA,a@example.org\nB,b@\nC,c@example.org\n")
    for options in ((), ("--dry-run",), ("--dry-run", "--skip-bad-rows")):
        result = cli("import", "contacts", bad, *options)
        assert result.exit_code == 1, result.output
    assert _created(caplog) == [] and _ids(demo_app) == []
    # Rows 3 and 5 repeat a unique value: their batches are undone and written again row
    # by row; only the rows finally written are audited, each once.
    taken = "last_name,customer_no\nA,C-1\nB,C-1\nC,C-2\nD,C-3\nE,C-3\nF,C-4\n"
    result = cli("import", "contacts", _write(tmp_path, taken), "--skip-bad-rows")
    assert result.exit_code == 0 and "4 created" in result.output, result.output
    entries = _created(caplog)
    assert sorted(int(entry.object_id) for entry in entries) == _ids(demo_app)
    assert sorted(entry.changes["last_name"]["after"] for entry in entries) == list("ACDF")
    caplog.clear()
    result = cli("import", "contacts", _write(tmp_path, "last_name,customer_no\nG,C-1\n"))
    assert result.exit_code == 1 and _created(caplog) == []  # all or nothing: refused


def test_serialized_entries_are_written_and_dropped_like_the_others(
    demo_app, cli, tmp_path, caplog, monkeypatch
):
    # Past COMPACT_AFTER waiting entries are kept as JSON text: force it at once.
    monkeypatch.setattr(audit_buffer, "COMPACT_AFTER", 1)
    monkeypatch.setattr(importer, "BATCH_ROWS", 3)
    add_field(
        demo_app,
        "contacts",
        {"name": "customer_no", "label": "Customer no", "type": "text", "unique": True},
    )
    caplog.set_level(logging.INFO, logger="bastion.audit")
    text = "last_name,email,customer_no\n" + "".join(
        f"P{n},p{n}@example.org,C-{n}\n" for n in range(7)
    )
    result = cli("import", "contacts", _write(tmp_path, text))  # all or nothing
    assert result.exit_code == 0 and "7 created" in result.output, result.output
    entries = _created(caplog)
    assert sorted(int(entry.object_id) for entry in entries) == _ids(demo_app)
    first = next(entry for entry in entries if entry.changes["last_name"]["after"] == "P0")
    assert first.changes["email"] == {"before": None, "after": "p0@example.org"}
    assert first.changes["customer_no"] == {"before": None, "after": "C-0"}
    caplog.clear()
    # A batch undone after its entries were serialized leaves none of them behind.
    again = "last_name,customer_no\nQ,C-100\nR,C-0\nS,C-101\nT,C-102\n"
    result = cli("import", "contacts", _write(tmp_path, again), "--skip-bad-rows")
    assert result.exit_code == 0 and "3 created" in result.output, result.output
    assert sorted(e.changes["last_name"]["after"] for e in _created(caplog)) == list("QST")


@pytest.mark.parametrize("change", ["disable", "remove_role"])
def test_a_user_losing_access_mid_import_is_refused_from_the_next_batch(
    demo_app, monkeypatch, change
):
    """Each batch of a skip-bad-rows import commits; the next one asks authz afresh."""
    from sqlalchemy import delete, update

    from bastion.data.errors import Forbidden
    from bastion.db import db
    from bastion.models import User, user_roles
    from tests.core.data.conftest import MARIA, user_id

    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    maria = user_id(demo_app, MARIA)
    data = "last_name\n" + "".join(f"Batch{n}\n" for n in range(6))

    def revoke(done: int, _total: int) -> None:
        if done != 2:
            return
        # Another administrator, on another connection, while the job runs.
        with db.engine.begin() as connection:
            if change == "disable":
                connection.execute(update(User).where(User.id == maria).values(active=False))
            else:
                connection.execute(delete(user_roles).where(user_roles.c.user_id == maria))

    with service_as(demo_app, MARIA) as records:
        options = importer.ImportOptions(skip_bad_rows=True)
        with pytest.raises(Forbidden):
            importer.run_import(records, "contacts", data.encode(), options, progress=revoke)
    with service_as(demo_app, None) as system:
        names = {r["last_name"] for r in system.query("contacts", limit=500).records}
    assert {"Batch0", "Batch1"} <= names  # the first batch was committed before the change
    assert not {"Batch2", "Batch3", "Batch4", "Batch5"} & names
