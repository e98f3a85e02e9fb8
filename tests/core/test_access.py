"""Deny by default: every route declares who may reach it; undeclared routes are refused."""

from __future__ import annotations

import pytest

from bastion.access import ACCESS_ATTR, AccessRule
from bastion.db import db
from bastion.identity import create_user, ensure_role
from tests.conftest import csrf_token, sign_in

ADMIN_PAGES = ["/admin/", "/admin/plugins", "/admin/appearance"]
CLERK_EMAIL = "clerk@example.com"
CLERK_PASSWORD = "a long password for the filing cabinet"


@pytest.fixture
def clerk_client(app):
    """Signed in as a user whose role grants nothing."""
    with app.app_context():
        role = ensure_role("clerk", "Clerk", [])
        create_user(
            app.extensions["bastion.passwords"],
            email=CLERK_EMAIL,
            password=CLERK_PASSWORD,
            roles=[role],
        )
        db.session.commit()
    client = app.test_client()
    assert sign_in(client, CLERK_EMAIL, CLERK_PASSWORD).status_code == 302
    return client


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_refuse_a_signed_in_non_admin(clerk_client, path):
    assert clerk_client.get(path).status_code == 403


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_send_anonymous_users_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_open_for_the_administrator(admin_client, path):
    assert admin_client.get(path).status_code == 200


def test_admin_changes_are_refused_to_a_non_admin(clerk_client, admin_client):
    token = csrf_token(clerk_client, "/")
    refused = clerk_client.post("/admin/plugins/status/disable", data={"csrf_token": token})
    assert refused.status_code == 403
    theme = clerk_client.post("/admin/appearance", data={"csrf_token": token, "theme": "default"})
    assert theme.status_code == 403
    # Nothing changed: the status plugin still answers.
    assert admin_client.get("/status/").status_code == 200


def test_a_non_admin_sees_no_administration_link(clerk_client, admin_client):
    assert 'href="/admin/"' not in clerk_client.get("/").get_data(as_text=True)
    assert 'href="/admin/"' in admin_client.get("/").get_data(as_text=True)


def test_every_route_declares_an_access_rule(app):
    undeclared = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        view = app.view_functions[rule.endpoint]
        if not isinstance(getattr(view, ACCESS_ATTR, None), AccessRule):
            undeclared.append(f"{rule.rule} ({rule.endpoint})")
    assert undeclared == []
    # The walk saw the core's and the bundled plugin's routes.
    assert {"auth.login", "admin.plugins", "health.readyz", "status.page"} <= set(
        app.view_functions
    )


def test_the_core_opens_only_these_routes_to_anonymous_users(app):
    # Adding a public route to the core must be a deliberate change of this list.
    owners = app.extensions["bastion"].blueprint_owner
    public_endpoints = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if owners.get(endpoint.partition(".")[0]) == "core"
        and getattr(view, ACCESS_ATTR, None) == AccessRule(signed_in=False)
    }
    assert public_endpoints == {
        "auth.login",
        "auth.login_submit",
        "auth.login_code",  # the code step: it checks the pending sign-in itself
        "auth.login_code_submit",
        "password.forgot",
        "password.forgot_submit",
        "password.reset",
        "password.reset_submit",
        "health.healthz",
        "health.readyz",
        "assets.theme_file",
        "assets.plugin_file",
    }


def test_a_route_without_a_declaration_answers_403(probe_app):
    app, calls = probe_app, probe_app.probe_calls
    anonymous = app.test_client()
    assert anonymous.get("/probe/undeclared").status_code == 403
    admin = app.test_client()
    assert sign_in(admin).status_code == 302
    assert admin.get("/probe/undeclared").status_code == 403
    token = csrf_token(admin, "/")
    assert admin.post("/probe/undeclared-post", data={"csrf_token": token}).status_code == 403
    assert calls == []  # the views never ran


def test_declared_rules_are_applied(probe_app):
    app, calls = probe_app, probe_app.probe_calls
    client = app.test_client()
    assert client.get("/probe/open").status_code == 200
    assert client.get("/probe/members").status_code == 302
    assert sign_in(client).status_code == 302
    assert client.get("/probe/members").status_code == 200
    assert calls == ["open", "members"]
