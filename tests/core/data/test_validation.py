"""Validation through the REST API: per-field rules, emails, phones, cross-field rules.

Every refusal is a 422 problem whose ``errors`` names the field and whose message names
it in words; nothing is written. Email syntax is checked without any DNS lookup.
"""

from __future__ import annotations

import socket

import pytest

from bastion.data import definitions
from bastion.data.formulas import evaluate
from tests.core.data.conftest import ADMIN, bearer, service_as

PROJECTS = {
    "name": "projects",
    "label": "Project",
    "label_plural": "Projects",
    "fields": [
        {"name": "title", "label": "Title", "type": "text", "required": True, "max_length": 20},
        {"name": "code", "label": "Project code", "type": "text", "pattern": "[A-Z]{2}-[0-9]+"},
        {
            "name": "budget",
            "label": "Budget",
            "type": "integer",
            "min_value": "0",
            "max_value": "1000",
        },
        {"name": "share", "label": "Share", "type": "percent", "max_value": "100"},
        {"name": "contact_email", "label": "Contact email", "type": "email"},
        {"name": "contact_phone", "label": "Contact phone", "type": "phone"},
        {"name": "site", "label": "Project site", "type": "url"},
        {
            "name": "stage",
            "label": "Stage",
            "type": "picklist",
            "options": ["Idea", "Running", "Done"],
        },
        {"name": "starts_on", "label": "Starts", "type": "date"},
        {"name": "ends_on", "label": "Ends", "type": "date"},
        {"name": "reviewed_at", "label": "Reviewed", "type": "datetime"},
        {"name": "sponsor", "label": "Sponsor", "type": "lookup", "target": "accounts"},
    ],
    "rules": [
        {
            "name": "ends_after_start",
            "check": "is_empty(ends_on) or ends_on >= starts_on",
            "message": "A project cannot end before it starts.",
            "field": "ends_on",
        },
        {
            "name": "reviewed_after_start",
            "check": "is_empty(reviewed_at) or is_empty(starts_on) or starts_on <= reviewed_at",
            "message": "A review cannot come before the start.",
            "field": "reviewed_at",
        },
    ],
}


@pytest.fixture
def api(demo_app):
    with demo_app.app_context():
        definitions.create_object(PROJECTS)
    client = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)

    def post(object_name: str, body: dict):
        return client.post(f"/api/v1/{object_name}", json=body, headers=headers)

    return post


@pytest.fixture
def no_dns(monkeypatch):
    """Fail the test if anything resolves a name other than the database's host."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host in {"127.0.0.1", "localhost", "::1"}:
            return real(host, *args, **kwargs)
        lookups.append(str(host))
        raise OSError(f"DNS lookup of {host} attempted")

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    try:
        import dns.resolver

        def refuse(*args, **kwargs):
            lookups.append(str(args[:1]))
            raise OSError("DNS query attempted")

        monkeypatch.setattr(dns.resolver, "resolve", refuse)
        monkeypatch.setattr(dns.resolver.Resolver, "resolve", refuse)
    except ImportError:  # pragma: no cover - email-validator brings dnspython
        pass
    return lookups


def refused(response, field: str) -> str:
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert field in body["errors"], body
    return body["errors"][field]


def count(app, object_name: str) -> int:
    with service_as(app, None) as records:
        return records.count(object_name)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"code": "AB-1"}, "title", "Title is required"),
        ({"title": "x" * 21}, "title", "Title is longer than 20"),
        ({"title": "T", "code": "ab-1"}, "code", "Project code does not have the expected"),
        ({"title": "T", "budget": -1}, "budget", "Budget must be at least 0"),
        ({"title": "T", "budget": 1001}, "budget", "Budget must be at most 1000"),
        ({"title": "T", "budget": "ten"}, "budget", "Budget must be a whole number"),
        ({"title": "T", "share": "100.5"}, "share", "Share must be at most 100"),
        ({"title": "T", "site": "ftp://files.example"}, "site", "Project site must be a web"),
        ({"title": "T", "site": "javascript:alert(1)"}, "site", "Project site must be a web"),
        ({"title": "T", "site": "https://<b>x</b>"}, "site", "Project site must be a web"),
        ({"title": "T", "stage": "Paused"}, "stage", "Stage must be one of: Idea, Running, Done"),
        ({"title": "T", "starts_on": "23/11/2026"}, "starts_on", "Starts must be a date"),
        ({"title": "T", "sponsor": 99999}, "sponsor", "Sponsor: no account 99999"),
        ({"title": "T", "nope": 1}, "nope", "Project has no field 'nope'"),
    ],
)
def test_each_field_rule_names_its_field(demo_app, api, body, field, words):
    message = refused(api("projects", body), field)
    assert message.startswith(words), message
    assert count(demo_app, "projects") == 0


def test_every_bad_field_is_reported_at_once(demo_app, api):
    answer = api("projects", {"code": "x", "budget": -5, "contact_email": "nope"})
    assert set(answer.get_json()["errors"]) == {"title", "code", "budget", "contact_email"}


def test_phone_numbers_are_stored_in_e164(demo_app, api):
    for typed in ("+44 20 7946 0958", "+44 (20) 7946-0958"):
        answer = api("projects", {"title": "P", "contact_phone": typed})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        assert answer.get_json()["contact_phone"] == "+442079460958"
    message = refused(api("projects", {"title": "P", "contact_phone": "call me"}), "contact_phone")
    assert message.startswith("Contact phone is not a phone number")
    assert "country code" in message  # no default region: say how to write it
    message = refused(api("projects", {"title": "P", "contact_phone": "+1 555"}), "contact_phone")
    assert message == "Contact phone has the wrong number of digits for a phone number."
    message = refused(api("contacts", {"last_name": "L", "mobile": "12"}), "mobile")
    assert message.startswith("Mobile is not a phone number")


def test_email_syntax_without_dns(demo_app, api, no_dns):
    for bad in ("ada@localhost", "ada@exa_mple.com", "ada@@example.com", "ada@-example.com"):
        message = refused(api("projects", {"title": "P", "contact_email": bad}), "contact_email")
        assert message.startswith("Contact email"), message
    # A well-formed address at a domain that does not exist is accepted: no lookup is made.
    answer = api("projects", {"title": "P", "contact_email": "Ada@No-Such-Domain.example"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    assert answer.get_json()["contact_email"] == "ada@no-such-domain.example"
    assert no_dns == []


def test_cross_field_rule_of_a_custom_object(demo_app, api):
    body = {"title": "P", "starts_on": "2026-05-01", "ends_on": "2026-04-30"}
    assert refused(api("projects", body), "ends_on") == "A project cannot end before it starts."
    ok = api("projects", {**body, "ends_on": "2026-05-01"})
    assert ok.status_code == 201
    assert count(demo_app, "projects") == 1


def test_a_rule_may_compare_a_date_with_a_datetime(demo_app, api):
    body = {"title": "P", "starts_on": "2026-05-01", "reviewed_at": "2026-04-30T23:00:00Z"}
    assert refused(api("projects", body), "reviewed_at") == "A review cannot come before the start."
    on_the_day = api("projects", {**body, "reviewed_at": "2026-05-01T08:00:00Z"})
    assert on_the_day.status_code == 201, on_the_day.get_data(as_text=True)


def test_rules_set_by_an_administrator_apply_at_once(demo_app, api):
    assert api("accounts", {"name": "Before", "industry": "Banking"}).status_code == 201
    with demo_app.app_context():
        definitions.update_object(
            "accounts",
            {
                "rules": [
                    {
                        "name": "banks_need_a_phone",
                        "check": "industry != 'Banking' or not is_empty(phone)",
                        "message": "A bank needs a phone number.",
                        "field": "phone",
                    },
                    {
                        "name": "big_needs_revenue",
                        "check": "is_empty(employees) or employees < 1000 or annual_revenue > 0",
                        "message": "Large accounts need their annual revenue.",
                    },
                ]
            },
        )
    assert refused(api("accounts", {"name": "Bank", "industry": "Banking"}), "phone") == (
        "A bank needs a phone number."
    )
    # A rule without a field is reported for the record as a whole ("").
    big = api("accounts", {"name": "Big", "employees": 5000})
    assert refused(big, "") == "Large accounts need their annual revenue."
    assert big.get_json()["detail"] == "Large accounts need their annual revenue."
    fine = api(
        "accounts",
        {
            "name": "Bank",
            "industry": "Banking",
            "phone": "+44 20 7946 0958",
            "employees": 5000,
            "annual_revenue": {"amount": "10.00", "currency": "EUR"},
        },
    )
    assert fine.status_code == 201, fine.get_data(as_text=True)
    # Updates are checked against the whole record, not only the changed fields.
    client = demo_app.test_client()
    headers = bearer(demo_app, ADMIN)
    record = fine.get_json()
    patch = client.patch(
        f"/api/v1/accounts/{record['id']}",
        json={"version": record["version"], "phone": None},
        headers=headers,
    )
    assert refused(patch, "phone") == "A bank needs a phone number."


def test_a_rule_that_does_not_parse_is_refused_when_defined(demo_app, api):
    with demo_app.app_context(), pytest.raises(definitions.DefinitionError) as bad:
        definitions.update_object(
            "accounts",
            {"rules": [{"name": "broken", "check": "employees >", "message": "m"}]},
        )
    assert "broken" in str(bad.value)
    with demo_app.app_context(), pytest.raises(definitions.DefinitionError) as unknown:
        definitions.update_object(
            "accounts",
            {"rules": [{"name": "typo", "check": "employes > 1", "message": "m"}]},
        )
    assert "employes" in str(unknown.value)


def test_formulas_cannot_exhaust_the_server(demo_app, api):
    # Deep nesting would overflow the evaluator's recursion on every record: refused early.
    deep = "1" + "+1" * 900
    with demo_app.app_context(), pytest.raises(definitions.DefinitionError) as refused_deep:
        definitions.update_object(
            "projects", {"rules": [{"name": "deep", "check": f"{deep} > 0", "message": "m"}]}
        )
    assert "nest" in str(refused_deep.value)
    # Text is joined, never repeated: 'x' * n would allocate n characters.
    assert evaluate("title * budget", {"title": "x", "budget": 10**12}) is None
    assert evaluate("title + ' ' + code", {"title": "x", "code": "AB-1"}) == "x AB-1"
    with demo_app.app_context():
        definitions.add_field(
            "projects",
            {"name": "banner", "label": "Banner", "type": "formula", "formula": "title * budget"},
        )
    made = api("projects", {"title": "P", "budget": 1000})
    assert made.status_code == 201 and made.get_json()["banner"] is None


def test_the_base_activity_rule(demo_app, api):
    body = {"kind": "call", "subject": "S", "completed_at": "2026-01-01T10:00:00Z"}
    assert refused(api("activities", body), "completed_at").startswith("A completion time")
    assert api("activities", {**body, "done": True}).status_code == 201


@pytest.mark.parametrize(
    "link",
    [
        "accounts:²",  # str.isdigit() says yes, int() says no
        "accounts:٣",  # Arabic-Indic digit: int() would read it as 3
        "accounts:99999999999999999999",  # beyond a 64-bit id
        "accounts:-1",
        "accounts:0",
        {"object": "accounts", "id": "²"},
        {"object": "accounts", "id": 2**70},
        {"object": "accounts", "id": True},
    ],
)
def test_record_link_ids_are_ascii_digits_within_range(demo_app, api, link):
    body = {"kind": "task", "subject": "S", "related_to": link}
    assert refused(api("activities", body), "related_to")
    assert count(demo_app, "activities") == 0
