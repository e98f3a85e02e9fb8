"""Detail pages: sections, related lists, the activity timeline and its quick form,
buttons by permission, delete with confirmation, and inline edit of one field."""

from __future__ import annotations

from tests.core.data.conftest import ADMIN, AIKO, SAM, client_as
from tests.core.data.ui_support import HTMX, create, names_in, page, post, stored


def test_detail_has_sections_related_lists_and_a_timeline(demo_app):
    account = create(
        demo_app, ADMIN, "accounts", {"name": "Acme Bank", "city": "Lyon", "employees": 1200}
    )
    contacts = [
        create(demo_app, ADMIN, "contacts", {"last_name": f"Person {n}", "account": account})
        for n in range(6)
    ]
    create(demo_app, ADMIN, "contacts", {"last_name": "Elsewhere"})
    first = create(
        demo_app,
        ADMIN,
        "activities",
        {"kind": "call", "subject": "First call", "related_to": f"accounts:{account}"},
    )
    create(
        demo_app,
        ADMIN,
        "activities",
        {"kind": "meeting", "subject": "Later meeting", "related_to": f"accounts:{account}"},
    )
    create(demo_app, ADMIN, "activities", {"subject": "Unrelated", "related_to": "contacts:1"})
    client = client_as(demo_app, ADMIN)
    detail = client.get(f"/o/accounts/{account}")
    assert detail.status_code == 200
    doc = page(detail)
    assert doc.find("h1", id="record-title").text == "Acme Bank"
    titles = [h2.text for h2 in doc.find_all("h2")]
    assert titles[:3] == ["Account", "Address", "Details"]
    assert "Owner and history" in titles
    assert doc.find("div", id="fact-employees").find("dd").text.startswith("1,200")

    related = doc.find("section", data_related="contacts.account")
    assert [a.text for a in related.find("ul").find_all("a")] == [
        f"Person {n}" for n in range(5, 0, -1)
    ]
    view_all = related.find_all("a")[-1]
    assert view_all.text == "View all 6"
    assert view_all["href"] == f"/o/contacts?account={account}"
    listed = client.get(view_all["href"])
    assert sorted(names_in(listed)) == sorted(f"Person {n}" for n in range(6))
    assert "Account is Acme Bank" in page(listed).find("ul", class_="filter-chips").text
    assert len(contacts) == 6

    timeline = doc.find("section", id="timeline")
    assert [li.find("a").text for li in timeline.find_all("li", class_="timeline__item")] == [
        "Later meeting",
        "First call",
    ]
    assert "Unrelated" not in timeline.text
    assert timeline.find("a")["href"] == f"/o/activities/{first + 1}"


def test_logging_an_activity_from_the_timeline(demo_app):
    account = create(demo_app, ADMIN, "accounts", {"name": "Acme Bank"})
    client = client_as(demo_app, ADMIN)
    url = f"/o/accounts/{account}/activities"
    done = post(client, url, {"kind": "call", "subject": "Called the CFO", "done": "true"})
    assert done.status_code == 303
    assert done.headers["Location"] == f"/o/accounts/{account}"
    timeline = page(client.get(f"/o/accounts/{account}")).find("section", id="timeline")
    assert "Called the CFO" in timeline.text and "Done" in timeline.text

    # htmx swaps just the timeline; a missing subject keeps the input and says why.
    refused = post(client, url, {"kind": "meeting", "subject": ""}, headers=HTMX)
    assert refused.status_code == 422
    fragment = page(refused)
    assert "<html" not in refused.get_data(as_text=True)
    subject = fragment.find("div", id="activity-subject-field")
    assert subject.find("p", class_="field-error").text == "Subject is required."
    kinds = fragment.find("select", name="kind").find_all("option")
    assert [o["value"] for o in kinds if "selected" in o.attrs] == ["meeting"]

    logged = post(client, url, {"kind": "note", "subject": "A note"}, headers=HTMX)
    assert logged.status_code == 200
    items = page(logged).find_all("li", class_="timeline__item")
    assert items[0].find("a").text == "A note"


def test_buttons_follow_permissions(demo_app):
    sams = create(demo_app, SAM, "accounts", {"name": "Sam's"})
    admin = page(client_as(demo_app, ADMIN).get(f"/o/accounts/{sams}"))
    assert admin.find_all("a", id="record-edit") and admin.find_all("a", id="record-delete")
    assert admin.find("div", id="fact-name").find_all("a", class_="fact__edit")

    sam = page(client_as(demo_app, SAM).get(f"/o/accounts/{sams}"))
    assert sam.find_all("a", id="record-edit") and not sam.find_all("a", id="record-delete")

    auditor_client = client_as(demo_app, AIKO)
    auditor = page(auditor_client.get(f"/o/accounts/{sams}"))
    assert not auditor.find_all("a", id="record-edit")
    assert not auditor.find_all("a", id="record-delete")
    assert not auditor.find("div", id="fact-name").find_all("a", class_="fact__edit")
    assert auditor_client.get(f"/o/accounts/{sams}/edit").status_code == 403
    assert auditor_client.get(f"/o/accounts/{sams}/field/name").status_code == 403
    assert client_as(demo_app, SAM).get(f"/o/accounts/{sams}/delete").status_code == 403


def test_a_rep_gets_404_for_another_teams_record(demo_app):
    theirs = create(demo_app, ADMIN, "accounts", {"name": "Admin's"})
    sam = client_as(demo_app, SAM)
    # 404 as for a missing record; delete is refused earlier: reps may not delete at all.
    for path, status in (("", 404), ("/edit", 404), ("/field/name", 404), ("/delete", 403)):
        response = sam.get(f"/o/accounts/{theirs}{path}")
        assert response.status_code == status, path
        assert "Admin's" not in response.get_data(as_text=True)
    assert client_as(demo_app, ADMIN).get(f"/o/accounts/{theirs}").status_code == 200


def test_delete_asks_first_and_refuses_a_stale_or_referenced_record(demo_app):
    account = create(demo_app, ADMIN, "accounts", {"name": "Short-lived"})
    client = client_as(demo_app, ADMIN)
    ask = client.get(f"/o/accounts/{account}/delete")
    assert ask.status_code == 200
    assert page(ask).find("h1").text == "Delete account “Short-lived”?"
    assert stored(demo_app, "accounts", account) is not None

    deleted = post(client, f"/o/accounts/{account}/delete", {"version": 1})
    assert deleted.status_code == 303
    assert stored(demo_app, "accounts", account) is None

    kept = create(demo_app, ADMIN, "accounts", {"name": "Changed meanwhile"})
    post(client, f"/o/accounts/{kept}/field/city", {"version": 1, "city": "Oslo"})
    refused = post(client, f"/o/accounts/{kept}/delete", {"version": 1})
    assert refused.status_code == 409
    assert "changed since you read it" in page(refused).find("div", id="delete-error").text
    assert stored(demo_app, "accounts", kept) is not None

    referenced = create(demo_app, ADMIN, "accounts", {"name": "Has contacts"})
    create(demo_app, ADMIN, "contacts", {"last_name": "Holder", "account": referenced})
    blocked = post(client, f"/o/accounts/{referenced}/delete", {"version": 1})
    assert blocked.status_code == 409
    assert "refer to this account" in blocked.get_data(as_text=True)
    assert stored(demo_app, "accounts", referenced) is not None


def test_inline_edit_of_one_field(demo_app):
    account = create(demo_app, ADMIN, "accounts", {"name": "Acme", "city": "Lyon"})
    client = client_as(demo_app, ADMIN)
    url = f"/o/accounts/{account}/field/city"
    editor = client.get(url, headers=HTMX)
    assert editor.status_code == 200
    form = page(editor).find("form")
    assert form["hx-post"] == url
    assert form.find("input", name="city")["value"] == "Lyon"
    assert form.find("input", name="version")["value"] == "1"

    saved = post(client, url, {"version": 1, "city": "Oslo"}, headers=HTMX)
    assert saved.status_code == 200
    assert page(saved).find("div", id="fact-city").find("span", class_="fact__value").text == "Oslo"
    assert stored(demo_app, "accounts", account)["city"] == "Oslo"

    # A stale version: a 409 with a reload link; the stored value stays.
    stale = post(client, url, {"version": 1, "city": "Paris"}, headers=HTMX)
    assert stale.status_code == 409
    assert "changed by someone else" in stale.get_data(as_text=True)
    assert page(stale).find("input", name="city")["value"] == "Paris"
    assert stored(demo_app, "accounts", account)["city"] == "Oslo"

    bad = post(client, f"/o/accounts/{account}/field/employees", {"version": 2, "employees": "-4"})
    assert bad.status_code == 422
    assert "at least 0" in page(bad).find("p", class_="field-error").text
    cancel = client.get(f"{url}?display=1", headers=HTMX)
    assert page(cancel).find("div", id="fact-city").find("span").text == "Oslo"

    # Without JavaScript: a page with the form, and a redirect after saving.
    plain = client.get(url)
    assert "<html" in plain.get_data(as_text=True)
    back = post(client, url, {"version": 2, "city": "Bergen"})
    assert back.status_code == 303 and back.headers["Location"] == f"/o/accounts/{account}"
    assert stored(demo_app, "accounts", account)["city"] == "Bergen"
    assert client.get(f"/o/accounts/{account}/field/version").status_code == 403
    assert client.get(f"/o/accounts/{account}/field/nope").status_code == 404
