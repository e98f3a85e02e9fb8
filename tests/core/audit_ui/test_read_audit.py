"""Read audit: every view of records of an object marked sensitive leaves an entry."""

from __future__ import annotations

import pytest

from bastion.search import drain_now
from tests.core.audit_ui.support import changes_of, entries
from tests.core.data.conftest import ADMIN, AIKO, bearer, client_as, user_id
from tests.core.data.ui_support import HTMX, create, page, post

READS = ("record.view", "record.list")


def reads(app) -> list:
    return [e for e in entries(app) if e.action in READS]


@pytest.fixture
def sensitive(demo_app):
    """Contacts marked sensitive by an administrator on the object's page."""
    admin = client_as(demo_app, ADMIN)
    form = page(admin.get("/admin/objects/contacts"))
    assert not form.find("input", name="sensitive").get("checked")
    response = post(
        admin,
        "/admin/objects/contacts",
        {"label": "Contact", "label_plural": "Contacts", "sensitive": "on"},
    )
    assert response.status_code == 302
    return demo_app


def test_marking_an_object_sensitive_is_audited(sensitive):
    (change,) = entries(sensitive, "schema.object_update", object_type="contacts")
    assert changes_of(change)["sensitive"] == {"before": "false", "after": "true"}
    assert change.actor_user_id == user_id(sensitive, ADMIN)


def test_a_detail_page_and_an_api_read_are_audited(sensitive):
    contact = create(sensitive, ADMIN, "contacts", {"last_name": "Sensitive"})
    account = create(sensitive, ADMIN, "accounts", {"name": "Plain account"})
    before = len(reads(sensitive))

    auditor = client_as(sensitive, AIKO)
    assert auditor.get(f"/o/contacts/{contact}").status_code == 200
    assert auditor.get(f"/o/accounts/{account}").status_code == 200  # not sensitive
    (view,) = reads(sensitive)[before:]
    assert (view.action, view.object_type, view.object_id) == (
        "record.view",
        "contacts",
        str(contact),
    )
    assert view.actor_user_id == user_id(sensitive, AIKO)
    assert changes_of(view) == {"via": "page"}

    api = sensitive.test_client()
    headers = bearer(sensitive, AIKO)
    assert api.get(f"/api/v1/contacts/{contact}", headers=headers).status_code == 200
    assert api.get(f"/api/v1/accounts/{account}", headers=headers).status_code == 200
    views = [e for e in reads(sensitive)[before + 1 :] if e.action == "record.view"]
    assert [(e.object_id, changes_of(e)["via"]) for e in views] == [(str(contact), "api")]
    assert views[0].token_id is not None

    # A read that is refused (out of scope, or missing) is not a view.
    count = len(reads(sensitive))
    assert api.get("/api/v1/contacts/999999", headers=headers).status_code == 404
    assert len(reads(sensitive)) == count


def test_lists_search_and_lookups_record_one_entry_naming_the_ids(sensitive):
    ids = [create(sensitive, ADMIN, "contacts", {"last_name": f"Listed {n}"}) for n in range(3)]
    create(sensitive, ADMIN, "accounts", {"name": "Listed account"})
    before = len(reads(sensitive))
    auditor = client_as(sensitive, AIKO)

    assert auditor.get("/o/contacts").status_code == 200
    assert auditor.get("/o/accounts").status_code == 200
    (listed,) = reads(sensitive)[before:]
    assert listed.action == "record.list" and listed.object_type == "contacts"
    assert listed.object_id is None
    assert sorted(changes_of(listed)["ids"]) == sorted(ids)

    api = sensitive.test_client()
    response = api.get("/api/v1/contacts?limit=2", headers=bearer(sensitive, AIKO))
    shown = [item["id"] for item in response.get_json()["data"]]
    (api_list,) = reads(sensitive)[before + 1 :]
    assert changes_of(api_list) == {"ids": shown, "via": "api"}

    # "Load more" pages are lists too.
    more = auditor.get(
        "/o/contacts?limit=1&partial=rows&cursor=" + response.get_json()["next"], headers=HTMX
    )
    assert more.status_code == 200
    assert reads(sensitive)[-1].action == "record.list"

    count = len(reads(sensitive))
    lookup = auditor.get("/o/contacts/lookup?q=Listed&format=json").get_json()
    (entry,) = reads(sensitive)[count:]
    assert changes_of(entry) == {"ids": [o["id"] for o in lookup["data"]], "via": "lookup"}

    drain_now(sensitive)
    count = len(reads(sensitive))
    found = auditor.get("/api/v1/search?q=listed").get_json()["data"]
    hits = [hit["id"] for hit in found if hit["object"] == "contacts"]
    assert sorted(hits) == sorted(ids)
    (entry,) = reads(sensitive)[count:]  # accounts are not sensitive
    assert changes_of(entry) == {"ids": hits, "via": "search"}

    # An empty list shows nothing: nothing to record.
    count = len(reads(sensitive))
    assert auditor.get("/o/contacts?last_name=Nobody").status_code == 200
    assert len(reads(sensitive)) == count


def test_nothing_is_recorded_for_objects_that_are_not_sensitive(demo_app):
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Ordinary"})
    client = client_as(demo_app, AIKO)
    assert client.get(f"/o/contacts/{contact}").status_code == 200
    assert client.get("/o/contacts").status_code == 200
    assert client.get(f"/o/contacts/{contact}/history").status_code == 200
    api = demo_app.test_client()
    assert api.get(f"/api/v1/contacts/{contact}", headers=bearer(demo_app, AIKO)).status_code == 200
    assert reads(demo_app) == []


def test_the_history_of_a_sensitive_record_is_a_view(sensitive):
    contact = create(sensitive, ADMIN, "contacts", {"last_name": "Watched"})
    auditor = client_as(sensitive, AIKO)
    assert auditor.get(f"/o/contacts/{contact}/history").status_code == 200
    (view,) = [e for e in reads(sensitive) if e.object_id == str(contact)]
    assert changes_of(view) == {"via": "history"}
    # Views are in the audit trail, not in the record's history.
    items = page(auditor.get(f"/o/contacts/{contact}/history")).find_all("li", data_seq=True)
    assert [item["data-action"] for item in items] == ["record.create"]
    # Auditors get a link to the views of the record.
    tab = page(auditor.get(f"/o/contacts/{contact}")).find("a", id="tab-views")
    listed = auditor.get(tab["href"])
    assert len(page(listed).find_all("li", data_action="record.view")) == 3


def test_sensitive_records_in_another_records_page_are_a_list(sensitive):
    account = create(sensitive, ADMIN, "accounts", {"name": "Parent account"})
    ids = [
        create(sensitive, ADMIN, "contacts", {"last_name": f"Child {n}", "account": account})
        for n in range(2)
    ]
    before = len(reads(sensitive))
    auditor = client_as(sensitive, AIKO)
    assert auditor.get(f"/o/accounts/{account}").status_code == 200
    (entry,) = reads(sensitive)[before:]
    assert entry.action == "record.list" and entry.object_type == "contacts"
    assert sorted(changes_of(entry)["ids"]) == sorted(ids)
    assert changes_of(entry)["via"] == "related"


def test_the_edit_form_and_a_field_editor_are_views(sensitive):
    contact = create(sensitive, ADMIN, "contacts", {"last_name": "Sensitive"})
    admin = client_as(sensitive, ADMIN)
    before = len(reads(sensitive))
    assert admin.get(f"/o/contacts/{contact}/edit").status_code == 200
    assert admin.get(f"/o/contacts/{contact}/field/last_name", headers=HTMX).status_code == 200
    vias = [changes_of(e)["via"] for e in reads(sensitive)[before:]]
    assert vias == ["edit_form", "field"]
