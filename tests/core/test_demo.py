"""`bastion init --demo`: users in several roles, each seeing what their role allows."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.db import db
from bastion.models import User
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in
from tests.core.conftest import run_init

AUDITOR = "aiko.auditor@example.com"
SALES_REP = "sam.sales@example.com"
SALES_MANAGER = "maria.manager@example.com"


@pytest.fixture
def demo_app(cli, settings, app_for):
    result = run_init(cli, "--demo")
    assert result.exit_code == 0, result.output
    assert "Loaded the demo organization." in result.output
    return app_for(settings)


def test_demo_users_hold_several_roles(demo_app):
    with demo_app.app_context():
        users = {u.email: {r.name for r in u.roles} for u in db.session.scalars(select(User))}
    assert users[ADMIN_EMAIL] == {"administrator"}
    assert users[AUDITOR] == {"auditor"}
    assert users[SALES_REP] == {"sales_rep"}
    assert users[SALES_MANAGER] == {"sales_manager"}
    assert len({role for roles in users.values() for role in roles}) >= 5


def test_a_demo_user_can_sign_in(demo_app):
    client = demo_app.test_client()
    response = sign_in(client, SALES_REP, ADMIN_PASSWORD)
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "Sam Sales" in page


def test_the_auditor_sees_system_status(demo_app):
    client = demo_app.test_client()
    assert sign_in(client, AUDITOR, ADMIN_PASSWORD).status_code == 302
    assert client.get("/status/").status_code == 200
    assert 'href="/status/"' in client.get("/").get_data(as_text=True)
    assert client.get("/admin/").status_code == 403


def test_a_sales_rep_is_refused_system_status(demo_app):
    client = demo_app.test_client()
    assert sign_in(client, SALES_REP, ADMIN_PASSWORD).status_code == 302
    assert client.get("/status/").status_code == 403
    assert client.get("/status/report.json").status_code == 403
    assert 'href="/status/"' not in client.get("/").get_data(as_text=True)
    assert client.get("/admin/").status_code == 403


def test_init_demo_loads_sample_records_that_respect_scope(cli, settings, app_for):
    from tests.core.conftest import run_init
    from tests.core.data.conftest import SAM, service_as

    assert run_init(cli, "--demo").exit_code == 0
    app = app_for(settings)
    with service_as(app, None) as records:
        assert records.count("accounts") == 5 and records.count("contacts") == 7
    with service_as(app, SAM) as records:
        names = {r["name"] for r in records.query("accounts").records}
    assert names == {"Northwind Savings Bank", "St. Elisabeth Hospital"}
