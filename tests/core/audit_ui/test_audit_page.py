"""The audit trail page: who may open it, each filter, keyset paging, exports."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import ADMIN_EMAIL, sign_in
from tests.core.audit_ui.support import (
    HTMX,
    changes_of,
    entries,
    every_shown,
    load_more,
    record_events,
    shown_seqs,
)
from tests.core.data.ui_support import page
from tests.core.identity.conftest import DEFAULT_PASSWORD, add_user

AUDITOR = "audrey.auditor@example.com"
REP = "rory.rep@example.com"


@pytest.fixture
def people(app) -> dict[str, int]:
    return {
        "auditor": add_user(app, AUDITOR, roles=["auditor"], name="Audrey Auditor"),
        "rep": add_user(app, REP, roles=["sales_rep"], name="Rory Rep"),
    }


def client_for(app, email: str, password: str = DEFAULT_PASSWORD):
    client = app.test_client()
    assert sign_in(client, email, password).status_code == 302
    return client


def test_the_page_needs_audit_view(app, people):
    rep = client_for(app, REP)
    assert rep.get("/admin/audit").status_code == 403
    assert rep.get("/admin/audit/export.csv").status_code == 403
    assert rep.get("/admin/audit?partial=rows", headers=HTMX).status_code == 403
    assert "/admin/audit" not in rep.get("/").get_data(as_text=True)

    auditor = client_for(app, AUDITOR)
    response = auditor.get("/admin/audit")
    assert response.status_code == 200
    doc = page(response)
    # The auditor reads the trail without the administration area: the menu has the page.
    assert doc.find("nav", id="site-nav").find("a", href="/admin/audit").text == "Audit trail"
    assert auditor.get("/admin/").status_code == 403
    actions = [li["data-action"] for li in doc.find_all("li", data_action=True)]
    assert actions[0] == "auth.sign_in"  # newest first: the auditor's own sign-in
    # The installation: the first administrator, each bundled plugin enabled, the schema.
    assert actions[-4:] == ["user.create", "plugin.enable", "plugin.enable", "schema.sync"]


def test_an_entry_shows_who_what_and_each_change(app, people):
    admin = client_for(app, ADMIN_EMAIL, "correct horse battery staple")
    with app.test_request_context():
        from bastion import audit

        audit.record(
            "role.change",
            actor=f"user:{people['auditor']}",
            object_type="role",
            object_id="auditor",
            changes={"label": {"before": "Auditor", "after": "Internal audit"}, "reason": "x"},
        )
        from bastion.db import db

        db.session.commit()
    doc = page(admin.get("/admin/audit?action=role.change"))
    (entry,) = doc.find_all("li", data_action="role.change")
    assert "Audrey Auditor" in entry.find("span", class_="audit-entry__actor").text
    assert entry.find("span", class_="audit-entry__object").text == "role #auditor"
    changes, details = entry.find_all("dl")
    assert changes.find("dt").text == "label"
    assert changes.find("dd").text == "Auditor → Internal audit"
    assert [dt.text for dt in details.find_all("dt")] == ["reason"]
    assert [dd.text for dd in details.find_all("dd")] == ["x"]


def test_each_filter_narrows(app, people):
    auditor = client_for(app, AUDITOR)
    client_for(app, REP)
    record_events(app, 2, "test.alpha", object_type="widget", object_id="7")
    record_events(app, 1, "test.beta", object_type="widget", object_id="8")
    every = entries(app)

    def shown(query: str) -> set[int]:
        pairs = dict(part.split("=", 1) for part in query.split("&"))
        return set(every_shown(auditor, "/admin/audit", **pairs))

    rep_entries = {e.seq for e in every if e.actor_user_id == people["rep"]}
    assert rep_entries and shown(f"user={REP.upper()}") == rep_entries  # email, any case
    assert shown("user=rory") == rep_entries  # part of the name
    assert shown(f"user=#{people['rep']}") == rep_entries  # "#id"
    assert shown("user=system") == {e.seq for e in every if e.actor == "system"}

    sign_ins = {e.seq for e in every if e.action == "auth.sign_in"}
    assert len(sign_ins) >= 2 and shown("action=auth.sign_in") == sign_ins
    tests = {e.seq for e in every if e.action.startswith("test.")}
    assert shown("action=test.") == tests == shown("action=test*")
    assert shown("action=test") == set()  # exact unless it ends with "." or "*"

    assert shown("object=widget") == tests
    assert shown("object=widget&record=7") == {
        e.seq for e in every if e.object_type == "widget" and e.object_id == "7"
    }
    assert shown("user=rory&action=auth.") == {
        e.seq for e in every if e.actor_user_id == people["rep"] and e.action.startswith("auth.")
    }


def test_the_time_range_includes_both_ends(app, people):
    auditor = client_for(app, AUDITOR)
    record_events(app, 5)
    every = entries(app)
    middle = every[len(every) // 2]

    def shown(query: dict[str, str]) -> set[int]:
        return set(every_shown(auditor, "/admin/audit", **query))

    assert shown({"from": middle.occurred_at}) == {
        e.seq for e in every if e.occurred_at >= middle.occurred_at
    }
    assert shown({"to": middle.occurred_at}) == {
        e.seq for e in every if e.occurred_at <= middle.occurred_at
    }
    day = middle.occurred_at[:10]
    assert shown({"from": day, "to": day}) == {e.seq for e in every if e.occurred_at[:10] == day}
    minute = middle.occurred_at[:16]  # "2026-12-05T03:40": the whole minute
    assert shown({"from": minute, "to": minute.replace("T", " ") + "Z"}) == {
        e.seq for e in every if e.occurred_at[:16] == minute
    }
    assert shown({"from": "2999-01-01"}) == set()
    assert shown({"to": "2000-01-01"}) == set()
    assert shown({"to": "9999-12-31"}) == {e.seq for e in every}


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"from": "yesterday"}, "from", "UTC date such as 2026-12-01"),
        ({"to": "2026-13-45"}, "to", "UTC date such as 2026-12-01"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "from", "after its end"),
        ({"user": "nobody-like-this"}, "user", "No user's name or email address contains"),
        ({"action": "drop table;"}, "action", "An action is a name"),
        ({"cursor": "12abc"}, "cursor", "page link is damaged"),
        ({"cursor": "9" * 30}, "cursor", "page link is damaged"),
        ({"cursor": "9" * 19}, "cursor", "page link is damaged"),
        ({"user": "#99999999999"}, "user", "No user has the id"),
    ],
)
def test_bad_filters_get_a_clear_message(app, people, query, field, words):
    auditor = client_for(app, AUDITOR)
    response = auditor.get("/admin/audit", query_string=query)
    assert response.status_code == 400
    doc = page(response)
    assert words in doc.find("div", id="audit-error").text
    assert not doc.find_all("li", data_seq=True)
    if field != "cursor":  # the form keeps what was typed
        value = query[field]
        assert doc.find("input", name=field)["value"] == value


def test_paging_shows_every_entry_exactly_once(app, people):
    auditor = client_for(app, AUDITOR)
    record_events(app, 130)
    expected = [e.seq for e in reversed(entries(app))]
    seen: list[int] = []
    response = auditor.get("/admin/audit")
    pages = 0
    while True:
        pages += 1
        seen.extend(shown_seqs(response))
        following = load_more(response)
        if following is None:
            break
        response = auditor.get(following)  # without JavaScript: the link opens a page
        assert response.status_code == 200
    assert pages == -(-len(expected) // 50)
    # Entries written while paging (none here) would appear on top, never shift pages.
    assert seen == expected[: len(seen)] and sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))


def test_load_more_with_htmx_returns_the_next_items_only(app, people):
    auditor = client_for(app, AUDITOR)
    record_events(app, 60, "test.paging")
    first = auditor.get("/admin/audit?action=test.paging")
    following = load_more(first)
    assert following and "action=test.paging" in following
    more = auditor.get(following + "&partial=rows", headers=HTMX)
    assert more.status_code == 200
    html = more.get_data(as_text=True)
    assert "<html" not in html
    seqs = shown_seqs(first) + shown_seqs(more)
    assert sorted(seqs, reverse=True) == seqs and len(seqs) == 60
    assert load_more(more) is None


def test_exports_hold_the_filtered_entries_and_are_audited(app, people):
    auditor = client_for(app, AUDITOR)
    record_events(app, 3, "test.export", object_type="widget", object_id="1")
    record_events(app, 2, "test.other")
    wanted = [e for e in reversed(entries(app)) if e.action == "test.export"]

    response = auditor.get("/admin/audit/export.csv?action=test.export")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(row["seq"]) for row in rows] == [e.seq for e in wanted]
    assert rows[0]["hash"] == wanted[0].hash and rows[0]["object_id"] == "1"
    assert json.loads(rows[0]["changes"]) == {"n": 2}

    exported = entries(app, "audit.export")
    assert len(exported) == 1
    assert exported[0].actor_user_id == people["auditor"]
    assert changes_of(exported[0]) == {"format": "csv", "filters": {"action": "test.export"}}

    response = auditor.get("/admin/audit/export.json?action=test.&object=widget")
    assert response.status_code == 200 and response.mimetype == "application/json"
    data = json.loads(response.get_data(as_text=True))
    assert [item["seq"] for item in data] == [e.seq for e in wanted]
    assert data[-1]["changes"] == {"n": 0} and data[-1]["prev_hash"] == wanted[-1].prev_hash
    last = entries(app, "audit.export")[-1]
    assert changes_of(last)["filters"] == {"action": "test.", "object": "widget"}


def test_a_csv_export_escapes_formulas(app, people):
    auditor = client_for(app, AUDITOR)
    record_events(app, 1, "test.formula", object_type="widget", object_id="=cmd|' /C calc'!A0")
    response = auditor.get("/admin/audit/export.csv?action=test.formula")
    (row,) = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert row["object_id"] == "'=cmd|' /C calc'!A0"


def test_an_export_with_a_bad_filter_is_refused_and_not_audited(app, people):
    auditor = client_for(app, AUDITOR)
    response = auditor.get("/admin/audit/export.json?from=soon")
    assert response.status_code == 400
    assert "UTC date" in page(response).find("div", id="audit-error").text
    assert entries(app, "audit.export") == []


def test_the_menu_marks_the_audit_trail_as_the_current_page(app, people):
    admin = client_for(app, ADMIN_EMAIL, "correct horse battery staple")
    nav = page(admin.get("/admin/audit")).find("nav", id="site-nav")
    current = [a.text for a in nav.find_all("a", aria_current="page")]
    assert current == ["Audit trail"]
    nav = page(admin.get("/admin/")).find("nav", id="site-nav")
    assert [a.text for a in nav.find_all("a", aria_current="page")] == ["Administration"]
    assert page(admin.get("/admin/")).find("a", href="/admin/audit")


def test_a_control_character_in_a_filter_is_refused_not_a_server_error(app, people):
    auditor = client_for(app, AUDITOR)
    for query in ({"object": "a\x00b"}, {"record": "1\x00"}, {"user": "a\x00b"}):
        response = auditor.get("/admin/audit", query_string=query)
        assert response.status_code == 400
        assert "control characters" in page(response).find("div", id="audit-error").text
        assert auditor.get("/admin/audit/export.csv", query_string=query).status_code == 400


def test_exports_leave_out_values_of_fields_encrypted_since(app, people):
    from bastion.data import definitions
    from bastion.data.catalog import forget_catalog
    from bastion.keys import fields as key_fields
    from tests.core.data.conftest import service_as

    with app.test_request_context():
        definitions.add_field("contacts", {"name": "passport", "label": "Passport", "type": "text"})
    with service_as(app, None) as records:
        records.create("contacts", {"last_name": "Lovelace", "passport": "CANARY-P-77"})
    with app.test_request_context():
        definitions.update_field("contacts", "passport", {"encrypted": True})
        forget_catalog()
    key_fields.wait_for_background(app)

    auditor = client_for(app, AUDITOR)
    for path in ("/admin/audit/export.csv", "/admin/audit/export.json"):
        response = auditor.get(path, query_string={"action": "record.create"})
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "Lovelace" in body
        assert "CANARY-P-77" not in body and "encrypted value changed" in body
