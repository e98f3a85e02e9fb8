"""Field security for administrators' fields, and the list search box, through HTTP.

The role page lists every field of the live data model (custom fields and custom
objects included), so a custom field can be hidden from a role like a declared one; the
list page's search box matches any searchable text field the user may read.
"""

from __future__ import annotations

from sqlalchemy import select

from bastion.db import db
from bastion.models import Role, RoleFieldRule
from tests.core.data.conftest import ADMIN, SAM, bearer, client_as, set_field_access, user_id
from tests.core.data.ui_support import create, page
from tests.core.identity.test_roles_admin import read_form, set_row

ROLE_PAGE = "/admin/roles/sales_rep"


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:1000]
    return response.get_json()


def _rules(app, role: str = "sales_rep") -> dict[tuple[str, str], str]:
    with app.app_context():
        rows = db.session.scalars(select(RoleFieldRule).join(Role).where(Role.name == role)).all()
        return {(r.object_name, r.field_name): r.access for r in rows}


def _add_loyalty_tier(app, api, admin) -> None:
    spec = {"name": "loyalty_tier", "label": "Loyalty tier", "type": "text", "searchable": True}
    _ok(api.post("/api/v1/meta/contacts/fields", headers=admin, json=spec), 201)


# --------------------------------------------------------------------------- role page


def test_a_custom_field_can_be_hidden_from_a_role_on_the_role_page(demo_app):
    api, admin = demo_app.test_client(), bearer(demo_app, ADMIN)
    _add_loyalty_tier(demo_app, api, admin)
    browser = client_as(demo_app, ADMIN)
    fields = read_form(browser, ROLE_PAGE)
    assert fields["field:contacts:loyalty_tier"] == ["edit"]
    assert fields["field:contacts:first_name"] == ["edit"]  # declared ones are still there
    assert "field:contacts:owner" not in fields  # standard fields are not restrictable
    fields["field:contacts:loyalty_tier"] = ["hidden"]
    assert browser.post(ROLE_PAGE, data=fields).status_code == 302
    assert _rules(demo_app)[("contacts", "loyalty_tier")] == "hidden"
    assert read_form(browser, ROLE_PAGE)["field:contacts:loyalty_tier"] == ["hidden"]

    contact = _ok(
        api.post(
            "/api/v1/contacts",
            headers=admin,
            json={
                "last_name": "Lovelace",
                "loyalty_tier": "Platinum",
                "owner": user_id(demo_app, SAM),
            },
        ),
        201,
    )
    url = f"/api/v1/contacts/{contact['id']}"
    assert _ok(api.get(url, headers=admin))["loyalty_tier"] == "Platinum"
    sam = bearer(demo_app, SAM)
    seen = _ok(api.get(url, headers=sam))
    assert seen["last_name"] == "Lovelace" and "loyalty_tier" not in seen
    listed = _ok(api.get("/api/v1/contacts", headers=sam))["data"]
    assert [row["last_name"] for row in listed] == ["Lovelace"]
    assert "loyalty_tier" not in listed[0]
    meta_fields = {f["name"] for f in _ok(api.get("/api/v1/meta/contacts", headers=sam))["fields"]}
    assert "loyalty_tier" not in meta_fields and "last_name" in meta_fields

    detail = f"/o/contacts/{contact['id']}"
    admin_page = browser.get(detail).get_data(as_text=True)
    assert "Platinum" in admin_page and "Loyalty tier" in admin_page
    rep_page = client_as(demo_app, SAM).get(detail)
    assert rep_page.status_code == 200
    html = rep_page.get_data(as_text=True)
    assert "Lovelace" in html and "Platinum" not in html and "Loyalty tier" not in html


def test_a_field_of_a_custom_object_can_be_hidden_from_a_role(demo_app):
    api, admin = demo_app.test_client(), bearer(demo_app, ADMIN)
    spec = {
        "name": "projects",
        "label": "Project",
        "label_plural": "Projects",
        "fields": [
            {"name": "title", "label": "Title", "type": "text", "required": True},
            {"name": "code_name", "label": "Code name", "type": "text"},
        ],
    }
    _ok(api.post("/api/v1/meta", headers=admin, json=spec), 201)
    browser = client_as(demo_app, ADMIN)
    fields = read_form(browser, ROLE_PAGE)
    assert fields["field:projects:title"] == ["edit"]
    assert fields["field:projects:code_name"] == ["edit"]
    # The object has its own row in the matrix: let reps read projects, hide the code name.
    assert fields["scope:projects"] == [""]  # no rule yet: "same as every other object"
    assert 'aria-label="Record scope for Projects"' in browser.get(ROLE_PAGE).get_data(as_text=True)
    set_row(fields, "projects", {"read"}, "all")
    fields["field:projects:code_name"] = ["hidden"]
    assert browser.post(ROLE_PAGE, data=fields).status_code == 302
    assert _rules(demo_app)[("projects", "code_name")] == "hidden"

    project = _ok(
        api.post(
            "/api/v1/projects", headers=admin, json={"title": "Apollo", "code_name": "Moonshot"}
        ),
        201,
    )
    url = f"/api/v1/projects/{project['id']}"
    assert _ok(api.get(url, headers=admin))["code_name"] == "Moonshot"
    seen = _ok(api.get(url, headers=bearer(demo_app, SAM)))
    assert seen["title"] == "Apollo" and "code_name" not in seen

    detail = f"/o/projects/{project['id']}"
    assert "Moonshot" in browser.get(detail).get_data(as_text=True)
    rep_page = client_as(demo_app, SAM).get(detail)
    assert rep_page.status_code == 200
    html = rep_page.get_data(as_text=True)
    assert "Apollo" in html and "Moonshot" not in html and "Code name" not in html


def test_unknown_and_removed_fields_are_refused_without_saving(demo_app):
    api, admin = demo_app.test_client(), bearer(demo_app, ADMIN)
    _add_loyalty_tier(demo_app, api, admin)
    browser = client_as(demo_app, ADMIN)
    for bad in ("field:contacts:no_such_field", "field:no_such_object:name", "field:contacts"):
        fields = read_form(browser, ROLE_PAGE)
        fields["field:contacts:first_name"] = ["hidden"]
        fields[bad] = ["hidden"]
        refused = browser.post(ROLE_PAGE, data=fields)
        assert refused.status_code == 422, bad
        assert "not a field of an object listed on this page" in refused.get_data(as_text=True)
        assert _rules(demo_app) == {}
    # A bad access value for a custom field is refused too.
    fields = read_form(browser, ROLE_PAGE)
    fields["field:contacts:loyalty_tier"] = ["everything"]
    assert browser.post(ROLE_PAGE, data=fields).status_code == 422
    assert _rules(demo_app) == {}

    # A removed field leaves the page, and a stale form naming it is refused.
    stale = read_form(browser, ROLE_PAGE)
    removed = api.delete("/api/v1/meta/contacts/fields/loyalty_tier", headers=admin)
    assert removed.status_code in (200, 204), removed.get_data(as_text=True)
    assert "field:contacts:loyalty_tier" not in read_form(browser, ROLE_PAGE)
    stale["field:contacts:loyalty_tier"] = ["hidden"]
    assert browser.post(ROLE_PAGE, data=stale).status_code == 422
    assert _rules(demo_app) == {}


# --------------------------------------------------------------------------- search box

PEOPLE = [
    # (first name, last name, email)
    ("Ada", "Lovelace", "countess@example.com"),
    ("Grace", "Hopper", "grace@example.com"),
    ("John", "Adams", "john@example.com"),
    ("Alan", "Turing", "alan@adastra.example"),
    ("Adalbert", "Stifter", "stifter@example.com"),
    ("Linus", "Torvalds", "linus@example.com"),
]


def _seed_people(app, email: str = ADMIN) -> None:
    for first, last, mail in PEOPLE:
        create(app, email, "contacts", {"first_name": first, "last_name": last, "email": mail})


def _last_names(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    body = page(response)
    return [
        tr.find_all("td", data_label="Last name")[0].text
        for tr in body.find_all("tr", data_record=True)
    ]


def test_the_search_box_matches_any_searchable_field_and_says_so(demo_app):
    _seed_people(demo_app)
    client = client_as(demo_app, ADMIN)
    url = "/o/contacts?q=ada&sort=last_name&columns=last_name,first_name"
    # First name (Ada, Adalbert), last name (Adams) and email (adastra) all match.
    assert _last_names(client, url) == ["Adams", "Lovelace", "Stifter", "Turing"]
    assert _last_names(client, url.replace("q=ada", "q=HOPPER")) == ["Hopper"]
    assert _last_names(client, url.replace("q=ada", "q=zzz")) == []
    listed = page(client.get(url))
    label = listed.find("label", for_="list-q").text
    assert label == "Search contacts"
    assert "Search contains “ada”" in listed.find("ul", class_="filter-chips").text
    # Other filters still apply on top of the search.
    assert _last_names(client, url + "&last_name__contains=ov") == ["Lovelace"]
    # An export of the searched list holds what the list shows.
    exported = client.get("/o/contacts/export.json?q=ada&sort=last_name").get_json()
    assert [row["last_name"] for row in exported] == ["Adams", "Lovelace", "Stifter", "Turing"]


def test_the_search_box_pages_with_load_more(demo_app):
    _seed_people(demo_app)
    client = client_as(demo_app, ADMIN)
    url = "/o/contacts?q=a&sort=-last_name&limit=2&columns=last_name"
    seen: list[str] = []
    for _ in range(10):
        response = client.get(url)
        assert response.status_code == 200
        seen += [
            tr.find_all("td", data_label="Last name")[0].text
            for tr in page(response).find_all("tr", data_record=True)
        ]
        more = page(response).find_all("a", id="load-more")
        if not more:
            break
        url = more[0]["href"]
    # Every contact holds an "a" somewhere; each comes once, in the list's order.
    assert seen == sorted((last for _, last, _ in PEOPLE), reverse=True)


def test_the_search_box_never_matches_a_hidden_field(demo_app):
    _seed_people(demo_app, SAM)
    set_field_access(demo_app, "sales_rep", "contacts", "first_name", "hidden")
    set_field_access(demo_app, "sales_rep", "contacts", "email", "hidden")
    sam = client_as(demo_app, SAM)
    url = "/o/contacts?q=ada&sort=last_name&columns=last_name"
    # Only the last name may be searched: Adams, not Ada Lovelace, Adalbert or adastra.
    assert _last_names(sam, url) == ["Adams"]
    assert "Search contacts" in page(sam.get(url)).find("label", for_="list-q").text
    assert _last_names(client_as(demo_app, ADMIN), url) == [
        "Adams",
        "Lovelace",
        "Stifter",
        "Turing",
    ]


def test_a_custom_searchable_field_is_searched_unless_hidden(demo_app):
    api, admin = demo_app.test_client(), bearer(demo_app, ADMIN)
    _add_loyalty_tier(demo_app, api, admin)
    sam_id = user_id(demo_app, SAM)
    for last, tier in (("Gold", "Platinum"), ("Plain", "Bronze")):
        create(
            demo_app, ADMIN, "contacts", {"last_name": last, "loyalty_tier": tier, "owner": sam_id}
        )
    create(demo_app, SAM, "contacts", {"last_name": "Platt"})
    admin_client = client_as(demo_app, ADMIN)
    url = "/o/contacts?q=plat&sort=last_name&columns=last_name"
    assert _last_names(admin_client, url) == ["Gold", "Platt"]
    set_field_access(demo_app, "sales_rep", "contacts", "loyalty_tier", "hidden")
    assert _last_names(client_as(demo_app, SAM), url) == ["Platt"]
