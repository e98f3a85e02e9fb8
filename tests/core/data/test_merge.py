"""Merging records: the screen, the API, re-pointed references, permissions, stale versions."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bastion.data import definitions
from bastion.data.errors import NotFound
from bastion.data.models import SearchOutbox
from bastion.db import db
from tests.conftest import CSRF_RE
from tests.core.data.conftest import (
    ADMIN,
    MARIA,
    SAM,
    bearer,
    client_as,
    service_as,
    user_id,
)


@pytest.fixture
def world(demo_app):
    """Two accounts to merge (Acme kept, "ACME Inc." merged), with what points at them."""
    with demo_app.app_context():
        definitions.add_field(
            "accounts",
            {"name": "account_number", "label": "Account number", "type": "text", "unique": True},
        )
        definitions.add_field(
            "contacts",
            {
                "name": "partners",
                "label": "Partner accounts",
                "type": "many_to_many",
                "target": "accounts",
            },
        )
    with service_as(demo_app, ADMIN) as records:
        keep = records.create("accounts", {"name": "Acme", "industry": "Banking"})
        other = records.create(
            "accounts",
            {"name": "ACME Inc.", "phone": "+44 20 7946 0958", "account_number": "ACC-1"},
        )
        third = records.create("accounts", {"name": "Third"})
        ada = records.create("contacts", {"last_name": "Lovelace", "account": other.id})
        bob = records.create(
            "contacts",
            {"last_name": "Bob", "account": keep.id, "partners": [other.id, keep.id]},
        )
        cy = records.create("contacts", {"last_name": "Cy", "partners": [other.id, third.id]})
        call = records.create(
            "activities",
            {
                "kind": "call",
                "subject": "Call",
                "related_to": {"object": "accounts", "id": other.id},
            },
        )
    return {
        "keep": keep.id,
        "other": other.id,
        "third": third.id,
        "ada": ada.id,
        "bob": bob.id,
        "cy": cy.id,
        "call": call.id,
    }


def assert_merged(app, world):
    with service_as(app, ADMIN) as records:
        kept = records.get("accounts", world["keep"])
        with pytest.raises(NotFound):
            records.get("accounts", world["other"])
        assert records.get("contacts", world["ada"])["account"] == world["keep"]
        # Bob already had both: one link remains. Cy's link moved, the third stayed.
        assert records.get("contacts", world["bob"])["partners"] == [world["keep"]]
        assert records.get("contacts", world["cy"])["partners"] == sorted(
            [world["keep"], world["third"]]
        )
        link = records.get("activities", world["call"])["related_to"]
        assert (link.object, link.id) == ("accounts", world["keep"])
        return kept


def test_merge_through_the_api_repoints_everything(demo_app, world):
    client = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    answer = client.post(
        f"/api/v1/accounts/{world['keep']}/merge",
        json={
            "ids": [world["other"]],
            "values": {"phone": "+44 20 7946 0958", "account_number": "ACC-1"},
            "version": 1,
        },
        headers=headers,
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["id"] == world["keep"] and body["version"] == 2
    # The unique value moved from the merged record to the kept one.
    assert body["account_number"] == "ACC-1" and body["phone"] == "+442079460958"
    assert body["name"] == "Acme" and body["industry"] == "Banking"
    assert_merged(demo_app, world)
    assert client.get(f"/api/v1/accounts/{world['other']}", headers=headers).status_code == 404
    with demo_app.app_context():
        jobs = db.session.execute(
            select(SearchOutbox.record_id, SearchOutbox.action).where(
                SearchOutbox.object_name == "accounts"
            )
        ).all()
        assert (world["other"], "delete") in jobs


def test_merge_screen_shows_choices_and_merges(demo_app, world):
    client = client_as(demo_app, ADMIN)
    url = f"/o/accounts/merge?ids={world['other']},{world['keep']}"
    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    # The oldest is the master by default; each differing field offers a choice.
    assert 'name="winner" value="{}"'.format(world["keep"]) in html
    assert f'name="choice_phone" value="{world["other"]}" checked' in html  # first non-empty
    assert f'name="choice_name" value="{world["keep"]}" checked' in html  # the master's
    assert "+442079460958" in html and "ACME Inc." in html
    token = CSRF_RE.search(html).group(1)
    form = {
        "csrf_token": token,
        "ids": f"{world['other']},{world['keep']}",
        "winner": str(world["keep"]),
        f"version_{world['keep']}": "1",
        f"version_{world['other']}": "1",
        "choice_name": str(world["other"]),
        "choice_phone": str(world["other"]),
        "choice_account_number": str(world["other"]),
        "choice_industry": str(world["keep"]),
    }
    done = client.post("/o/accounts/merge", data=form)
    assert done.status_code == 303, done.get_data(as_text=True)
    assert done.headers["Location"].endswith(f"/o/accounts/{world['keep']}")
    kept = assert_merged(demo_app, world)
    assert kept["name"] == "ACME Inc." and kept["account_number"] == "ACC-1"
    assert kept["industry"] == "Banking"
    follow = client.get(done.headers["Location"])
    assert "Merged 1 account into" in follow.get_data(as_text=True)


def test_choose_another_master_on_the_screen(demo_app, world):
    client = client_as(demo_app, ADMIN)
    page = client.get(
        f"/o/accounts/merge?ids={world['keep']}&ids={world['other']}&winner={world['other']}"
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'name="winner" value="{world["other"]}"' in html
    assert f'name="choice_name" value="{world["other"]}" checked' in html


def test_many_to_many_values_can_be_combined(demo_app, world):
    with service_as(demo_app, ADMIN) as records:
        dup = records.create("contacts", {"last_name": "Bob", "partners": [world["third"]]})
    client = client_as(demo_app, ADMIN)
    page = client.get(f"/o/contacts/merge?ids={world['bob']},{dup.id}")
    html = page.get_data(as_text=True)
    assert 'name="choice_partners" value="all" checked' in html
    form = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "ids": f"{world['bob']},{dup.id}",
        "winner": str(world["bob"]),
        f"version_{world['bob']}": "1",
        f"version_{dup.id}": "1",
        "choice_partners": "all",
    }
    assert client.post("/o/contacts/merge", data=form).status_code == 303
    with service_as(demo_app, ADMIN) as records:
        assert records.get("contacts", world["bob"])["partners"] == sorted(
            [world["keep"], world["other"], world["third"]]
        )


def test_stale_versions_are_refused_and_nothing_changes(demo_app, world):
    client = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", world["keep"], {"city": "Paris"}, version=1)
    answer = client.post(
        f"/api/v1/accounts/{world['keep']}/merge",
        json={"ids": [world["other"]], "values": {"account_number": "ACC-1"}, "version": 1},
        headers=headers,
    )
    assert answer.status_code == 409
    assert "changed" in answer.get_json()["detail"]
    # The screen: a record changed after it was shown (the form carries its version).
    browser = client_as(demo_app, ADMIN)
    html = browser.get(f"/o/accounts/merge?ids={world['keep']},{world['other']}").get_data(
        as_text=True
    )
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", world["other"], {"city": "Lyon"}, version=1)
    form = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "ids": f"{world['keep']},{world['other']}",
        "winner": str(world["keep"]),
        f"version_{world['keep']}": "2",
        f"version_{world['other']}": "1",
    }
    page = browser.post("/o/accounts/merge", data=form)
    assert page.status_code == 409
    assert "nothing was merged" in page.get_data(as_text=True)
    assert "Lyon" in page.get_data(as_text=True)  # the screen shows the current values
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", world["other"])["account_number"] == "ACC-1"
        assert records.get("contacts", world["ada"])["account"] == world["other"]
        assert records.get("accounts", world["keep"]).version == 2


def test_merge_needs_edit_and_delete_within_scope(demo_app, world):
    # A sales rep may not delete, so may not merge: the screen and the API refuse.
    with service_as(demo_app, ADMIN) as records:
        mine = [
            records.create("accounts", {"name": f"Sam {n}", "owner": user_id(demo_app, SAM)}).id
            for n in (1, 2)
        ]
    sam = client_as(demo_app, SAM)
    assert sam.get(f"/o/accounts/merge?ids={mine[0]},{mine[1]}").status_code == 403
    api = demo_app.test_client()
    refused = api.post(
        f"/api/v1/accounts/{mine[0]}/merge",
        json={"ids": [mine[1]], "version": 1},
        headers=bearer(demo_app, SAM),
    )
    assert refused.status_code == 403
    # A manager merges within her team tree, not records beyond it (404: not visible).
    maria = bearer(demo_app, MARIA)
    beyond = api.post(
        f"/api/v1/accounts/{mine[0]}/merge",
        json={"ids": [world["other"]], "version": 1},
        headers=maria,
    )
    assert beyond.status_code == 404
    assert "ACME" not in beyond.get_data(as_text=True)
    assert (
        client_as(demo_app, MARIA)
        .get(f"/o/accounts/merge?ids={mine[0]},{world['other']}")
        .status_code
        == 404
    )
    ok = api.post(
        f"/api/v1/accounts/{mine[0]}/merge", json={"ids": [mine[1]], "version": 1}, headers=maria
    )
    assert ok.status_code == 200, ok.get_data(as_text=True)
    with service_as(demo_app, ADMIN) as records:
        assert records.count("accounts") == 4  # 3 of the world + Sam's survivor


def test_bad_merge_requests_are_4xx_naming_the_problem(demo_app, world):
    client = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    url = f"/api/v1/accounts/{world['keep']}/merge"
    for body, field in [
        ({"ids": "2", "version": 1}, "ids"),
        ({"ids": [world["keep"]], "version": 1}, "ids"),
        ({"ids": [True], "version": 1}, "ids"),
        ({"ids": [world["other"]]}, "version"),
        ({"ids": [world["other"]], "version": 1, "values": []}, "values"),
        ({"ids": [world["other"]], "version": 1, "extra": 1}, "extra"),
        ({"ids": [world["other"]], "version": 1, "values": {"nope": 1}}, "nope"),
        ({"ids": [world["other"]], "version": 1, "values": {"employees": -1}}, "employees"),
    ]:
        answer = client.post(url, json=body, headers=headers)
        assert answer.status_code == 422, (body, answer.get_data(as_text=True))
        assert answer.get_json()["field"] == field
    assert (
        client.post(url, json={"ids": [999999], "version": 1}, headers=headers).status_code == 404
    )
    # The invalid value left everything as it was.
    assert_unchanged = client.get(f"/api/v1/accounts/{world['other']}", headers=headers)
    assert assert_unchanged.status_code == 200
    # The screen: too few or malformed ids.
    browser = client_as(demo_app, ADMIN)
    assert browser.get(f"/o/accounts/merge?ids={world['keep']}").status_code == 400
    assert browser.get("/o/accounts/merge?ids=1,x").status_code == 400
    assert browser.get(f"/o/accounts/merge?ids={world['keep']},999999").status_code == 404
    assert browser.get("/o/nothing/merge?ids=1,2").status_code == 404


def test_invalid_choice_on_the_screen_is_shown_beside_the_field(demo_app, world):
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", world["other"], {"employees": 5}, version=1)
    with demo_app.app_context():
        definitions.update_object(
            "accounts",
            {
                "rules": [
                    {
                        "name": "banks_are_big",
                        "check": "industry != 'Banking' or employees >= 10",
                        "message": "A bank has at least 10 employees.",
                        "field": "employees",
                    }
                ]
            },
        )
    client = client_as(demo_app, ADMIN)
    html = client.get(f"/o/accounts/merge?ids={world['keep']},{world['other']}").get_data(
        as_text=True
    )
    form = {
        "csrf_token": CSRF_RE.search(html).group(1),
        "ids": f"{world['keep']},{world['other']}",
        "winner": str(world["keep"]),
        f"version_{world['keep']}": "1",
        f"version_{world['other']}": "2",
        "choice_employees": str(world["other"]),
    }
    page = client.post("/o/accounts/merge", data=form)
    text = page.get_data(as_text=True)
    assert page.status_code == 422
    assert re.search(r'id="merge-error-employees"[^>]*>A bank has at least 10 employees', text)
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", world["other"])["employees"] == 5


def test_self_references_and_removed_lookups_survive_a_merge(demo_app):
    with demo_app.app_context():
        definitions.add_field(
            "contacts",
            {"name": "referrer", "label": "Referred by", "type": "lookup", "target": "accounts"},
        )
    with service_as(demo_app, ADMIN) as records:
        parent = records.create("accounts", {"name": "Parent"})
        child = records.create("accounts", {"name": "Child", "parent": parent.id})
        sibling = records.create("accounts", {"name": "Sibling", "parent": parent.id})
        referred = records.create("contacts", {"last_name": "R", "referrer": parent.id})
    with demo_app.app_context():
        definitions.remove_field("contacts", "referrer")  # column and data kept
    with service_as(demo_app, ADMIN) as records:
        # The child absorbs its parent: it cannot become its own parent.
        kept = records.merge("accounts", child.id, [parent.id], values={}, version=1)
        assert kept["parent"] is None and kept.version == 2
        assert records.get("accounts", sibling.id)["parent"] == child.id
        assert records.get("contacts", referred.id) is not None
    with demo_app.app_context():
        definitions.restore_field("contacts", "referrer")
    with service_as(demo_app, ADMIN) as records:
        assert records.get("contacts", referred.id)["referrer"] == child.id
