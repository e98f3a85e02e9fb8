"""Error pages in the theme; RFC 9457 problem details for API clients; no leaked internals."""

from __future__ import annotations

import re

import pytest

from bastion.web.errors import MESSAGES
from tests.conftest import sign_in
from tests.core.conftest import SECRET_IN_EXCEPTION

PROBLEM_JSON = "application/problem+json"


def title_of(page: str) -> str:
    match = re.search(r"<title>(.*?)</title>", page, re.S)
    assert match, page[:500]
    return match.group(1).strip()


def assert_themed_error_page(response, status: int, title: str) -> str:
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<header class="site-header">' in page  # the theme's shell
    assert 'href="/static/theme/css/bastion.css' in page
    assert f'<p class="error-page__code">{status}</p>' in page
    assert f'<h1 id="error-title">{title}</h1>' in page
    assert title_of(page) == f"{title} · Bastion"
    assert MESSAGES[status] in page
    return page


def test_404_page_is_themed(client):
    assert_themed_error_page(client.get("/no/such/page"), 404, "Not Found")


def test_403_page_is_themed(probe_app):
    client = probe_app.test_client()
    assert sign_in(client).status_code == 302
    page = assert_themed_error_page(client.get("/probe/undeclared"), 403, "Forbidden")
    assert "secret" not in page
    # Signed in: the page keeps the navigation and the sign-out form.
    assert 'action="/logout"' in page


def test_405_page_is_themed(client):
    assert_themed_error_page(client.get("/logout"), 405, "Method Not Allowed")


def test_an_exception_gives_the_themed_500_page_without_its_text(probe_app):
    response = probe_app.test_client().get("/probe/boom")
    page = assert_themed_error_page(response, 500, "Internal Server Error")
    assert SECRET_IN_EXCEPTION not in page
    assert "RuntimeError" not in page
    assert "Traceback" not in page
    assert probe_app.probe_calls == ["boom"]


def test_an_exception_is_logged_with_its_traceback(probe_app, caplog):
    probe_app.test_client().get("/probe/boom")
    records = [r for r in caplog.records if r.name == "bastion.errors"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert SECRET_IN_EXCEPTION in str(records[0].exc_info[1])
    assert "GET /probe/boom" in records[0].getMessage()


def test_csrf_failure_page_is_themed_and_says_what_to_do(client):
    response = client.post("/login", data={"email": "a@example.com", "password": "x"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert '<header class="site-header">' in page
    assert "This form has expired or was sent from elsewhere." in page


def assert_problem(response, status: int, title: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json(force=True)
    assert body == {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": MESSAGES[status],
    }
    return body


def test_api_404_is_problem_json(client):
    assert_problem(client.get("/api/no/such/thing"), 404, "Not Found")


def test_api_403_is_problem_json(probe_app):
    client = probe_app.test_client()
    # The core has no /api routes yet; a JSON client of a refused route gets the same shape.
    assert sign_in(client).status_code == 302
    assert_problem(client.get("/api/nothing/here"), 404, "Not Found")
    response = client.get("/probe/undeclared", headers={"Accept": "application/json"})
    assert_problem(response, 403, "Forbidden")


def test_api_500_is_problem_json_without_its_text(probe_app):
    response = probe_app.test_client().get("/api/probe/boom")
    assert_problem(response, 500, "Internal Server Error")
    assert SECRET_IN_EXCEPTION not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        ("application/json", PROBLEM_JSON),
        ("text/html", "text/html"),
        ("text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8", "text/html"),
        ("*/*", "text/html"),
    ],
)
def test_json_clients_outside_the_api_get_problem_json(client, accept, mimetype):
    response = client.get("/no/such/page", headers={"Accept": accept})
    assert response.status_code == 404
    assert response.mimetype == mimetype
