"""Lead assignment through HTTP: round robin within a team and territory rules, applied
to leads from the form, the REST API and CSV imports; owners chosen explicitly kept."""

from __future__ import annotations

import io

import pytest

from tests.conftest import CSRF_RE
from tests.plugins.sales.conftest import (
    ADMIN,
    NINA,
    SAM,
    SVEN,
    bearer,
    client_as,
    service_as,
    user_id,
)

ASSIGNMENT = "/sales/settings/assignment"
pytestmark = pytest.mark.usefixtures("sales_app")


def token(client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    return CSRF_RE.search(page.get_data(as_text=True)).group(1)


def add_rule(client, **fields):
    data = {"csrf_token": token(client, ASSIGNMENT), "active": "true", **fields}
    return client.post(ASSIGNMENT, data=data)


def owners(app) -> dict[str, int]:
    with service_as(app, None) as system:
        return {r["last_name"]: r["owner"] for r in system.iterate("leads")}


def create_on_form(client, app, last_name: str, **fields):
    data = {
        "csrf_token": token(client, "/o/leads/new"),
        "last_name": last_name,
        "status": "new",
        "owner": str(user_id(app, ADMIN)),
        **fields,
    }
    response = client.post("/o/leads/new", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)[:1000]


def import_csv(client, content: bytes, columns: dict[str, str]):
    from bastion.web.imports import wait_for_imports

    data = {
        "csrf_token": token(client, "/o/leads/import"),
        "file": (io.BytesIO(content), "leads.csv"),
    }
    uploaded = client.post("/o/leads/import", data=data, content_type="multipart/form-data")
    assert uploaded.status_code == 302, uploaded.get_data(as_text=True)[:1000]
    mapping = uploaded.headers["Location"]
    form = {"csrf_token": token(client, mapping), **columns}
    started = client.post(mapping.replace("/map", "/start"), data=form)
    assert started.status_code == 302, started.get_data(as_text=True)[:1000]
    wait_for_imports()
    report = client.get(started.headers["Location"])
    assert report.status_code == 200
    return report.get_data(as_text=True)


def test_round_robin_from_the_form_the_api_and_imports(sales_app):
    admin = client_as(sales_app, ADMIN)
    response = add_rule(admin, name="North", position="10", method="round_robin",
                        team="Sales North")  # fmt: skip
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    sam, nina = user_id(sales_app, SAM), user_id(sales_app, NINA)
    first, second = sorted([sam, nina])
    create_on_form(admin, sales_app, "Form1")
    create_on_form(admin, sales_app, "Form2")
    api = sales_app.test_client()
    headers = bearer(sales_app, ADMIN)
    for name in ("Api1", "Api2", "Api3"):
        created = api.post("/api/v1/leads", json={"last_name": name}, headers=headers)
        assert created.status_code == 201, created.get_json()
    report = import_csv(
        admin,
        b"last_name,company\nCsv1,A\nCsv2,B\n",
        {"column-0": "last_name", "column-1": "company"},
    )
    assert 'data-count="created">2<' in report
    got = owners(sales_app)
    order = ["Form1", "Form2", "Api1", "Api2", "Api3", "Csv1", "Csv2"]
    assert [got[name] for name in order] == [first, second] * 3 + [first]
    # An owner chosen for someone else is kept; so is the system's explicit owner.
    sven = user_id(sales_app, SVEN)
    chosen = api.post("/api/v1/leads", json={"last_name": "Chosen", "owner": sven}, headers=headers)
    assert chosen.status_code == 201 and chosen.get_json()["owner"] == sven
    # The rule remembers the last one assigned (a read-only field users cannot set).
    with service_as(sales_app, None) as system:
        rule = system.query("lead_assignment_rules").records[0]
        assert rule["last_assigned"] == first
    page = admin.get(ASSIGNMENT).get_data(as_text=True)
    assert "round robin in Sales North" in page


def test_territory_rules_go_first_by_position(sales_app):
    admin = client_as(sales_app, ADMIN)
    assert add_rule(admin, name="All", position="20", method="round_robin",
                    team="Sales North").status_code == 303  # fmt: skip
    assert add_rule(admin, name="South", position="5", method="territory",
                    territory_field="territory", territory_value="South",
                    assignee=SVEN).status_code == 303  # fmt: skip
    api = sales_app.test_client()
    headers = bearer(sales_app, ADMIN)
    api.post("/api/v1/leads", json={"last_name": "S1", "territory": " south "}, headers=headers)
    api.post("/api/v1/leads", json={"last_name": "N1", "territory": "North"}, headers=headers)
    report = import_csv(
        admin,
        b"last_name,territory\nS2,SOUTH\n",
        {"column-0": "last_name", "column-1": "territory"},
    )
    assert 'data-count="created">1<' in report
    got = owners(sales_app)
    sven = user_id(sales_app, SVEN)
    assert got["S1"] == sven and got["S2"] == sven
    assert got["N1"] in {user_id(sales_app, SAM), user_id(sales_app, NINA)}


def test_rules_that_cannot_work_are_refused(sales_app):
    admin = client_as(sales_app, ADMIN)
    bad = add_rule(admin, name="X", position="1", method="round_robin", team="Nobody")
    assert bad.status_code == 422 and "no team named" in bad.get_data(as_text=True)
    bad = add_rule(admin, name="X", position="1", method="territory", territory_value="South",
                   assignee="ghost@example.com")  # fmt: skip
    assert bad.status_code == 422 and "No active user" in bad.get_data(as_text=True)
    with service_as(sales_app, None) as system:
        assert system.count("lead_assignment_rules") == 0


def test_a_concurrent_turn_is_retried_not_repeated(sales_app):
    from bastion_sales.leads.assignment import active_rules, next_in_turn

    admin = client_as(sales_app, ADMIN)
    assert add_rule(admin, name="North", position="1", method="round_robin",
                    team="Sales North").status_code == 303  # fmt: skip
    first, second = sorted([user_id(sales_app, SAM), user_id(sales_app, NINA)])
    with service_as(sales_app, None) as system:
        stale = active_rules(system)[0]
        # Another process took the first turn since this one read the rule.
        system.update("lead_assignment_rules", stale["id"], {"last_assigned": first},
                      version=stale["version"])  # fmt: skip
        assert next_in_turn(system, stale) == second
        assert system.get("lead_assignment_rules", stale["id"])["last_assigned"] == second


def test_one_request_reads_the_rules_once_and_still_takes_turns(sales_app, monkeypatch):
    from bastion_sales.leads import assignment

    admin = client_as(sales_app, ADMIN)
    assert add_rule(admin, name="North", position="1", method="round_robin",
                    team="Sales North").status_code == 303  # fmt: skip
    first, second = sorted([user_id(sales_app, SAM), user_id(sales_app, NINA)])
    reads: list[int] = []
    real = assignment.active_rules

    def counting(service):
        reads.append(1)
        return real(service)

    monkeypatch.setattr(assignment, "active_rules", counting)
    with service_as(sales_app, None) as system:
        made = [system.create("leads", {"last_name": f"L{i}"}) for i in range(3)]
        assert [lead["owner"] for lead in made] == [first, second, first]
        assert reads == [1]
        # An administrator's edit of a rule is seen at once (the cache is dropped).
        rule = system.query("lead_assignment_rules").records[0]
        system.update("lead_assignment_rules", rule.id, {"active": False}, version=rule.version)
        assert system.create("leads", {"last_name": "Unassigned"})["owner"] is None
        assert reads == [1, 1]
