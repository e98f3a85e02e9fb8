"""Global search: indexing from record events, permission filtering, page, API and CLI."""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from pathlib import Path

import pytest

from bastion.data.catalog import forget_catalog
from bastion.data.definitions import add_field, update_field
from bastion.search import drain_now, indexer_for, start_indexer, stop_indexers
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


def api_search(app, email: str, query: str, **params: str) -> dict:
    client = app.test_client()
    response = client.get(
        "/api/v1/search", query_string={"q": query, **params}, headers=bearer(app, email)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def found(app, email: str, query: str, object_name: str = "contacts") -> list[int]:
    data = api_search(app, email, query)["data"]
    return [hit["id"] for hit in data if hit["object"] == object_name]


def index_bytes(app) -> bytes:
    directory = Path(app.extensions["bastion"].settings.data_dir) / "search"
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def define(app, action, *args) -> None:
    with service_as(app, None):
        action(*args)
        forget_catalog()


# --------------------------------------------------------------------------- index updates


def test_create_update_delete_reach_the_index_after_a_drain(demo_app):
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Analytical Engines Ltd", "city": "Ely"})
        contact = records.create(
            "contacts",
            {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@engines.example"},
        )
    # Nothing is indexed on the request path: the outbox holds the work.
    assert found(demo_app, ADMIN, "lovelace") == []
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "lovelace") == [contact.id]
    assert found(demo_app, ADMIN, "lovel") == [contact.id]  # the last word is a prefix
    assert found(demo_app, ADMIN, "ada engines") == [contact.id]  # every word, any field
    assert found(demo_app, ADMIN, "engines", "accounts") == [account.id]
    assert found(demo_app, ADMIN, "lovelace babbage") == []

    with service_as(demo_app, ADMIN) as records:
        records.update("contacts", contact.id, {"last_name": "Byron"}, version=contact.version)
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "lovelace") == []
    assert found(demo_app, ADMIN, "byron") == [contact.id]

    with service_as(demo_app, ADMIN) as records:
        records.delete("contacts", contact.id)
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "byron") == []
    assert found(demo_app, ADMIN, "ada") == []
    with demo_app.app_context():
        assert indexer_for(demo_app).pending() == 0
        assert f"contacts:{contact.id}" not in set(indexer_for(demo_app).backend.keys("contacts"))


def test_a_custom_searchable_field_is_indexed(demo_app):
    define(
        demo_app,
        add_field,
        "contacts",
        {"name": "nickname", "label": "Nickname", "type": "text", "searchable": True},
    )
    with service_as(demo_app, ADMIN) as records:
        contact = records.create("contacts", {"last_name": "Smith", "nickname": "Quixotic"})
    drain_now(demo_app)
    data = api_search(demo_app, ADMIN, "quixotic")["data"]
    assert [(hit["object"], hit["id"], hit["field"]) for hit in data] == [
        ("contacts", contact.id, "nickname")
    ]
    assert data[0]["snippet"] == "<mark>Quixotic</mark>"
    assert data[0]["name"] == "Smith"


def test_a_field_made_searchable_later_is_indexed_and_unmade_leaves_the_disk(demo_app):
    define(demo_app, add_field, "contacts", {"name": "hobby", "label": "Hobby", "type": "text"})
    with service_as(demo_app, ADMIN) as records:
        contact = records.create("contacts", {"last_name": "Falconer", "hobby": "Gyrfalconry"})
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "gyrfalconry") == []
    assert b"gyrfalconry" not in index_bytes(demo_app)

    define(demo_app, update_field, "contacts", "hobby", {"searchable": True})
    drain_now(demo_app)  # the indexer re-indexes existing contacts for the new field
    assert found(demo_app, ADMIN, "gyrfalconry") == [contact.id]

    define(demo_app, update_field, "contacts", "hobby", {"searchable": False})
    assert found(demo_app, ADMIN, "gyrfalconry") == []  # at once, before any re-index
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "gyrfalconry") == []
    assert found(demo_app, ADMIN, "falconer") == [contact.id]
    assert b"gyrfalconry" not in index_bytes(demo_app)


def test_encrypted_values_never_reach_the_index(demo_app):
    define(
        demo_app,
        add_field,
        "contacts",
        {"name": "passport", "label": "Passport", "type": "text", "encrypted": True},
    )
    # A searchable formula over the encrypted field would carry its plaintext: skipped.
    define(
        demo_app,
        add_field,
        "contacts",
        {
            "name": "passport_echo",
            "label": "Passport echo",
            "type": "formula",
            "formula": "concat(passport, ' ', last_name)",
            "searchable": True,
        },
    )
    with service_as(demo_app, ADMIN) as records:
        contact = records.create(
            "contacts", {"last_name": "Plainsight", "passport": "Xq7Zebu9Passport"}
        )
        assert records.get("contacts", contact.id)["passport"] == "Xq7Zebu9Passport"
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "plainsight") == [contact.id]
    assert found(demo_app, ADMIN, "xq7zebu9passport") == []
    stored = index_bytes(demo_app)
    assert b"plainsight" in stored  # the index does hold searchable words ...
    assert b"xq7zebu9passport" not in stored.lower()  # ... never the encrypted value


# --------------------------------------------------------------------------- permissions


def test_no_hit_from_a_record_outside_the_users_scope(demo_app):
    maria, sam = user_id(demo_app, MARIA), user_id(demo_app, SAM)
    with service_as(demo_app, ADMIN) as records:
        mine = records.create("contacts", {"last_name": "Ocelot", "owner": sam})
        theirs = records.create("contacts", {"last_name": "Ocelot", "owner": maria})
    drain_now(demo_app)
    assert sorted(found(demo_app, ADMIN, "ocelot")) == sorted([mine.id, theirs.id])
    assert sorted(found(demo_app, MARIA, "ocelot")) == sorted([mine.id, theirs.id])
    assert found(demo_app, SAM, "ocelot") == [mine.id]
    # Counts only reach records in scope too, even beyond the hits returned.
    with service_as(demo_app, ADMIN) as records:
        for _ in range(3):
            records.create("contacts", {"last_name": "Ocelot", "owner": maria})
        extra = records.create("contacts", {"last_name": "Ocelot", "owner": sam})
    drain_now(demo_app)
    groups = api_search(demo_app, SAM, "ocelot", limit="1")["groups"]
    assert [(g["object"], g["total"], g["returned"]) for g in groups] == [("contacts", 2, 1)]
    with service_as(demo_app, ADMIN) as records:
        records.delete("contacts", extra.id)
    drain_now(demo_app)
    page = client_as(demo_app, SAM).get("/search?q=ocelot").get_data(as_text=True)
    assert f"/o/contacts/{mine.id}" in page
    assert f"/o/contacts/{theirs.id}" not in page

    # Moved out of Sam's scope, or deleted, a moment ago and not re-indexed yet: the
    # index still says Sam owns them, but the record service does not hand them out.
    with service_as(demo_app, ADMIN) as records:
        gone = records.create("contacts", {"last_name": "Ocelot", "owner": sam})
    drain_now(demo_app)
    assert sorted(found(demo_app, SAM, "ocelot")) == sorted([mine.id, gone.id])
    with service_as(demo_app, ADMIN) as records:
        records.update("contacts", mine.id, {"owner": maria}, version=mine.version)
        records.delete("contacts", gone.id)
    assert found(demo_app, SAM, "ocelot") == []
    drain_now(demo_app)
    assert found(demo_app, SAM, "ocelot") == []
    assert {mine.id, theirs.id} <= set(found(demo_app, MARIA, "ocelot"))


def test_no_hit_and_no_snippet_from_a_hidden_field(demo_app):
    sam = user_id(demo_app, SAM)
    with service_as(demo_app, ADMIN) as records:
        contact = records.create(
            "contacts",
            {"last_name": "Quagga", "title": "Chief Zebra Officer", "owner": sam},
        )
    set_field_access(demo_app, "sales_rep", "contacts", "title", "hidden")
    drain_now(demo_app)
    assert found(demo_app, ADMIN, "zebra") == [contact.id]
    assert found(demo_app, SAM, "zebra") == []  # the word is only in a hidden field
    result = api_search(demo_app, SAM, "quagga")
    assert [hit["id"] for hit in result["data"]] == [contact.id]
    assert result["data"][0]["field"] == "last_name"
    assert "Zebra" not in str(result) and "Officer" not in str(result)
    page = client_as(demo_app, SAM).get("/search?q=quagga officer").get_data(as_text=True)
    assert "Zebra" not in page and f"/o/contacts/{contact.id}" not in page
    page = client_as(demo_app, SAM).get("/search?q=quagga").get_data(as_text=True)
    assert f"/o/contacts/{contact.id}" in page and "Zebra" not in page
    # The administrator sees the title as the snippet.
    data = api_search(demo_app, ADMIN, "zebra")["data"]
    assert data[0]["field"] == "title"
    assert data[0]["snippet"] == "Chief <mark>Zebra</mark> Officer"


def test_a_token_searches_only_the_objects_its_scopes_name(demo_app):
    with service_as(demo_app, ADMIN) as records:
        records.create("accounts", {"name": "Wombat Banking"})
        records.create("contacts", {"last_name": "Wombat"})
    drain_now(demo_app)
    headers = bearer(demo_app, ADMIN, scopes=["accounts:read"])
    client = demo_app.test_client()
    data = client.get("/api/v1/search?q=wombat", headers=headers).get_json()["data"]
    assert {hit["object"] for hit in data} == {"accounts"}
    response = client.get("/api/v1/search?q=wombat&objects=contacts", headers=headers)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


# --------------------------------------------------------------------------- crash safety


def test_outbox_rows_left_by_a_crash_are_indexed_at_the_next_start(demo_app, monkeypatch):
    with service_as(demo_app, ADMIN) as records:
        contact = records.create("contacts", {"last_name": "Phoenix"})
    indexer = indexer_for(demo_app)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(indexer.backend, "index_documents", crash)
    with pytest.raises(OSError):
        drain_now(demo_app)
    monkeypatch.undo()
    with demo_app.app_context():
        assert indexer.pending() >= 1  # nothing was lost: the rows wait for the next start
    assert found(demo_app, ADMIN, "phoenix") == []

    # The next start of the server starts the background indexer, which replays them.
    try:
        assert start_indexer(demo_app)
        assert indexer.running
        wait_for(lambda: found(demo_app, ADMIN, "phoenix") == [contact.id])
        # Then a change made by a request is indexed as soon as the request ends.
        with service_as(demo_app, ADMIN) as records:
            other = records.create("contacts", {"last_name": "Firebird"})
        wait_for(lambda: found(demo_app, ADMIN, "firebird") == [other.id])
    finally:
        stop_indexers()
    assert not indexer.running


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_indexer_thread_runs_only_when_started(demo_app, monkeypatch):
    client_as(demo_app, ADMIN).get("/")
    assert not indexer_for(demo_app).running  # requests never start it (tests stay quiet)
    plat = demo_app.extensions["bastion"]
    monkeypatch.setattr(plat, "settings", dataclasses.replace(plat.settings, search_indexer="off"))
    assert not start_indexer(demo_app)
    assert not indexer_for(demo_app).running


def test_bastion_serve_starts_the_indexer(demo_app, cli, monkeypatch):
    import waitress

    seen = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: seen.append(indexer_for(app).running))
    try:
        result = cli("serve", "--port", "8999")
        assert result.exit_code == 0, result.output
        assert seen == [True]
    finally:
        stop_indexers()


# --------------------------------------------------------------------------- CLI


def test_reindex_rebuilds_from_scratch_and_status_counts(demo_app, cli):
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Rebuilt Robotics"})
        for number in range(3):
            records.create("contacts", {"last_name": f"Rebuild{number}", "title": "Engineer"})
    drain_now(demo_app)
    search_dir = Path(demo_app.extensions["bastion"].settings.data_dir) / "search"
    shutil.rmtree(search_dir / "index")
    assert found(demo_app, ADMIN, "robotics", "accounts") == []

    result = cli("search", "reindex")
    assert result.exit_code == 0, result.output
    assert "Indexing records" in result.output
    # The core's three objects and the sales plugin's searchable ones.
    assert re.search(
        r"Indexed \d+ records of \d+ objects \(accounts, activities, contacts,", result.output
    ), result.output
    assert found(demo_app, ADMIN, "robotics", "accounts") == [account.id]
    assert len(found(demo_app, ADMIN, "engineer")) == 3

    result = cli("search", "status")
    assert result.exit_code == 0, result.output
    assert "Waiting in the outbox: 0" in result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("contacts"))
    assert re.search(r"contacts\s+3 indexed\s+3 records", line), line

    result = cli("search", "reindex", "--object", "nonesuch")
    assert result.exit_code != 0 and "no object 'nonesuch'" in result.output


# --------------------------------------------------------------------------- pages and API


def test_header_box_and_results_page(demo_app):
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "<script>alert(1)</script> Evil Corp"})
        contact = records.create("contacts", {"first_name": "Eve", "last_name": "Evilson"})
    drain_now(demo_app)
    client = client_as(demo_app, ADMIN)
    home = client.get("/").get_data(as_text=True)
    assert re.search(r'<form class="site-search" method="get" action="/search"', home)
    assert 'name="q"' in home

    page = client.get("/search?q=evil")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'href="/o/accounts/{account.id}"' in html
    assert f'href="/o/contacts/{contact.id}"' in html
    assert 'id="results-accounts"' in html and 'id="results-contacts"' in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>Evil</mark> Corp" in html
    assert "<mark>Evilson</mark>" in html

    assert "No results" not in client.get("/search").get_data(as_text=True)
    empty = client.get("/search?q=nothingmatchesthis").get_data(as_text=True)
    assert 'id="search-empty"' in empty

    suggest = client.get("/search/suggest?q=evils").get_data(as_text=True)
    assert f'href="/o/contacts/{contact.id}"' in suggest and "/search?q=evils" in suggest
    assert client.get("/search/suggest?q=").get_data(as_text=True).strip() == ""

    more = client.get("/search?q=evil&objects=accounts&limit=1").get_data(as_text=True)
    assert f"/o/accounts/{account.id}" in more and f"/o/contacts/{contact.id}" not in more


def test_search_needs_a_signed_in_user(demo_app):
    client = demo_app.test_client()
    assert client.get("/api/v1/search?q=x").status_code == 401
    assert client.get("/search?q=x").status_code in (302, 303)


@pytest.mark.parametrize(
    "query, field",
    [
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("", "q"),
        ("q=" + "a" * 201, "q"),
        ("q=x&limit=0", "limit"),
        ("q=x&limit=51", "limit"),
        ("q=x&limit=ten", "limit"),
        ("q=x&objects=nonesuch", "objects"),
    ],
)
def test_bad_api_input_is_a_problem_naming_the_parameter(demo_app, query, field):
    response = demo_app.test_client().get(
        f"/api/v1/search?{query}", headers=bearer(demo_app, ADMIN)
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 400 and body["field"] == field and body["detail"]


def test_api_groups_and_limits(demo_app):
    with service_as(demo_app, ADMIN) as records:
        ids = [records.create("contacts", {"last_name": f"Kestrel {n}"}).id for n in range(4)]
        records.create("accounts", {"name": "Kestrel Air"})
    drain_now(demo_app)
    body = api_search(demo_app, ADMIN, "kestrel", limit="2")
    groups = {group["object"]: group for group in body["groups"]}
    assert groups["contacts"]["total"] == 4 and groups["contacts"]["returned"] == 2
    assert groups["contacts"]["exact"] is True
    assert groups["accounts"]["total"] == 1
    contacts = [hit for hit in body["data"] if hit["object"] == "contacts"]
    assert len(contacts) == 2 and {hit["id"] for hit in contacts} <= set(ids)
    assert all(hit["url"] == f"/o/contacts/{hit['id']}" for hit in contacts)
    only = api_search(demo_app, ADMIN, "kestrel", objects="accounts")
    assert {hit["object"] for hit in only["data"]} == {"accounts"}


def test_a_damaged_index_answers_503_not_500(demo_app, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("unreadable segment")

    monkeypatch.setattr(indexer_for(demo_app).backend, "search", broken)
    client = client_as(demo_app, ADMIN)
    response = client.get("/api/v1/search?q=anything")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    page = client.get("/search?q=anything")
    assert page.status_code == 503 and "not available" in page.get_data(as_text=True)
    assert client.get("/search/suggest?q=anything").get_data(as_text=True).strip() == ""


def test_applications_of_other_data_directories_have_their_own_index(demo_app, tmp_path):
    from bastion.app import create_app
    from bastion.config import load_settings

    other = create_app(load_settings(tmp_path / "other", environ={}), secret_key="x" * 64)
    mine, theirs = indexer_for(demo_app), indexer_for(other)
    assert mine is not theirs
    assert mine.directory != theirs.directory
    assert theirs.directory == (tmp_path / "other" / "search").resolve()
    assert indexer_for(demo_app) is mine  # one per data directory, reused
