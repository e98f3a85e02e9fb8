"""Create and edit forms: a widget per field type, inline validation messages with the
input kept, stale edits, duplicates, time zones, and field-level security in every page."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bastion.data.values import Money
from tests.core.data.conftest import ADMIN, SAM, client_as, user_id
from tests.core.data.ui_support import (
    HTMX,
    add_field,
    create,
    field_rule,
    form_values,
    page,
    post,
    set_time_zone,
    stored,
)


def test_the_form_has_a_widget_per_field_type(demo_app):
    add_field(
        demo_app,
        "accounts",
        {
            "name": "tags",
            "type": "multi_picklist",
            "label": "Tags",
            "options": ["VIP", "Partner", "Reseller"],
        },
    )
    add_field(
        demo_app,
        "accounts",
        {"name": "partners", "type": "many_to_many", "label": "Partners", "target": "accounts"},
    )
    add_field(
        demo_app,
        "accounts",
        {
            "name": "share",
            "type": "percent",
            "label": "Share",
            "scale": 1,
            "help_text": "Of the customer's spend.",
        },
    )
    client = client_as(demo_app, ADMIN)
    form = page(client.get("/o/accounts/new")).find("form", class_="form record-form")
    assert form.find("input", name="name")["type"] == "text"
    assert "required" in form.find("input", name="name").attrs
    assert form.find("label", for_="f-name").find("span", class_="required")
    assert form.find("select", name="industry").find_all("option")[1].text == "Banking"
    assert form.find("input", name="website")["inputmode"] == "url"
    assert form.find("input", name="phone")["type"] == "tel"
    assert form.find("input", name="employees")["step"] == "1"
    revenue = form.find("input", name="annual_revenue")
    assert (revenue["type"], revenue["step"], revenue["min"]) == ("number", "0.01", "0")
    assert form.find("input", name="annual_revenue__currency")["value"] == "EUR"
    assert form.find("input", name="share")["step"] == "0.1"
    assert form.find("p", id="f-share-help").text == "Of the customer's spend."
    assert form.find("textarea", name="description")
    assert len(form.find_all("input", type="checkbox", name="tags")) == 3
    partners = form.find("fieldset", data_lookup="/o/accounts/lookup")
    assert partners.find("input", name="partners")["type"] == "number"
    parent = form.find("div", class_="lookup", data_lookup_name="parent")
    assert parent["data-lookup"] == "/o/accounts/lookup"
    owner = form.find("select", name="owner")
    chosen = [o["value"] for o in owner.find_all("option") if "selected" in o.attrs]
    assert chosen == [str(user_id(demo_app, ADMIN))]
    # Standard fields other than the owner, and computed ones, are not in a new form.
    assert not form.find_all("input", name="created_at")
    assert not form.find_all(name="version")

    other = create(demo_app, ADMIN, "accounts", {"name": "Other Co"})
    created = post(
        client,
        "/o/accounts/new",
        [
            ("name", "Acme Bank"),
            ("industry", "Banking"),
            ("website", "acme.example"),
            ("employees", "1200"),
            ("annual_revenue", "2500000.50"),
            ("annual_revenue__currency", "usd"),
            ("share", "12.5"),
            ("tags", "Reseller"),
            ("tags", "VIP"),
            ("partners", str(other)),
            ("partners", ""),
            ("parent", str(other)),
            ("owner", str(user_id(demo_app, ADMIN))),
        ],
    )
    assert created.status_code == 303, created.get_data(as_text=True)
    record_id = int(created.headers["Location"].rsplit("/", 1)[1])
    values = stored(demo_app, "accounts", record_id)
    assert values["website"] == "https://acme.example"
    assert values["annual_revenue"] == Money(Decimal("2500000.50"), "USD")
    assert values["share"] == Decimal("12.5")
    assert values["tags"] == ["VIP", "Reseller"]
    assert values["partners"] == [other] and values["parent"] == other

    # The edit form shows the stored values back.
    edit = page(client.get(f"/o/accounts/{record_id}/edit")).find("form", class_="form record-form")
    assert edit.find("input", name="annual_revenue")["value"] == "2500000.50"
    assert edit.find("input", name="annual_revenue__currency")["value"] == "USD"
    checked = [i["value"] for i in edit.find_all("input", name="tags") if "checked" in i.attrs]
    assert checked == ["VIP", "Reseller"]
    assert edit.find("input", name="partners", checked=True)["value"] == str(other)
    assert edit.find("div", data_lookup_name="parent").find("span").text == "Other Co"
    detail = page(client.get(f"/o/accounts/{record_id}"))
    assert detail.find("div", id="fact-annual_revenue").find("span").text == "2,500,000.50 USD"
    assert detail.find("div", id="fact-share").find("span").text == "12.5 %"
    assert detail.find("div", id="fact-parent").find("a")["href"] == f"/o/accounts/{other}"


def test_invalid_input_is_shown_next_to_each_field_and_kept(demo_app):
    client = client_as(demo_app, ADMIN)
    refused = post(
        client,
        "/o/contacts/new",
        {"first_name": "Ada", "last_name": "", "email": "not an email", "birthdate": "soon"},
    )
    assert refused.status_code == 422
    form = page(refused)
    assert form.find("div", id="f-last_name-field").find("p", class_="field-error").text == (
        "Last name is required."
    )
    email = form.find("div", id="f-email-field")
    assert "Email" in email.find("p", class_="field-error").text
    assert email.find("input")["value"] == "not an email"
    assert email.find("input")["aria-invalid"] == "true"
    assert form.find("input", name="first_name")["value"] == "Ada"
    assert "must be a date" in form.find("div", id="f-birthdate-field").text
    with client.application.app_context():
        from bastion.data.records import RecordService

        assert RecordService(None, system=True).count("contacts") == 0


def test_datetimes_are_entered_and_shown_in_the_users_time_zone(demo_app):
    set_time_zone(demo_app, ADMIN, "Europe/Paris")
    client = client_as(demo_app, ADMIN)
    created = post(
        client,
        "/o/activities/new",
        {"kind": "call", "subject": "Call", "due_at": "2026-03-01T10:00", "done": "true"},
    )
    assert created.status_code == 303
    record_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert stored(demo_app, "activities", record_id)["due_at"] == datetime(
        2026, 3, 1, 9, 0, tzinfo=UTC
    )
    assert stored(demo_app, "activities", record_id)["done"] is True
    form = page(client.get(f"/o/activities/{record_id}/edit"))
    assert form.find("input", name="due_at")["value"] == "2026-03-01T10:00"
    assert "Europe/Paris" in form.find("div", id="f-due_at-field").text
    shown = page(client.get(f"/o/activities/{record_id}")).find("div", id="fact-due_at")
    assert shown.find("span").text == "2026-03-01 10:00 CET"
    # Unchecking a checkbox is a change to false.
    edit = page(client.get(f"/o/activities/{record_id}/edit")).find(
        "form", class_="form record-form"
    )
    unchecked = [(k, v) for k, v in form_values(edit) if k != "done"]
    assert post(client, f"/o/activities/{record_id}/edit", unchecked).status_code == 303
    assert stored(demo_app, "activities", record_id)["done"] is False


def test_edit_saves_changes_and_refuses_a_stale_version(demo_app):
    contact = create(demo_app, ADMIN, "contacts", {"first_name": "Ada", "last_name": "Lovelace"})
    client = client_as(demo_app, ADMIN)
    form = page(client.get(f"/o/contacts/{contact}/edit")).find("form", class_="form record-form")
    fields = dict(form_values(form))
    assert fields["version"] == "1"
    # Saving the form untouched writes nothing.
    assert post(client, f"/o/contacts/{contact}/edit", fields).status_code == 303
    assert stored(demo_app, "contacts", contact)["version"] == 1

    saved = post(client, f"/o/contacts/{contact}/edit", {**fields, "title": "Countess"})
    assert saved.status_code == 303 and saved.headers["Location"] == f"/o/contacts/{contact}"
    assert stored(demo_app, "contacts", contact)["title"] == "Countess"
    assert stored(demo_app, "contacts", contact)["version"] == 2

    stale = post(client, f"/o/contacts/{contact}/edit", {**fields, "title": "Duchess"})
    assert stale.status_code == 409
    conflict = page(stale).find("div", id="record-conflict")
    assert "changed by someone else" in conflict.text
    assert conflict.find("a")["href"] == f"/o/contacts/{contact}/edit"
    assert page(stale).find("input", name="title")["value"] == "Duchess"  # input kept
    assert page(stale).find("input", name="version")["value"] == "1"
    assert stored(demo_app, "contacts", contact)["title"] == "Countess"
    assert stored(demo_app, "contacts", contact)["version"] == 2


def test_possible_duplicates_are_shown_with_create_anyway(demo_app):
    existing = create(demo_app, ADMIN, "accounts", {"name": "Acme Bank"})
    client = client_as(demo_app, ADMIN)
    asked = post(client, "/o/accounts/new", {"name": "ACME  bank", "city": "Lyon"})
    assert asked.status_code == 409
    doc = page(asked)
    match = doc.find("div", id="record-duplicates").find("a")
    assert (match.text, match["href"]) == ("Acme Bank", f"/o/accounts/{existing}")
    assert doc.find("input", name="city")["value"] == "Lyon"
    button = doc.find("button", id="create-anyway")
    anyway = post(
        client,
        "/o/accounts/new",
        {"name": "ACME  bank", "city": "Lyon", button["name"]: button["value"]},
    )
    assert anyway.status_code == 303


def test_new_forms_are_prefilled_from_the_address(demo_app):
    account = create(demo_app, ADMIN, "accounts", {"name": "Acme Bank"})
    client = client_as(demo_app, ADMIN)
    form = page(client.get(f"/o/contacts/new?account={account}&secret_field=1"))
    lookup = form.find("div", data_lookup_name="account")
    assert lookup.find("input")["value"] == str(account)
    assert lookup.find("span").text == "Acme Bank"
    assert "secret_field" not in str(form.find_all("input"))


def test_hidden_fields_never_reach_the_page(demo_app):
    field_rule(demo_app, "sales_rep", "accounts", "website", "hidden")
    field_rule(demo_app, "sales_rep", "accounts", "city", "read_only")
    sam_id = user_id(demo_app, SAM)
    account = create(
        demo_app,
        ADMIN,
        "accounts",
        {"name": "Acme Bank", "website": "secret-site.example", "city": "Lyon", "owner": sam_id},
    )
    admin = client_as(demo_app, ADMIN)
    assert "secret-site" in admin.get(f"/o/accounts/{account}").get_data(as_text=True)
    assert "secret-site" in admin.get("/o/accounts?columns=name,website").get_data(as_text=True)

    sam = client_as(demo_app, SAM)
    pages = {
        "list": sam.get("/o/accounts"),
        "list filtered": sam.get("/o/accounts?q=acme&sort=name"),
        "detail": sam.get(f"/o/accounts/{account}"),
        "edit": sam.get(f"/o/accounts/{account}/edit"),
        "new": sam.get("/o/accounts/new"),
        "lookup": sam.get("/o/accounts/lookup?q=acme"),
        "lookup json": sam.get("/o/accounts/lookup?q=acme&format=json"),
        "inline": sam.get(f"/o/accounts/{account}/field/name", headers=HTMX),
        "contact form": sam.get(f"/o/contacts/new?account={account}"),
    }
    for name, response in pages.items():
        text = response.get_data(as_text=True)
        assert response.status_code == 200, name
        assert "secret-site" not in text, name
        assert "website" not in text.lower(), name
    assert sam.get(f"/o/accounts/{account}/field/website").status_code == 404
    assert sam.get("/o/accounts?columns=name,website").status_code == 400
    assert "secret-site" not in sam.get("/o/accounts?website=x").get_data(as_text=True)

    # A read-only field is shown as text, not an input, and a posted value is ignored.
    edit = page(pages["edit"])
    assert edit.find("div", id="f-city-field").find("div").text == "Lyon"
    assert not edit.find_all("input", name="city")
    post(
        sam,
        f"/o/accounts/{account}/edit",
        {"version": 1, "name": "Acme", "city": "Oslo", "website": "evil.example"},
    )
    values = stored(demo_app, "accounts", account)
    assert (values["name"], values["city"]) == ("Acme", "Lyon")
    assert values["website"] == "https://secret-site.example"
