"""Administration of objects and fields through the pages at /admin/objects.

Everything goes through HTTP as an administrator (and as a sales manager, who lacks
``admin.schema``); what the pages did is checked in the catalog, in the tables
(``sqlalchemy.inspect``) and through the record service.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from sqlalchemy import inspect, select, update

from bastion.app import create_app
from bastion.data.catalog import current_catalog, forget_catalog, stored_revision
from bastion.data.definitions import sync_declared
from bastion.data.errors import ValidationFailed
from bastion.db import db
from bastion.models import User, UserSession
from bastion.runtime import platform
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_token, dispose, make_app, sign_in
from tests.core.data.conftest import ADMIN, MARIA, client_as, service_as

OBJECTS = "/admin/objects"
ERROR_RE = r'<p class="schema-error" id="{prefix}{key}-error"[^>]*>([^<]*)</p>'


# --------------------------------------------------------------------------- helpers


def post(client, path: str, data: dict[str, Any], page: str = OBJECTS):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def error_for(response, key: str, prefix: str = "f-") -> str | None:
    """The message shown right below the input ``key``, or None."""
    found = re.search(ERROR_RE.format(prefix=prefix, key=re.escape(key)), response.text)
    return found.group(1) if found else None


def revision(app) -> int:
    with app.app_context():
        return stored_revision()


def catalog(app):
    with app.test_request_context():
        forget_catalog()
        return current_catalog()


def add_field(client, object_name: str, **data: Any):
    return post(client, f"{OBJECTS}/{object_name}/fields", data)


def create_projects(client):
    response = post(
        client,
        OBJECTS,
        {
            "label": "Project",
            "label_plural": "Projects",
            "name": "",  # suggested from the plural label
            "name_field_label": "Project name",
            "name_field_required": "on",
        },
    )
    assert response.status_code == 302, response.text
    assert response.headers["Location"] == f"{OBJECTS}/projects"


def indexes(app, table: str) -> dict[str, bool]:
    with app.app_context():
        return {ix["name"]: bool(ix["unique"]) for ix in inspect(db.engine).get_indexes(table)}


def columns(app, table: str) -> set[str]:
    with app.app_context():
        return {column["name"] for column in inspect(db.engine).get_columns(table)}


def age_authentication(app, email: str = ADMIN_EMAIL, seconds: int = 3600) -> None:
    """Pretend the sign-in happened ``seconds`` ago (the session itself stays valid)."""
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        db.session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id)
            .values(authenticated_at=int(time.time()) - seconds)
        )
        db.session.commit()


# --------------------------------------------------------------------------- access


SCHEMA_PAGES = [
    OBJECTS,
    f"{OBJECTS}/accounts",
    f"{OBJECTS}/accounts/fields/new",
    f"{OBJECTS}/accounts/fields/inputs?type=text",
    f"{OBJECTS}/accounts/fields/industry/edit",
]


def test_pages_and_changes_need_admin_schema(demo_app):
    admin = client_as(demo_app, ADMIN)
    maria = client_as(demo_app, MARIA)
    for path in SCHEMA_PAGES:
        assert admin.get(path).status_code == 200, path
        assert maria.get(path).status_code == 403, path
    before = revision(demo_app)
    token = csrf_token(maria, "/")
    refused = [
        maria.post(OBJECTS, data={"csrf_token": token, "label": "X", "label_plural": "Xs"}),
        maria.post(
            f"{OBJECTS}/accounts/fields",
            data={"csrf_token": token, "type": "text", "label": "Tier", "name": "tier"},
        ),
        maria.post(f"{OBJECTS}/accounts", data={"csrf_token": token, "label": "Client"}),
        maria.post(f"{OBJECTS}/accounts/fields/industry/edit", data={"csrf_token": token}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert revision(demo_app) == before
    assert "tier" not in catalog(demo_app).get("accounts").all_fields
    # The administration index offers the section to the administrator only.
    assert f'href="{OBJECTS}"' in admin.get("/admin/").text
    assert demo_app.test_client().get(OBJECTS).status_code == 302  # anonymous: sign in


# --------------------------------------------------------------------------- objects


def test_custom_object_with_a_lookup_and_a_many_to_many(demo_app, caplog):
    admin = client_as(demo_app, ADMIN)
    caplog.set_level(logging.INFO, logger="bastion.audit")
    create_projects(admin)
    lookup = add_field(
        admin,
        "projects",
        type="lookup",
        label="Client account",
        name="account",
        target="accounts",
        on_delete="clear",
    )
    assert lookup.status_code == 302, lookup.text
    many = add_field(admin, "projects", type="many_to_many", label="Team", target="contacts")
    assert many.status_code == 302, many.text

    meta = catalog(demo_app).get("projects")
    assert meta.plugin is None and meta.name_field == "project_name"
    assert meta.field("project_name").required
    assert (meta.field("account").target, meta.field("account").on_delete) == ("accounts", "clear")
    assert (meta.field("team").type, meta.field("team").target) == ("many_to_many", "contacts")

    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Globex"})
        ada = records.create("contacts", {"first_name": "Ada", "last_name": "Byron"})
        alan = records.create("contacts", {"first_name": "Alan", "last_name": "Turing"})
        project = records.create(
            "projects",
            {"project_name": "Apollo", "account": account.id, "team": [ada.id, alan.id]},
        )
        stored = records.get("projects", project.id)
        assert stored["account"] == account.id
        assert sorted(stored["team"]) == sorted([ada.id, alan.id])
        assert records.names("projects", [project.id]) == {project.id: "Apollo"}
        records.delete("accounts", account.id)  # on delete: clear
        assert records.get("projects", project.id)["account"] is None

    listing = admin.get(OBJECTS)
    row = re.search(r'<tr data-object="projects">(.*?)</tr>', listing.text, re.S).group(1)
    assert "Custom" in row and ">3<" in row  # name field, lookup, many-to-many
    page = admin.get(f"{OBJECTS}/projects").text
    assert 'data-field="account"' in page and 'data-field="team"' in page

    entries = [r for r in caplog.records if getattr(r, "action", "").startswith("schema.")]
    assert [r.action for r in entries] == [
        "schema.object_create",
        "schema.field_add",
        "schema.field_add",
    ]
    assert all(r.object_type == "projects" for r in entries)
    assert entries[1].changes["target"] == "accounts"


def test_object_settings_relabel_name_field_and_sensitive(demo_app):
    admin = client_as(demo_app, ADMIN)
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Initech", "industry": "Banking"})
    columns_before = columns(demo_app, "obj_accounts")
    saved = post(
        admin,
        f"{OBJECTS}/accounts",
        {"label": "Client", "label_plural": "Clients", "sensitive": "on"},
    )
    assert saved.status_code == 302
    relabel = post(
        admin,
        f"{OBJECTS}/accounts/fields/industry/edit",
        {"label": "Sector", "help_text": "The client's line of business"},
    )
    assert relabel.status_code == 302, relabel.text
    meta = catalog(demo_app).get("accounts")
    assert (meta.label, meta.label_plural, meta.sensitive) == ("Client", "Clients", True)
    assert meta.field("industry").label == "Sector"
    assert meta.field("industry").options  # a plugin's field keeps its other settings
    assert columns(demo_app, "obj_accounts") == columns_before
    with service_as(demo_app, ADMIN) as records:
        again = records.get("accounts", account.id)
        assert (again["name"], again["industry"], again.version) == ("Initech", "Banking", 1)
    assert "Reads audited" in admin.get(OBJECTS).text

    # A base object keeps its name field from its code; a custom object's is chosen here.
    create_projects(admin)
    assert add_field(admin, "projects", type="text", label="Code").status_code == 302
    chose = post(
        admin,
        f"{OBJECTS}/projects",
        {"label": "Project", "label_plural": "Projects", "name_field": "code"},
    )
    assert chose.status_code == 302
    assert catalog(demo_app).get("projects").name_field == "code"
    empty = post(admin, f"{OBJECTS}/projects", {"label": "", "label_plural": "Projects"})
    assert empty.status_code == 422
    assert error_for(empty, "label", "s-")


def test_new_object_form_errors_keep_the_input(demo_app):
    admin = client_as(demo_app, ADMIN)
    before = revision(demo_app)
    taken = post(
        admin,
        OBJECTS,
        {"label": "Account", "label_plural": "Accounts", "name_field_label": "Name"},
    )
    assert taken.status_code == 422
    assert "already exists" in error_for(taken, "name", "o-")
    assert 'value="Accounts"' in taken.text
    bad = post(
        admin,
        OBJECTS,
        {"label": "Thing", "label_plural": "Things", "name_field_name": "owner"},
    )
    assert bad.status_code == 422
    assert "standard field" in error_for(bad, "name_field_name", "o-")
    assert revision(demo_app) == before


# --------------------------------------------------------------------------- fields

FIELD_FORMS: dict[str, dict[str, str]] = {
    "text": {"max_length": "80", "pattern": "[A-Z]{2}-\\d+", "default": "AB-1"},
    "long_text": {"max_length": "5000"},
    "email": {},
    "phone": {},
    "url": {},
    "integer": {"min_value": "0", "max_value": "10", "default": "3"},
    "decimal": {"scale": "3", "min_value": "-1.5"},
    "currency": {"scale": "2", "currency": "usd"},
    "percent": {"scale": "1", "max_value": "100"},
    "date": {},
    "datetime": {},
    "boolean": {"default": "true"},
    "picklist": {"options": "Gold\r\nSilver\r\nBronze", "default": "Silver"},
    "multi_picklist": {"options": "Email\nPhone"},
    "lookup": {"target": "contacts", "on_delete": "restrict"},
    "many_to_many": {"target": "accounts"},
    "auto_number": {"format": "ACC-{0000}"},
    "formula": {"formula": "concat(name, ' / ', city)", "formula_type": "text"},
    "record_link": {},
}


@pytest.mark.parametrize("field_type", sorted(FIELD_FORMS))
def test_each_field_type_can_be_added(admin_client, app, field_type):
    response = add_field(
        admin_client,
        "accounts",
        type=field_type,
        label="Extra value",
        name="",  # suggested from the label
        help_text="Added by the test",
        section="More",
        **FIELD_FORMS[field_type],
    )
    assert response.status_code == 302, error_for(response, "") or response.text[-3000:]
    item = catalog(app).get("accounts").field("extra_value")
    assert (item.type, item.label, item.help_text, item.section) == (
        field_type,
        "Extra value",
        "Added by the test",
        "More",
    )
    assert item.custom
    expected = {
        "text": lambda: (
            (item.max_length, item.pattern, item.default) == (80, "[A-Z]{2}-\\d+", "AB-1")
        ),
        "integer": lambda: (str(item.min_value), str(item.max_value)) == ("0", "10"),
        "decimal": lambda: item.scale == 3 and str(item.min_value) == "-1.5",
        "currency": lambda: item.currency == "USD",
        "picklist": lambda: item.options == ("Gold", "Silver", "Bronze"),
        "multi_picklist": lambda: item.options == ("Email", "Phone"),
        "lookup": lambda: (item.target, item.on_delete) == ("contacts", "restrict"),
        "many_to_many": lambda: item.target == "accounts",
        "auto_number": lambda: item.format == "ACC-{0000}",
        "formula": lambda: item.formula == "concat(name, ' / ', city)",
    }
    assert expected.get(field_type, lambda: True)()
    page = admin_client.get(f"{OBJECTS}/accounts").text
    assert 'data-field="extra_value"' in page
    # The edit page shows it; posting the same settings back changes nothing.
    edit = f"{OBJECTS}/accounts/fields/extra_value/edit"
    assert admin_client.get(edit).status_code == 200
    before = revision(app)
    same = {"label": "Extra value", "help_text": "Added by the test", "section": "More"}
    unchanged = post(admin_client, edit, same | FIELD_FORMS[field_type], page=edit)
    assert unchanged.status_code == 302, error_for(unchanged, "") or unchanged.text[-2000:]
    assert revision(app) == before


BAD_FIELDS = [
    ("duplicate", {"type": "text", "label": "Industry", "name": "industry"}, "name", "already"),
    ("standard", {"type": "text", "label": "Owner", "name": "owner"}, "name", "standard"),
    ("no options", {"type": "picklist", "label": "Tier", "options": " \n "}, "options", "one per"),
    (
        "unknown target",
        {"type": "lookup", "label": "Boss", "target": "bosses"},
        "target",
        "no object",
    ),
    (
        "encrypted search",
        {"type": "text", "label": "Secret", "encrypted": "on", "searchable": "on"},
        "encrypted",
        "cannot be unique, indexed or searchable",
    ),
    ("bad formula", {"type": "formula", "label": "Twice", "formula": "nope * 2"}, "formula", ""),
    ("broken formula", {"type": "formula", "label": "Odd", "formula": "name +"}, "formula", ""),
    ("bad pattern", {"type": "text", "label": "Code", "pattern": "[A-"}, "pattern", "regular"),
    ("bad name", {"type": "text", "label": "Code", "name": "Code Name"}, "name", "snake_case"),
    ("bad default", {"type": "integer", "label": "Seats", "default": "many"}, "default", "whole"),
    ("no type", {"type": "", "label": "Nothing"}, "type", "type"),
]


@pytest.mark.parametrize(
    ("data", "key", "fragment"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_bad_field_input_is_refused_beside_the_input(admin_client, app, data, key, fragment):
    before = revision(app)
    fields_before = set(catalog(app).get("accounts").all_fields)
    response = add_field(admin_client, "accounts", **data)
    assert response.status_code == 422
    message = error_for(response, key)
    assert message, response.text[-3000:]
    assert fragment.lower() in message.lower()
    assert f'value="{data["label"]}"' in response.text  # the input is kept
    assert revision(app) == before
    assert set(catalog(app).get("accounts").all_fields) == fields_before


def test_type_settings_swap_in_with_htmx_and_without_javascript(admin_client):
    fragment = admin_client.get(
        f"{OBJECTS}/accounts/fields/inputs?type=lookup", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'name="target"' in fragment.text and 'name="on_delete"' in fragment.text
    assert 'name="options"' not in fragment.text
    decimals = admin_client.get(f"{OBJECTS}/accounts/fields/inputs?type=currency").text
    assert 'name="scale"' in decimals and 'name="currency"' in decimals
    # Without JavaScript the form is posted back with step=type: settings shown, input kept.
    back = add_field(admin_client, "accounts", type="picklist", label="Tier", step="type")
    assert back.status_code == 200
    assert 'name="options"' in back.text and 'value="Tier"' in back.text
    assert "tier" not in catalog(admin_client.application).get("accounts").all_fields
    page = admin_client.get(f"{OBJECTS}/accounts/fields/new").text
    assert 'hx-get="/admin/objects/accounts/fields/inputs"' in page


def test_plugin_field_edit_takes_only_labels(admin_client, app):
    page = admin_client.get(f"{OBJECTS}/accounts/fields/industry/edit").text
    assert 'name="label"' in page and 'name="options"' not in page
    response = post(
        admin_client,
        f"{OBJECTS}/accounts/fields/industry/edit",
        {"label": "Industry", "required": "on", "options": "Only"},  # ignored: not editable
    )
    assert response.status_code == 302
    item = catalog(app).get("accounts").field("industry")
    assert not item.required and len(item.options) > 1


def test_unique_over_duplicates_fails_and_changes_nothing(demo_app):
    admin = client_as(demo_app, ADMIN)
    added = add_field(admin, "accounts", type="text", label="Code", indexed="on")
    assert added.status_code == 302
    with service_as(demo_app, ADMIN) as records:
        first = records.create("accounts", {"name": "A", "code": "X1"})
        records.create("accounts", {"name": "B", "code": "X1"})
    before = revision(demo_app)
    assert indexes(demo_app, "obj_accounts").get("ix_accounts_code") is False
    edit = f"{OBJECTS}/accounts/fields/code/edit"
    response = post(admin, edit, {"label": "Code", "indexed": "on", "unique": "on"}, page=edit)
    assert response.status_code == 422
    assert "same value twice" in error_for(response, "")
    assert revision(demo_app) == before
    assert not catalog(demo_app).get("accounts").field("code").unique
    found = indexes(demo_app, "obj_accounts")
    assert found.get("ix_accounts_code") is False and "uq_accounts_code" not in found
    with service_as(demo_app, ADMIN) as records:
        records.update("accounts", first.id, {"code": "X0"}, version=1)
    again = post(admin, edit, {"label": "Code", "indexed": "on", "unique": "on"}, page=edit)
    assert again.status_code == 302
    assert indexes(demo_app, "obj_accounts").get("uq_accounts_code") is True
    assert catalog(demo_app).get("accounts").field("code").unique


def test_remove_restore_and_purge(demo_app):
    admin = client_as(demo_app, ADMIN)
    assert add_field(admin, "accounts", type="text", label="Nickname").status_code == 302
    with service_as(demo_app, ADMIN) as records:
        account = records.create("accounts", {"name": "Hooli", "nickname": "Hoo"})
    base = f"{OBJECTS}/accounts/fields/nickname"
    confirm = admin.get(f"{base}/remove")
    assert "data is kept" in confirm.text.replace("<strong>", "").replace("</strong>", "")
    assert post(admin, f"{base}/remove", {}, page=f"{base}/remove").status_code == 302
    with service_as(demo_app, ADMIN) as records:
        assert "nickname" not in records.get("accounts", account.id).values
        with pytest.raises(ValidationFailed) as refused:
            records.update("accounts", account.id, {"nickname": "H"}, version=1)
        assert "nickname" in refused.value.errors
    assert "nickname" in columns(demo_app, "obj_accounts")  # data kept
    page = admin.get(f"{OBJECTS}/accounts").text
    assert 'data-removed-field="nickname"' in page

    assert post(admin, f"{base}/restore", {}).status_code == 302
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", account.id)["nickname"] == "Hoo"

    assert post(admin, f"{base}/remove", {}, page=f"{base}/remove").status_code == 302
    # Purging needs a recent sign-in, then the field's API name typed as confirmation.
    age_authentication(demo_app)
    stale = post(admin, f"{base}/purge", {"confirm": "nickname"})
    assert stale.status_code == 302 and "/reauth" in stale.headers["Location"]
    assert "nickname" in columns(demo_app, "obj_accounts")
    token = csrf_token(admin, f"/account/reauth?next={base}/purge")
    again = admin.post(
        "/account/reauth",
        data={"csrf_token": token, "password": ADMIN_PASSWORD, "next": f"{base}/purge"},
    )
    assert again.status_code == 302 and again.headers["Location"] == f"{base}/purge"
    page = admin.get(f"{base}/purge")
    assert page.status_code == 200 and "erased for good" in page.text
    wrong = post(admin, f"{base}/purge", {"confirm": "Nickname"}, page=f"{base}/purge")
    assert wrong.status_code == 422 and "nickname" in columns(demo_app, "obj_accounts")
    done = post(admin, f"{base}/purge", {"confirm": "nickname"}, page=f"{base}/purge")
    assert done.status_code == 302
    assert "nickname" not in columns(demo_app, "obj_accounts")
    assert catalog(demo_app).get("accounts").all_fields["nickname"].purged
    assert post(admin, f"{base}/restore", {}).status_code == 404
    with service_as(demo_app, ADMIN) as records:
        assert records.get("accounts", account.id)["name"] == "Hooli"


def test_the_name_field_cannot_be_removed(demo_app):
    admin = client_as(demo_app, ADMIN)
    create_projects(admin)
    base = f"{OBJECTS}/projects/fields/project_name"
    refused = post(admin, f"{base}/remove", {}, page=f"{base}/remove")
    assert refused.status_code == 422
    assert "name field" in refused.text
    assert not catalog(demo_app).get("projects").all_fields["project_name"].removed


# --------------------------------------------------------------------------- rules


def test_validation_rules_editor(demo_app):
    admin = client_as(demo_app, ADMIN)
    create_projects(admin)
    assert add_field(admin, "projects", type="integer", label="Budget").status_code == 302
    rules = f"{OBJECTS}/projects/rules"
    bad = post(
        admin,
        rules,
        {"rule_name": "positive", "check": "budget >", "message": "No.", "field": "budget"},
    )
    assert bad.status_code == 422
    assert error_for(bad, "check", "r-new-")
    assert 'value="positive"' in bad.text
    assert catalog(demo_app).get("projects").rules == ()
    unknown = post(
        admin, rules, {"rule_name": "x", "check": "nope > 1", "message": "No.", "field": ""}
    )
    assert unknown.status_code == 422 and error_for(unknown, "check", "r-new-")

    data = {
        "rule_name": "positive_budget",
        "check": "is_empty(budget) or budget > 0",
        "message": "A budget is more than zero.",
        "field": "budget",
    }
    assert post(admin, rules, data).status_code == 302
    twice = post(admin, rules, data)
    assert twice.status_code == 422 and "already" in error_for(twice, "rule_name", "r-new-")
    with service_as(demo_app, ADMIN) as records, pytest.raises(ValidationFailed) as failed:
        records.create("projects", {"project_name": "Broke", "budget": -5})
    assert failed.value.errors == {"budget": "A budget is more than zero."}

    edited = post(
        admin, f"{rules}/positive_budget", data | {"check": "is_empty(budget) or budget > 100"}
    )
    assert edited.status_code == 302
    rule = catalog(demo_app).get("projects").rules[0]
    assert (rule.name, rule.check) == ("positive_budget", "is_empty(budget) or budget > 100")
    assert post(admin, f"{rules}/positive_budget/delete", {}).status_code == 302
    assert catalog(demo_app).get("projects").rules == ()
    with service_as(demo_app, ADMIN) as records:
        assert records.create("projects", {"project_name": "Fine", "budget": -5})["budget"] == -5

    # Base and plugin objects take administrators' rules too, beside their code's own,
    # and a plugin sync (every start) keeps them.
    no_shell = {
        "rule_name": "no_shell",
        "check": "not contains(lower(name), 'shell')",
        "message": "No shell companies.",
        "field": "name",
    }
    assert post(admin, f"{OBJECTS}/accounts/rules", no_shell).status_code == 302
    with demo_app.app_context():
        sync_declared(platform(demo_app).objects)
    accounts = catalog(demo_app).get("accounts")
    assert [r.name for r in accounts.admin_rules] == ["no_shell"]
    with service_as(demo_app, ADMIN) as records, pytest.raises(ValidationFailed) as refused:
        records.create("accounts", {"name": "Shell Holdings"})
    assert refused.value.errors == {"name": "No shell companies."}
    # Activities declare "completed_only_when_done" in code: that name is taken.
    taken = no_shell | {"rule_name": "completed_only_when_done", "field": ""}
    assert post(admin, f"{OBJECTS}/activities/rules", taken).status_code == 422


# --------------------------------------------------------------------------- processes


def test_another_process_sees_a_new_field_on_its_next_request(settings):
    first = make_app(settings)
    second = create_app(settings)
    second.config["TESTING"] = True
    try:
        other = second.test_client()
        assert sign_in(other).status_code == 302
        assert 'data-field="loyalty_tier"' not in other.get(f"{OBJECTS}/accounts").text
        client = first.test_client()
        assert sign_in(client).status_code == 302
        assert add_field(client, "accounts", type="text", label="Loyalty tier").status_code == 302
        # No restart: the next request of the other application reads the new revision.
        assert 'data-field="loyalty_tier"' in other.get(f"{OBJECTS}/accounts").text
        with service_as(second, ADMIN) as records:
            created = records.create("accounts", {"name": "Umbrella", "loyalty_tier": "Gold"})
            assert records.get("accounts", created.id)["loyalty_tier"] == "Gold"
    finally:
        dispose(second)
        dispose(first)
