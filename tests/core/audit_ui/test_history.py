"""The History tab of a record and GET /api/v1/<object>/<id>/history."""

from __future__ import annotations

from flask import g

from bastion import audit
from bastion.data.listeners import ENCRYPTED_MARK
from bastion.db import db
from tests.core.data.conftest import ADMIN, MARK, SAM, bearer, client_as, service_as, user_id
from tests.core.data.ui_support import HTMX, add_field, field_rule, page


def update(app, email: str, object_name: str, record_id: int, values: dict) -> None:
    """An update through the service as ``email``, audited as theirs (as in a request)."""
    with service_as(app, email) as records:
        g._login_user = records.user
        current = records.get(object_name, record_id)
        records.update(object_name, record_id, values, version=current.version)


def create(app, email: str, object_name: str, values: dict) -> int:
    """A record created through the service as ``email``, audited as theirs."""
    with service_as(app, email) as records:
        g._login_user = records.user
        return records.create(object_name, values).id


def history_items(response) -> list:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return page(response).find_all("li", data_seq=True)


def changes(item) -> dict[str, str]:
    """Label -> "before → after" text of one history item."""
    return {
        dt.text: dd.text for dt, dd in zip(item.find_all("dt"), item.find_all("dd"), strict=True)
    }


def test_history_lists_changes_newest_first_with_labels(demo_app):
    sam = user_id(demo_app, SAM)
    contact = create(
        demo_app, ADMIN, "contacts", {"last_name": "Lovelace", "email": "ada@example.com"}
    )
    update(demo_app, ADMIN, "contacts", contact, {"title": "Countess", "owner": sam})
    update(demo_app, SAM, "contacts", contact, {"email": "ada@lovelace.example"})
    client = client_as(demo_app, ADMIN)

    detail = page(client.get(f"/o/contacts/{contact}"))
    tab = detail.find("a", id="tab-history")
    assert tab["href"] == f"/o/contacts/{contact}/history"
    doc = client.get(tab["href"])
    items = history_items(doc)
    assert [item["data-action"] for item in items] == [
        "record.update",
        "record.update",
        "record.create",
    ]
    newest, middle, created = items
    assert "Sam Sales" in newest.find("span", class_="history__actor").text
    assert changes(newest) == {"Email": "ada@example.com → ada@lovelace.example"}
    assert changes(middle) == {"Owner": "Administrator → Sam Sales", "Title": "— → Countess"}
    assert "Administrator" in created.find("span", class_="history__actor").text
    assert changes(created)["Last name"] == "— → Lovelace"
    assert page(doc).find("a", id="tab-history")["aria-current"] == "page"


def test_history_hides_fields_the_reader_may_not_read(demo_app):
    sam = user_id(demo_app, SAM)
    contact = create(
        demo_app, ADMIN, "contacts", {"last_name": "Hopper", "phone": "+441234567890", "owner": sam}
    )
    update(demo_app, ADMIN, "contacts", contact, {"phone": "+441234567891", "title": "Admiral"})
    update(demo_app, ADMIN, "contacts", contact, {"phone": "+441234567892"})
    field_rule(demo_app, "sales_rep", "contacts", "phone", "hidden")

    admin_items = history_items(client_as(demo_app, ADMIN).get(f"/o/contacts/{contact}/history"))
    assert len(admin_items) == 3
    assert "Phone" in changes(admin_items[0])

    sam_client = client_as(demo_app, SAM)
    items = history_items(sam_client.get(f"/o/contacts/{contact}/history"))
    # The update of the phone alone is not listed; the other one shows only the title.
    assert [item["data-action"] for item in items] == ["record.update", "record.create"]
    assert changes(items[0]) == {"Title": "— → Admiral"}
    assert "Phone" not in changes(items[1])
    html = sam_client.get(f"/o/contacts/{contact}/history").get_data(as_text=True)
    assert "441234567" not in html and "phone" not in html.lower()

    body = sam_client.get(f"/api/v1/contacts/{contact}/history").get_json()
    fields = [change["field"] for item in body["data"] for change in item["changes"]]
    assert "phone" not in fields and "title" in fields


def test_history_of_an_encrypted_field_says_only_that_it_changed(demo_app):
    add_field(demo_app, "contacts", {"name": "national_id", "label": "National id", "type": "text"})
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Turing"})
    # As the record service writes it for an encrypted field: the mark, never a value.
    with demo_app.test_request_context():
        audit.record(
            "record.update",
            object_type="contacts",
            object_id=contact,
            changes={"national_id": ENCRYPTED_MARK},
        )
        db.session.commit()
    client = client_as(demo_app, ADMIN)
    (newest, _created) = history_items(client.get(f"/o/contacts/{contact}/history"))
    assert changes(newest) == {"National id": "changed (encrypted)"}
    body = client.get(f"/api/v1/contacts/{contact}/history").get_json()
    assert body["data"][0]["changes"] == [
        {"field": "national_id", "label": "National id", "encrypted": True}
    ]


def test_history_pages_with_load_more(demo_app):
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Counter", "title": "t0"})
    for number in range(1, 30):
        update(demo_app, ADMIN, "contacts", contact, {"title": f"t{number}"})
    client = client_as(demo_app, ADMIN)
    first = client.get(f"/o/contacts/{contact}/history")
    seqs = [int(item["data-seq"]) for item in history_items(first)]
    assert len(seqs) == 25
    more = page(first).find("a", id="history-load-more")["href"]
    fragment = client.get(more + "&partial=items", headers=HTMX)
    assert "<html" not in fragment.get_data(as_text=True)
    seqs += [int(item["data-seq"]) for item in history_items(fragment)]
    assert len(seqs) == 30 == len(set(seqs)) and seqs == sorted(seqs, reverse=True)
    assert not page(fragment).find_all("a", id="history-load-more")
    plain = client.get(more)  # without JavaScript: the whole page, the rest of the history
    assert [int(i["data-seq"]) for i in history_items(plain)] == seqs[25:]


def test_history_needs_read_access_to_the_record(demo_app):
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Private"})
    # Mark (marketing) reads contacts; Sam reaches only his team's records.
    assert client_as(demo_app, SAM).get(f"/o/contacts/{contact}/history").status_code == 404
    assert client_as(demo_app, MARK).get(f"/o/contacts/{contact}/history").status_code == 200
    api = demo_app.test_client()
    response = api.get(f"/api/v1/contacts/{contact}/history", headers=bearer(demo_app, SAM))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_api_history_pages_with_a_cursor(demo_app):
    sam = user_id(demo_app, SAM)
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Paged", "title": "a"})
    update(demo_app, ADMIN, "contacts", contact, {"title": "b", "owner": sam})
    update(demo_app, ADMIN, "contacts", contact, {"title": "c"})
    api = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    url = f"/api/v1/contacts/{contact}/history"
    seen, cursor = [], None
    while True:
        query = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        body = api.get(url, query_string=query, headers=headers).get_json()
        assert len(body["data"]) == 1
        seen.extend(body["data"])
        cursor = body["next"]
        if cursor is None:
            break
    assert [item["action"] for item in seen] == ["record.update", "record.update", "record.create"]
    assert seen[0]["changes"] == [{"field": "title", "label": "Title", "before": "b", "after": "c"}]
    owner = {c["field"]: c for c in seen[1]["changes"]}["owner"]
    assert owner["after"] == sam and owner["label"] == "Owner"
    actor = seen[0]["actor"]
    assert actor["kind"] == "user" and actor["name"] == "Administrator"
    assert actor["user_id"] == user_id(demo_app, ADMIN)

    for cursor in ("x1", "9" * 19, "1" * 30):
        bad = api.get(url, query_string={"cursor": cursor}, headers=headers)
        assert bad.status_code == 400 and bad.get_json()["field"] == "cursor"
    bad = api.get(url, query_string={"limit": "0"}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "limit"
    bad = api.get(url, query_string={"sort": "seq"}, headers=headers)
    assert bad.status_code == 400


def test_a_token_change_names_the_token(demo_app):
    contact = create(demo_app, ADMIN, "contacts", {"last_name": "Tokened"})
    api = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    version = api.get(f"/api/v1/contacts/{contact}", headers=headers).get_json()["version"]
    response = api.patch(
        f"/api/v1/contacts/{contact}", json={"version": version, "title": "x"}, headers=headers
    )
    assert response.status_code == 200
    body = api.get(f"/api/v1/contacts/{contact}/history", headers=headers).get_json()
    actor = body["data"][0]["actor"]
    assert actor["kind"] == "token" and actor["token_id"] is not None


def test_the_openapi_document_describes_history(demo_app):
    api = demo_app.test_client()
    document = api.get("/api/v1/openapi.json", headers=bearer(demo_app, ADMIN)).get_json()
    path = document["paths"]["/contacts/{id}/history"]
    assert path["get"]["operationId"] == "history_contacts"
    assert "HistoryEntry" in document["components"]["schemas"]
