"""Gaps an acceptance audit found in schema changes and CSV import.

Schema: every refused definition answers 422 as an RFC 9457 problem whose ``errors`` are
keyed by the setting at fault (and ``field`` names it), nonsense values are refused
rather than stored, and a setting the field's type does not use is refused rather than
stored and ignored. Import: repeated headers, unterminated quotes and short rows are
reported instead of being imported silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.data.conftest import ADMIN, bearer, service_as

PROBLEM = "application/problem+json"


@pytest.fixture
def api(demo_app):
    return demo_app.test_client()


@pytest.fixture
def admin(demo_app):
    return bearer(demo_app, ADMIN)


def _refused(response, key: str) -> str:
    """The 422 problem names ``key``: as ``field`` and as the key of its errors."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 422 and body["title"] and body["detail"]
    assert body["field"] == key, body
    assert list(body["errors"]) == [key], body
    assert body["errors"][key], body
    return body["errors"][key]


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _add(api, headers, spec: dict, obj: str = "accounts"):
    return api.post(f"/api/v1/meta/{obj}/fields", headers=headers, json=spec)


def _field(api, headers, obj: str, name: str) -> dict:
    return _ok(api.get(f"/api/v1/meta/{obj}/fields/{name}", headers=headers))


def _text(name: str = "notes_x", **settings) -> dict:
    return {"name": name, "label": "Notes", "type": "text", **settings}


# ------------------------------------------------------------------- errors name the setting


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"name": "Bad Name", "label": "Bad", "type": "text"}, "name"),
        ({"name": "link_x", "label": "Link", "type": "lookup"}, "target"),
        ({"name": "pick_x", "label": "Pick", "type": "picklist"}, "options"),
        (_text(pattern="[("), "pattern"),
        (_text(max_length=-1), "max_length"),
        ({"name": "link_x", "label": "L", "type": "lookup", "target": "accounts",
          "on_delete": "cascade"}, "on_delete"),
        ({"name": "amount_x", "label": "A", "type": "currency", "currency": "XXXX"}, "currency"),
        ({"name": "amount_x", "label": "A", "type": "decimal", "scale": 50}, "scale"),
        ({"name": "calc_x", "label": "C", "type": "formula", "formula": "1",
          "formula_type": "money"}, "formula_type"),
    ],
)  # fmt: skip
def test_a_refused_new_field_names_the_setting_at_fault(api, admin, spec, key):
    _refused(_add(api, admin, spec), key)


@pytest.mark.parametrize("key", ["name", "duplicate_keys"])
def test_an_object_setting_that_cannot_be_changed_is_named(api, admin, key):
    message = _refused(api.patch("/api/v1/meta/accounts", headers=admin, json={key: "x"}), key)
    assert key in message
    assert _ok(api.get("/api/v1/meta/accounts", headers=admin))["name"] == "accounts"


def test_help_text_null_clears_it_and_a_non_text_help_is_named(api, admin):
    _ok(_add(api, admin, _text(help_text="Something to say")), 201)
    url = "/api/v1/meta/accounts/fields/notes_x"
    cleared = _ok(api.patch(url, headers=admin, json={"help_text": None}))
    assert cleared["help_text"] == ""
    assert _field(api, admin, "accounts", "notes_x")["help_text"] == ""
    _refused(api.patch(url, headers=admin, json={"help_text": 5}), "help_text")


# --------------------------------------------------------------------------- nonsense values


def test_icon_must_be_text(api, admin):
    before = _ok(api.get("/api/v1/meta/accounts", headers=admin))["icon"]
    _refused(api.patch("/api/v1/meta/accounts", headers=admin, json={"icon": ["x"]}), "icon")
    assert _ok(api.get("/api/v1/meta/accounts", headers=admin))["icon"] == before
    created = api.post(
        "/api/v1/meta",
        headers=admin,
        json={"name": "gadgets", "label": "Gadget", "icon": ["x"], "fields": [_text("title_x")]},
    )
    _refused(created, "icon")
    assert api.get("/api/v1/meta/gadgets", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("key", "value"), [("name_field", ["name"]), ("sensitive", "no"), ("description", 5)]
)
def test_other_object_settings_of_the_wrong_kind_are_named(api, admin, key, value):
    _refused(api.patch("/api/v1/meta/accounts", headers=admin, json={key: value}), key)


def test_section_must_be_text(api, admin):
    _refused(_add(api, admin, _text(section=5)), "section")
    _ok(_add(api, admin, _text(section="Details")), 201)
    url = "/api/v1/meta/accounts/fields/notes_x"
    _refused(api.patch(url, headers=admin, json={"section": 5}), "section")
    assert _field(api, admin, "accounts", "notes_x")["section"] == "Details"


def test_options_must_be_a_list_not_a_string(api, admin):
    spec = {"name": "pick_x", "label": "Pick", "type": "picklist", "options": "zzz"}
    _refused(_add(api, admin, spec), "options")
    _ok(_add(api, admin, {**spec, "options": ["a", "b"]}), 201)
    url = "/api/v1/meta/accounts/fields/pick_x"
    _refused(api.patch(url, headers=admin, json={"options": "zzz"}), "options")
    assert _field(api, admin, "accounts", "pick_x")["options"] == ["a", "b"]


def test_a_setting_the_type_does_not_use_is_refused(api, admin):
    pick = {"name": "pick_x", "label": "Pick", "type": "picklist", "options": ["a"]}
    message = _refused(_add(api, admin, {**pick, "formula": "1"}), "formula")
    assert "picklist" in message
    _refused(_add(api, admin, _text(options=["a"])), "options")
    _refused(_add(api, admin, {"name": "n_x", "label": "N", "type": "integer", "max_length": 5}),
             "max_length")  # fmt: skip
    _ok(_add(api, admin, pick), 201)
    url = "/api/v1/meta/accounts/fields/pick_x"
    _refused(api.patch(url, headers=admin, json={"formula": "1"}), "formula")
    _refused(api.patch(url, headers=admin, json={"max_length": 10}), "max_length")
    assert "formula" not in _field(api, admin, "accounts", "pick_x")
    # In a new object's fields, the key says which field too.
    body = {"name": "gadgets", "label": "Gadget", "fields": [{**pick, "formula": "1"}]}
    _refused(api.post("/api/v1/meta", headers=admin, json=body), "fields[0].formula")
    # Empty values, as forms send for inputs they do not show, are not settings.
    _ok(_add(api, admin, _text(options=[], formula=None)), 201)


def test_min_value_cannot_exceed_max_value(api, admin):
    spec = {"name": "n_x", "label": "N", "type": "integer", "min_value": 10, "max_value": 1}
    _refused(_add(api, admin, spec), "min_value")
    _ok(_add(api, admin, {**spec, "min_value": 1, "max_value": 10}), 201)
    url = "/api/v1/meta/accounts/fields/n_x"
    _refused(api.patch(url, headers=admin, json={"min_value": 11}), "min_value")
    _refused(api.patch(url, headers=admin, json={"max_value": "NaN"}), "max_value")
    assert _field(api, admin, "accounts", "n_x")["min_value"] == "1"


@pytest.mark.parametrize("length", [10_000_000, 99_999_999_999])
def test_max_length_has_a_sane_limit_on_both_databases(api, admin, length):
    _refused(_add(api, admin, _text(max_length=length)), "max_length")
    _ok(_add(api, admin, _text(max_length=200)), 201)
    url = "/api/v1/meta/accounts/fields/notes_x"
    _refused(api.patch(url, headers=admin, json={"max_length": length}), "max_length")
    assert _ok(api.patch(url, headers=admin, json={"max_length": 100_000}))["max_length"] == 100_000


def test_narrowing_picklist_options_keeps_existing_values(demo_app, api, admin):
    """Options may be changed although records hold a value no longer among them.

    Changing a definition never touches data: the record keeps its value and still reads
    it back (so nothing is lost and it can be cleaned up later), while new values must
    come from the new list. Refusing would leave an administrator no way to retire a
    choice without first editing every record that uses it.
    """
    spec = {"name": "tier_x", "label": "Tier", "type": "picklist", "options": ["Gold", "Silver"]}
    _ok(_add(api, admin, spec), 201)
    gold = _ok(api.post("/api/v1/accounts", headers=admin, json={"name": "G", "tier_x": "Gold"}),
               201)  # fmt: skip
    url = "/api/v1/meta/accounts/fields/tier_x"
    assert _ok(api.patch(url, headers=admin, json={"options": ["Silver"]}))["options"] == ["Silver"]
    assert _ok(api.get(f"/api/v1/accounts/{gold['id']}", headers=admin))["tier_x"] == "Gold"
    refused = api.post("/api/v1/accounts", headers=admin, json={"name": "H", "tier_x": "Gold"})
    assert refused.status_code == 422 and "tier_x" in refused.get_json()["errors"]


# --------------------------------------------------------------------------- CSV import


def _import(cli, tmp_path: Path, text: str, *options: str):
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode())
    return cli("import", "contacts", str(path), *options)


def _last_names(app) -> list[str]:
    with service_as(app, None) as records:
        return sorted(record.values["last_name"] for record in records.iterate("contacts"))


def test_a_repeated_header_is_refused_naming_the_column(demo_app, cli, tmp_path):
    result = _import(cli, tmp_path, "last_name,last_name\nAda,Lovelace\n")
    assert result.exit_code == 1
    assert "last_name appears twice" in result.output
    result = _import(cli, tmp_path, "Last Name,email,last  name\nAda,a@example.com,L\n")
    assert result.exit_code == 1 and "appears twice" in result.output
    assert _last_names(demo_app) == []


def test_an_unterminated_quote_is_reported_with_its_line(demo_app, cli, tmp_path):
    text = 'last_name,email\nGood,good@example.com\n"Open,open@example.com\nLost,lost@example.com\n'
    result = _import(cli, tmp_path, text, "--skip-bad-rows")
    assert result.exit_code == 1
    assert "Line 3" in result.output and "never closed" in result.output
    assert _last_names(demo_app) == []
    # Quoted line breaks and quotes inside unquoted cells are still fine.
    text = 'last_name,title\n"Núñez\nGarcía","CFO"\nSmith,5" screens\n'
    result = _import(cli, tmp_path, text)
    assert result.exit_code == 0, result.output
    assert _last_names(demo_app) == ["Núñez García", "Smith"]


def test_a_row_with_too_few_cells_is_a_row_error(demo_app, cli, tmp_path):
    """Short rows are refused, trailing cells missing or not: a count cannot tell a
    dropped empty cell from a lost separator that shifted the values into the wrong
    columns, and spreadsheets (Excel included) write every separator of a row."""
    text = "last_name,email,city\nGood,good@example.com,Rome\nShort,short@example.com\n"
    result = _import(cli, tmp_path, text)
    assert result.exit_code == 1
    assert "line 3" in result.output and "2 cells but the header 3" in result.output
    assert _last_names(demo_app) == []
    result = _import(cli, tmp_path, text, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert _last_names(demo_app) == ["Good"]
