"""CSV import and CSV/JSON export, through the CLI and HTTP, on the demo organization."""

from __future__ import annotations

import csv
import io
import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.data.models import ImportJob, ImportMapping
from bastion.data.values import Money
from bastion.db import db
from bastion.models import Role, RoleObjectRule
from tests.core.data.conftest import (
    ADMIN,
    MARIA,
    SAM,
    bearer,
    client_as,
    service_as,
    set_field_access,
    user_id,
)
from tests.core.data.ui_support import add_field, post
from tests.core.identity.test_reauth import age_authentication

# A file as a spreadsheet on Windows writes it: byte-order mark, CRLF, a quoted comma,
# a quoted line break (the row of line 3 ends on line 4), names beyond ASCII.
REAL_WORLD = (
    "\ufeffFirst name,last_name,Email,title,city\r\n"
    'Zoë,Ångström,zoe@example.com,"Head of Risk, EMEA",Łódź\r\n'
    'José,"Núñez\r\nGarcía",jose@example.com,CFO,São Paulo\r\n'
    "Ada,Lovelace,ada@example.com,Countess,London\r\n"
).encode()


def _write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def _contacts(app, email: str | None = None) -> list[dict]:
    with service_as(app, email) as records:
        return [
            {**record.values, "id": record.id, "version": record.version}
            for record in records.iterate("contacts")
        ]


def _grant(app, role: str, object_name: str, **flags: bool) -> None:
    with app.app_context():
        rule = db.session.scalar(
            select(RoleObjectRule)
            .join(Role, Role.id == RoleObjectRule.role_id)
            .where(Role.name == role, RoleObjectRule.object_name == object_name)
        )
        for key, value in flags.items():
            setattr(rule, f"can_{key}", value)
        db.session.commit()


def _audit(caplog, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


# --------------------------------------------------------------------------- CLI import


def test_cli_imports_a_real_world_file(demo_app, cli, tmp_path):
    result = cli("import", "contacts", _write(tmp_path, "people.csv", REAL_WORLD))
    assert result.exit_code == 0, result.output
    assert "3 created" in result.output
    by_email = {row["email"]: row for row in _contacts(demo_app)}
    assert by_email["zoe@example.com"]["first_name"] == "Zoë"
    assert by_email["zoe@example.com"]["last_name"] == "Ångström"
    assert by_email["zoe@example.com"]["title"] == "Head of Risk, EMEA"
    assert by_email["zoe@example.com"]["city"] == "Łódź"
    # A line break inside a one-line text field becomes a space (the field's rule).
    assert by_email["jose@example.com"]["last_name"] == "Núñez García"
    assert by_email["jose@example.com"]["city"] == "São Paulo"
    # Without --as, the first administrator owns what the system imports.
    assert {row["owner"] for row in by_email.values()} == {user_id(demo_app, ADMIN)}


def test_bad_rows_are_reported_by_line_and_nothing_is_written(demo_app, cli, tmp_path):
    text = (
        "first_name,last_name,email\r\n"
        "Ann,Good,ann@example.com\r\n"
        'Bob,"Bad\r\nEmail",not-an-email\r\n'  # starts on line 3, ends on 4
        "Cy,Good,cy@example.com\r\n"
        "Dee,,dee@example.com\r\n"  # line 6: no last name
    )
    result = cli("import", "contacts", _write(tmp_path, "bad.csv", text))
    assert result.exit_code == 1
    assert "Nothing was written" in result.output
    assert "line 3: column email:" in result.output
    assert "line 6: column last_name:" in result.output and "required" in result.output
    assert _contacts(demo_app) == []


def test_skip_bad_rows_writes_the_good_ones(demo_app, cli, tmp_path):
    text = "last_name,email\nGood,good@example.com\nBad,bad@\nAlso good,\n"
    result = cli("import", "contacts", _write(tmp_path, "f.csv", text), "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output and "line 3: column email" in result.output
    assert sorted(row["last_name"] for row in _contacts(demo_app)) == ["Also good", "Good"]


def test_dry_run_reports_and_writes_nothing(demo_app, cli, tmp_path):
    path = _write(tmp_path, "f.csv", "last_name,email\nOne,one@example.com\nTwo,two@\n")
    result = cli("import", "contacts", path, "--dry-run", "--skip-bad-rows")
    assert result.exit_code == 1  # the dry run found a bad row
    assert "Dry run of 2 rows: 1 created" in result.output and "line 3" in result.output
    assert _contacts(demo_app) == []
    clean = _write(tmp_path, "g.csv", "last_name,email\nOne,one@example.com\n")
    result = cli("import", "contacts", clean, "--dry-run")
    assert result.exit_code == 0 and "nothing was written" in result.output
    assert _contacts(demo_app) == []


def test_key_updates_existing_records_and_creates_the_others(demo_app, cli, tmp_path):
    with service_as(demo_app, ADMIN) as records:
        ada = records.create(
            "contacts", {"last_name": "Lovelace", "email": "ada@example.com", "title": "Miss"}
        )
        same = records.create(
            "contacts", {"last_name": "Same", "email": "same@example.com", "title": "Kept"}
        )
    text = (
        "email,last_name,title\n"
        "ADA@example.com,Lovelace,Countess\n"  # the key is compared as the field reads it
        "same@example.com,Same,\n"  # an empty cell changes nothing
        "new@example.com,New,Fresh\n"
        "new@example.com,New,Fresher\n"  # updates the record the previous row made
        "ada@example.com,,Lady\n"  # a second update of one record in one batch
    )
    result = cli("import", "contacts", _write(tmp_path, "k.csv", text), "--key", "email")
    assert result.exit_code == 0, result.output
    assert "1 created, 3 updated, 1 unchanged" in result.output
    rows = {row["email"]: row for row in _contacts(demo_app)}
    assert len(rows) == 3
    assert rows["ada@example.com"]["title"] == "Lady"
    assert rows["ada@example.com"]["version"] == ada.version + 2
    assert rows["same@example.com"]["title"] == "Kept"
    assert rows["same@example.com"]["version"] == same.version
    assert rows["new@example.com"]["title"] == "Fresher"


def test_a_key_matching_several_records_is_a_row_error(demo_app, cli, tmp_path):
    with service_as(demo_app, ADMIN) as records:
        for _ in range(2):
            records.create("contacts", {"last_name": "Twin", "title": "Same"})
    text = "last_name,title\nTwin,Changed\n"
    result = cli("import", "contacts", _write(tmp_path, "t.csv", text), "--key", "last_name")
    assert result.exit_code == 1
    assert "line 2: column last_name: 2 contacts have this last name" in result.output


def test_a_mapping_is_saved_by_name_and_reused(demo_app, cli, tmp_path):
    mapping = tmp_path / "crm.json"
    mapping.write_text(json.dumps({"Surname": "last_name", "E-mail": "email", "Notes": ""}))
    first = _write(tmp_path, "a.csv", "Surname,E-mail,Notes\nOne,one@example.com,x\n")
    result = cli(
        "import", "contacts", first, "--mapping", str(mapping), "--save-mapping", "Old CRM"
    )
    assert result.exit_code == 0, result.output
    assert "Ignored columns: Notes" in result.output
    with demo_app.app_context():
        saved = db.session.scalar(select(ImportMapping).where(ImportMapping.name == "Old CRM"))
        assert json.loads(saved.mapping) == {"Surname": "last_name", "E-mail": "email"}
    second = _write(tmp_path, "b.csv", "surname,e-mail\nTwo,two@example.com\n")
    result = cli("import", "contacts", second, "--mapping", "Old CRM")
    assert result.exit_code == 0, result.output
    assert sorted(row["email"] for row in _contacts(demo_app)) == [
        "one@example.com",
        "two@example.com",
    ]
    result = cli("import", "contacts", second, "--mapping", "Nope")
    assert result.exit_code != 0 and "Saved mappings: Old CRM" in result.output


def test_a_mapping_to_a_field_the_user_cannot_set_is_refused(demo_app, cli, tmp_path):
    path = _write(tmp_path, "f.csv", "Name,Made\nX,2020-01-01\n")
    mapping = _write(tmp_path, "m.json", json.dumps({"Name": "last_name", "Made": "created_at"}))
    result = cli("import", "contacts", path, "--mapping", mapping)
    assert result.exit_code == 1 and "which you cannot change" in result.output


def test_import_as_a_user_applies_their_permissions(demo_app, cli, tmp_path):
    path = _write(tmp_path, "f.csv", "last_name\nMine\n")
    refused = cli("import", "contacts", path, "--as", SAM)
    assert refused.exit_code == 1 and "You may not import contacts" in refused.output
    _grant(demo_app, "sales_rep", "contacts", **{"import": True})
    other = user_id(demo_app, ADMIN)
    owned = _write(tmp_path, "g.csv", f"last_name,owner\nMine,\nTheirs,{other}\n")
    result = cli("import", "contacts", owned, "--as", SAM, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "line 3: column owner: You may not create records for that owner." in result.output
    assert [(r["last_name"], r["owner"]) for r in _contacts(demo_app)] == [
        ("Mine", user_id(demo_app, SAM))
    ]


def test_duplicates_are_flagged_and_skipped_on_request(demo_app, cli, tmp_path):
    with service_as(demo_app, ADMIN) as records:
        known = records.create("contacts", {"last_name": "Known", "email": "known@example.com"})
    text = (
        "last_name,email\n"
        "Known again,KNOWN@example.com\n"
        "Fresh,fresh@example.com\n"
        "Fresh twin,fresh@example.com\n"
    )
    path = _write(tmp_path, "d.csv", text)
    result = cli("import", "contacts", path)
    assert result.exit_code == 0, result.output
    assert f"line 2: possible duplicate (same email) of record {known.id}" in result.output
    assert "line 4: possible duplicate (same email) of line 3" in result.output
    assert len(_contacts(demo_app)) == 4
    skipped = _write(tmp_path, "e.csv", "last_name,email\nAgain,known@example.com\nNew,n@x.org\n")
    result = cli("import", "contacts", skipped, "--skip-duplicates")
    assert "1 created" in result.output and "1 skipped" in result.output
    assert len(_contacts(demo_app)) == 5


def test_a_unique_value_taken_is_a_row_error(demo_app, cli, tmp_path):
    add_field(demo_app, "contacts", {"name": "badge", "label": "Badge", "type": "text"})
    add_field(
        demo_app,
        "contacts",
        {"name": "customer_no", "label": "Customer no", "type": "text", "unique": True},
    )
    with service_as(demo_app, ADMIN) as records:
        records.create("contacts", {"last_name": "Taken", "customer_no": "C-1"})
    text = "last_name,customer_no\nA,C-2\nB,C-1\nC,C-3\nD,C-3\n"
    path = _write(tmp_path, "u.csv", text)
    result = cli("import", "contacts", path)
    assert result.exit_code == 1
    assert "line 3: column customer_no: Customer no C-1 is already used" in result.output
    assert "line 5: column customer_no:" in result.output
    assert len(_contacts(demo_app)) == 1
    result = cli("import", "contacts", path, "--skip-bad-rows")
    assert result.exit_code == 0 and "2 created" in result.output
    assert sorted(r["customer_no"] for r in _contacts(demo_app)) == ["C-1", "C-2", "C-3"]


def test_files_that_cannot_be_imported_are_refused(demo_app, cli, tmp_path):
    result = cli("import", "contacts", _write(tmp_path, "e.csv", ""))
    assert result.exit_code == 1 and "empty" in result.output
    result = cli("import", "contacts", _write(tmp_path, "n.csv", "Foo,Bar\n1,2\n"))
    assert result.exit_code == 1 and "No column matches" in result.output
    result = cli("import", "nothing", _write(tmp_path, "x.csv", "a\n1\n"))
    assert result.exit_code == 1 and "no object" in result.output
    latin = "last_name;city\nMüller;Köln\n".encode("cp1252")
    result = cli("import", "contacts", _write(tmp_path, "l.csv", latin))
    assert result.exit_code == 0, result.output
    assert _contacts(demo_app)[0]["city"] == "Köln"


# --------------------------------------------------------------------------- export


@pytest.fixture
def exported(demo_app):
    """Contacts of the administrator and of Sam; export granted to sales reps."""
    _grant(demo_app, "sales_rep", "contacts", export=True)
    add_field(demo_app, "contacts", {"name": "loyalty_tier", "label": "Loyalty", "type": "text"})
    with service_as(demo_app, ADMIN) as records:
        admins = records.create(
            "contacts", {"last_name": "Boss", "email": "boss@example.com", "loyalty_tier": "=1+1"}
        )
        sams = records.create(
            "contacts",
            {
                "last_name": "Client",
                "first_name": "Zoë",
                "email": "client@example.com",
                "owner": user_id(demo_app, SAM),
                "loyalty_tier": "Gold",
            },
        )
    return admins.id, sams.id


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def test_web_export_holds_the_readable_fields_of_records_in_scope(demo_app, exported, caplog):
    _admins, sams = exported
    set_field_access(demo_app, "sales_rep", "contacts", "email", "hidden")
    sam = client_as(demo_app, SAM)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    response = sam.get("/o/contacts/export.csv")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = _csv_rows(body)
    assert [int(row["id"]) for row in rows] == [sams]
    assert "email" not in rows[0] and "client@example.com" not in body
    assert rows[0]["loyalty_tier"] == "Gold" and rows[0]["first_name"] == "Zoë"
    response = sam.get("/o/contacts/export.json")
    data = json.loads(response.get_data(as_text=True))
    assert [item["id"] for item in data] == [sams]
    assert "email" not in data[0] and data[0]["full_name"] == "Zoë Client"
    entries = _audit(caplog, "records.export")
    assert len(entries) == 2 and entries[0].changes["rows"] == 1
    assert entries[0].changes["format"] == "csv" and entries[0].actor.startswith("user:")
    assert "Gold" not in json.dumps(entries[0].changes)


def test_admin_export_takes_the_list_filters_and_escapes_formulas(demo_app, exported):
    admins, sams = exported
    admin = client_as(demo_app, ADMIN)
    body = admin.get("/o/contacts/export.csv?sort=-id").get_data(as_text=True)
    rows = _csv_rows(body)
    assert [int(row["id"]) for row in rows] == [sams, admins]
    assert rows[1]["loyalty_tier"] == "'=1+1"  # not a formula for a spreadsheet
    assert rows[1]["email"] == "boss@example.com"
    filtered = admin.get("/o/contacts/export.csv?loyalty_tier=Gold&fields=id,last_name")
    assert _csv_rows(filtered.get_data(as_text=True)) == [{"id": str(sams), "last_name": "Client"}]
    searched = admin.get("/o/contacts/export.json?q=boss")
    assert [item["id"] for item in json.loads(searched.get_data(as_text=True))] == [admins]
    bad = admin.get("/o/contacts/export.csv?nope=1")
    assert bad.status_code == 400 and b"nope" in bad.data


def test_export_needs_the_permission_and_a_recent_sign_in(demo_app, exported):
    maria = client_as(demo_app, MARIA)
    assert maria.get("/o/contacts/export.csv").status_code == 200
    _grant(demo_app, "sales_manager", "contacts", export=False)
    assert maria.get("/o/contacts/export.csv").status_code == 403
    assert maria.get("/o/contacts/export.json").status_code == 403
    api = demo_app.test_client()
    token = bearer(demo_app, MARIA)
    assert api.get("/api/v1/contacts/export", headers=token).status_code == 403
    admin = client_as(demo_app, ADMIN)
    age_authentication(demo_app, ADMIN)
    response = admin.get("/o/contacts/export.csv")
    assert response.status_code == 302 and "/account/reauth" in response.headers["Location"]


def test_api_export_with_a_token(demo_app, exported):
    admins, sams = exported
    api = demo_app.test_client()
    token = bearer(demo_app, SAM)
    response = api.get("/api/v1/contacts/export?format=csv", headers=token)
    assert response.status_code == 200
    assert [int(row["id"]) for row in _csv_rows(response.get_data(as_text=True))] == [sams]
    response = api.get("/api/v1/contacts/export", headers=bearer(demo_app, ADMIN))
    assert sorted(item["id"] for item in response.get_json()) == [admins, sams]
    response = api.get("/api/v1/contacts/export?format=xml", headers=token)
    assert response.status_code == 400 and response.get_json()["field"] == "format"
    scoped = bearer(demo_app, SAM, scopes=["contacts:read"])
    assert api.get("/api/v1/contacts/export", headers=scoped).status_code == 403


def test_cli_export_as_a_user_and_as_the_system(demo_app, exported, cli, tmp_path):
    admins, sams = exported
    set_field_access(demo_app, "sales_rep", "contacts", "email", "hidden")
    result = cli("export", "contacts", "--as", SAM)
    assert result.exit_code == 0, result.output
    rows = _csv_rows(result.stdout)
    assert [int(row["id"]) for row in rows] == [sams] and "email" not in rows[0]
    out = tmp_path / "all.json"
    result = cli("export", "contacts", "--format", "json", "--output", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(item["id"] for item in data) == [admins, sams]
    assert {item["loyalty_tier"] for item in data} == {"=1+1", "Gold"}
    result = cli("export", "contacts", "--where", "loyalty_tier=Gold", "--fields", "id")
    assert result.stdout.split() == ["id", str(sams)]
    _grant(demo_app, "sales_rep", "contacts", export=False)
    refused = cli("export", "contacts", "--as", SAM)
    assert refused.exit_code == 1 and "You may not export contacts" in refused.output


def test_csv_round_trip_keeps_values(demo_app, cli, tmp_path):
    add_field(
        demo_app,
        "accounts",
        {"name": "budget", "label": "Budget", "type": "currency", "currency": "EUR"},
    )
    add_field(demo_app, "accounts", {"name": "renewal", "label": "Renewal", "type": "date"})
    add_field(
        demo_app,
        "accounts",
        {
            "name": "tags",
            "label": "Tags",
            "type": "multi_picklist",
            "options": ["VIP", "Partner", "Public"],
        },
    )
    with service_as(demo_app, ADMIN) as records:
        records.create(
            "accounts",
            {
                "name": "Acme, Inc.",
                "budget": {"amount": "1234.50", "currency": "USD"},
                "renewal": "2027-02-28",
                "tags": ["VIP", "Public"],
                "annual_revenue": "-0.00",
                "phone": "+44 20 7946 0958",
                "description": "Two\nlines",
            },
        )
    out = tmp_path / "accounts.csv"
    assert cli("export", "accounts", "--output", str(out)).exit_code == 0
    # Imported again with --key id, nothing changes: every value reads back as it was.
    same = cli("import", "accounts", str(out), "--key", "id")
    assert same.exit_code == 0, same.output
    assert "0 created, 0 updated, 1 unchanged" in same.output
    # Imported as new records, the values are equal to the originals.
    fresh = cli("import", "accounts", str(out))
    assert fresh.exit_code == 0 and "1 created" in fresh.output
    with service_as(demo_app, ADMIN) as records:
        first, second = list(records.iterate("accounts"))
    for name in ("name", "budget", "renewal", "tags", "phone", "description", "annual_revenue"):
        assert first[name] == second[name], name
    assert second["budget"] == Money(Decimal("1234.50"), "USD")
    assert second["tags"] == ["VIP", "Public"]


# --------------------------------------------------------------------------- web import


def _upload(client, text: bytes, name: str = "people.csv", **fields):
    from tests.conftest import csrf_token

    token = csrf_token(client, "/o/contacts/import")
    data = {"csrf_token": token, "file": (io.BytesIO(text), name), **fields}
    return client.post("/o/contacts/import", data=data, content_type="multipart/form-data")


def _finish(client, response):
    from bastion.web.imports import wait_for_imports

    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    wait_for_imports()
    return client.get(response.headers["Location"])


def test_web_upload_map_and_report(demo_app, tmp_path):
    admin = client_as(demo_app, ADMIN)
    text = REAL_WORLD + b"Bad,Row,not-an-email,x,y\r\n"
    response = _upload(admin, text)
    assert response.status_code == 302
    page = admin.get(response.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Zoë" in html and 'value="first_name" selected' in html
    started = post(
        admin,
        response.headers["Location"].replace("/map", "/start"),
        {
            "column-0": "first_name",
            "column-1": "last_name",
            "column-2": "email",
            "column-3": "title",
            "column-4": "",
            "mode": "skip_bad_rows",
            "save_as": "Spreadsheet",
        },
    )
    report = _finish(admin, started)
    html = report.get_data(as_text=True)
    assert report.status_code == 200
    assert 'data-count="created">3<' in html
    assert 'data-line="6"' in html and "@-sign" in html
    assert "Ignored columns: city" in html
    assert sorted(row["email"] for row in _contacts(demo_app)) == [
        "ada@example.com",
        "jose@example.com",
        "zoe@example.com",
    ]
    with demo_app.app_context():
        job = db.session.scalar(select(ImportJob))
        assert (job.status, job.processed_rows, job.total_rows) == ("done", 4, 4)
        assert job.created_count == 3 and job.error_count == 1
        assert db.session.scalar(select(ImportMapping.name)) == "Spreadsheet"
    # The saved mapping is offered, and pre-fills the next file's columns.
    again = _upload(admin, b"First name,last_name\nNew,Person\n", mapping="Spreadsheet")
    assert 'value="first_name" selected' in admin.get(again.headers["Location"]).get_data(
        as_text=True
    )


def test_web_all_or_nothing_and_dry_run_write_nothing(demo_app):
    admin = client_as(demo_app, ADMIN)
    response = _upload(admin, b"last_name,email\nGood,good@example.com\nBad,bad@\n")
    url = response.headers["Location"].replace("/map", "/start")
    report = _finish(admin, post(admin, url, {"column-0": "last_name", "column-1": "email"}))
    html = report.get_data(as_text=True)
    assert "Nothing was imported" in html and 'data-line="3"' in html
    assert _contacts(demo_app) == []
    response = _upload(admin, b"last_name\nFine\n")
    url = response.headers["Location"].replace("/map", "/start")
    report = _finish(admin, post(admin, url, {"column-0": "last_name", "dry_run": "yes"}))
    assert "Dry run" in report.get_data(as_text=True)
    assert _contacts(demo_app) == []


def test_progress_page_polls_while_running_then_shows_the_report(demo_app):
    admin = client_as(demo_app, ADMIN)
    with demo_app.app_context():
        job = ImportJob(
            user_id=user_id(demo_app, ADMIN),
            object_name="contacts",
            file_name="big.csv",
            status="running",
            total_rows=20000,
            processed_rows=5000,
        )
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    page = admin.get(f"/imports/{job_id}")
    html = page.get_data(as_text=True)
    assert f'hx-get="/imports/{job_id}/progress"' in html and 'hx-trigger="every 1s"' in html
    assert '<progress max="20000" value="5000"' in html and "(25 %)" in html
    with demo_app.app_context():
        job = db.session.get(ImportJob, job_id)
        job.status = "done"
        job.report = json.dumps({"object": "contacts", "total": 20000, "created": 20000})
        db.session.commit()
    fragment = admin.get(f"/imports/{job_id}/progress", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "hx-trigger" not in html and 'data-count="created">20000<' in html
    # Another user's job is not there for them.
    assert client_as(demo_app, MARIA).get(f"/imports/{job_id}").status_code == 404


def test_web_import_needs_the_import_permission(demo_app):
    sam = client_as(demo_app, SAM)
    assert sam.get("/o/contacts/import").status_code == 403
    assert _upload(sam, b"last_name\nX\n").status_code == 403
    admin = client_as(demo_app, ADMIN)
    refused = _upload(admin, b"")
    assert refused.status_code == 422 and b"Choose a CSV file" in refused.data


def test_web_import_updates_by_id(demo_app):
    with service_as(demo_app, ADMIN) as records:
        contact = records.create("contacts", {"last_name": "Old", "title": "Before"})
    admin = client_as(demo_app, ADMIN)
    response = _upload(admin, f"id,title\n{contact.id},After\n".encode())
    url = response.headers["Location"].replace("/map", "/start")
    refused = post(admin, url, {"column-0": "id", "column-1": "title"})
    assert refused.status_code == 422 and "only to update records by their ID" in refused.text
    report = _finish(admin, post(admin, url, {"column-1": "title", "key_field": "id"}))
    assert 'data-count="updated">1<' in report.get_data(as_text=True)
    assert [(row["last_name"], row["title"]) for row in _contacts(demo_app)] == [("Old", "After")]
