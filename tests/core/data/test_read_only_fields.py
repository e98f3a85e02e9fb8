"""A plugin's read-only fields: users' writes refused (API, forms, inline edit, import),
values sent back as read accepted, the system and the plugin's own hook may set them."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from bastion.api import ValidationFailed
from bastion.data.definitions import DefinitionError, add_field, create_object
from bastion.data.importer import ImportProblem, resolve_columns
from tests.core.data.conftest import ADMIN, SAM, bearer, client_as, service_as
from tests.core.data.record_plugin import DEALS, LOGS, running_app
from tests.core.data.ui_support import page, post, stored

PROBLEM = "application/problem+json"
REFUSED = "Score is set by Bastion; it cannot be changed."


@pytest.fixture
def rt_app(settings, monkeypatch):
    yield from running_app(settings, monkeypatch)


def _errors(response, status: int = 422) -> dict[str, str]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    return response.get_json()["errors"]


def test_the_api_refuses_a_users_value_and_accepts_what_was_read(rt_app):
    api = rt_app.test_client()
    sam = bearer(rt_app, SAM)
    refused = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Alpha", "score": 99})
    assert _errors(refused) == {"score": REFUSED}
    graded = api.post(f"/api/v1/{DEALS}", headers=sam, json={"name": "Alpha", "grade": "A"})
    assert _errors(graded) == {"grade": "Grade is set by Bastion; it cannot be changed."}

    # Creating: empty, or the field's default, is no attempt to set it.
    created = api.post(
        f"/api/v1/{DEALS}", headers=sam, json={"name": "Alpha", "score": 0, "grade": None}
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["score"] == 5 and body["grade"] == "B"  # set by the plugin's hook
    url = f"/api/v1/{DEALS}/{body['id']}"

    # Updating: what was read goes back unchanged (a client echoing the record).
    echoed = {k: v for k, v in body.items() if k not in {"id", "created_at", "created_by"}}
    echoed = {k: v for k, v in echoed.items() if k not in {"updated_at", "updated_by"}}
    echoed["name"] = "Alphabetical"
    again = api.patch(url, headers=sam, json=echoed)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json()["score"] == 12 and again.get_json()["grade"] == "A"

    changed = api.patch(url, headers=sam, json={"version": 2, "score": 1})
    assert _errors(changed) == {"score": REFUSED}
    wrong_type = api.patch(url, headers=sam, json={"version": 2, "score": "many"})
    assert _errors(wrong_type) == {"score": REFUSED}
    assert api.get(url, headers=sam).get_json()["score"] == 12

    # Administrators are users too: only the system and the plugin set it.
    admin = bearer(rt_app, ADMIN)
    assert _errors(api.patch(url, headers=admin, json={"version": 2, "score": 1})) == {
        "score": REFUSED
    }


def test_the_system_and_the_plugins_hook_may_set_it(rt_app):
    with service_as(rt_app, None) as system:
        deal = system.create(DEALS, {"name": "Beta", "grade": "A", "score": 40})
        assert deal["grade"] == "A" and deal["score"] == 4  # the hook keeps the system's grade
        deal = system.update(DEALS, deal.id, {"grade": "C", "score": 7}, version=deal.version)
        assert deal["grade"] == "C" and deal["score"] == 7
        log = system.create(LOGS, {"message": "hello", "stamp": "given"})
        assert log["stamp"] == "stamped"  # ...the log's hook overrides it
    with service_as(rt_app, SAM) as sam:
        log = sam.create(LOGS, {"message": "mine"})
        assert log["stamp"] == "stamped"
        with pytest.raises(ValidationFailed) as refused:
            sam.update(LOGS, log.id, {"stamp": "mine"}, version=log.version)
        assert refused.value.errors == {"stamp": "Stamp is set by Bastion; it cannot be changed."}
        same = sam.update(LOGS, log.id, {"stamp": "stamped", "message": "m2"}, version=1)
        assert same["stamp"] == "stamped" and same.version == 2


def test_imports_follow_the_same_rule(rt_app):
    with service_as(rt_app, SAM) as sam:
        results = sam.create_many(
            DEALS,
            [{"name": "One"}, {"name": "Two", "score": 7}, {"name": "Three", "score": 0}],
            return_errors=True,
        )
        assert isinstance(results[0], int) and isinstance(results[2], int)
        assert isinstance(results[1], ValidationFailed)
        assert results[1].errors == {"score": REFUSED}
        assert sam.get(DEALS, results[2])["score"] == 5

        meta = sam.object(DEALS)
        with pytest.raises(ImportProblem) as mapped:
            resolve_columns(
                sam, meta, ["Name", "Points"], {"Name": "name", "Points": "score"}, None
            )
        assert "Score, which is set by Bastion" in str(mapped.value)
        columns, ignored = resolve_columns(sam, meta, ["name", "score"], None, None)
        assert [c.field.name for c in columns] == ["name"] and ignored == ["score"]
    with service_as(rt_app, None) as system:
        (made,) = system.create_many(DEALS, [{"name": "Sys", "grade": "A"}])
        assert system.get(DEALS, made)["grade"] == "A"


def test_forms_show_it_as_text_and_refuse_a_forged_value(rt_app):
    client = client_as(rt_app, SAM)
    new_form = page(client.get(f"/o/{DEALS}/new")).find("form", class_="form record-form")
    assert new_form.find("input", name="name")
    assert not new_form.find_all(name="score") and not new_form.find_all(name="grade")
    shown = [div.text for div in new_form.find_all("div", class_="record-field__readonly")]
    assert "0" in shown  # shown as text, with its default

    made = post(client, f"/o/{DEALS}/new", {"name": "Gamma deal"})
    assert made.status_code == 303, made.get_data(as_text=True)
    deal_id = int(made.headers["Location"].rsplit("/", 1)[1])
    assert stored(rt_app, DEALS, deal_id)["score"] == 10

    edit = page(client.get(f"/o/{DEALS}/{deal_id}/edit")).find("form", class_="form record-form")
    assert edit.find_all(name="version") and not edit.find_all(name="score")
    readonly = [div.text for div in edit.find_all("div", class_="record-field__readonly")]
    assert "10" in readonly and "A" in readonly

    # A forged form field is not read: the form only takes the fields it shows.
    forged = post(
        client, f"/o/{DEALS}/{deal_id}/edit", {"version": 1, "name": "Gamma", "score": "99"}
    )
    assert forged.status_code == 303, forged.get_data(as_text=True)
    assert stored(rt_app, DEALS, deal_id)["score"] == 5

    detail = client.get(f"/o/{DEALS}/{deal_id}").get_data(as_text=True)
    assert f"/o/{DEALS}/{deal_id}/field/name" in detail  # inline edit of a user's field
    assert f"/o/{DEALS}/{deal_id}/field/score" not in detail
    assert client.get(f"/o/{DEALS}/{deal_id}/field/score").status_code == 403
    inline = post(client, f"/o/{DEALS}/{deal_id}/field/score", {"version": 2, "score": "1"})
    assert inline.status_code == 403
    assert stored(rt_app, DEALS, deal_id)["score"] == 5


def test_openapi_and_meta_mark_it_read_only(rt_app):
    api = rt_app.test_client()
    document = api.get("/api/v1/openapi.json", headers=bearer(rt_app, SAM)).get_json()
    validate(document)
    schemas = document["components"]["schemas"]
    record = schemas[f"{DEALS}.record"]["properties"]
    assert record["score"]["readOnly"] is True and record["grade"]["readOnly"] is True
    assert "readOnly" not in record["name"]
    for body in (f"{DEALS}.create", f"{DEALS}.patch"):
        properties = schemas[body]["properties"]
        assert properties["score"]["readOnly"] is True  # may be echoed, never changed
        assert "readOnly" not in properties["name"]
    fields = api.get(f"/api/v1/meta/{DEALS}", headers=bearer(rt_app, SAM)).get_json()
    by_name = {item["name"]: item for item in fields["fields"]}
    assert by_name["score"]["read_only"] is True and by_name["name"]["read_only"] is False


def test_administrators_cannot_make_their_own_fields_read_only(rt_app):
    with rt_app.test_request_context():
        with pytest.raises(DefinitionError) as added:
            add_field(
                "accounts", {"name": "rank", "type": "integer", "label": "Rank", "read_only": True}
            )
        assert added.value.field == "read_only"
        with pytest.raises(DefinitionError):
            create_object(
                {
                    "name": "gadgets",
                    "label": "Gadget",
                    "fields": [{"name": "n", "type": "text", "label": "N", "read_only": True}],
                }
            )
        created = add_field("accounts", {"name": "rank", "type": "integer", "label": "Rank"})
        assert created.read_only is False
