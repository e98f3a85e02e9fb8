"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import pytest

from bastion.app import create_app
from bastion.config import load_settings
from tests.conftest import FAST_HASHING, dispose
from tests.core.conftest import UNREACHABLE_DATABASE


@pytest.fixture
def unreachable_app(tmp_path):
    """An app whose database does not answer (nothing listens on port 1)."""
    settings = load_settings(
        tmp_path, environ={}, overrides={**FAST_HASHING, "database_url": UNREACHABLE_DATABASE}
    )
    app = create_app(settings, secret_key="test-only-session-key")
    app.config["TESTING"] = True
    yield app
    dispose(app)


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_when_the_database_does(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ready"}


def test_probes_need_no_session_and_set_no_cookie(client):
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert "Set-Cookie" not in response.headers


def test_readyz_is_503_without_internals_when_the_database_is_down(unreachable_app, caplog):
    client = unreachable_app.test_client()
    with caplog.at_level(logging.WARNING, logger="bastion.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}
    body = response.get_data(as_text=True)
    for internal in ("OperationalError", "127.0.0.1", "nobody", "psycopg", "postgresql"):
        assert internal not in body
    # The reason goes to the operator's log instead.
    assert any("OperationalError" in r.getMessage() for r in caplog.records)


def test_healthz_stays_up_while_the_database_is_down(unreachable_app):
    response = unreachable_app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_probes_answer_for_a_signed_in_browser_while_the_database_is_down(
    admin_client, app, settings, tmp_path
):
    # The same installation (same session key), its database now out of reach.
    cookie = admin_client.get_cookie("bastion_session").value
    down = create_app(
        load_settings(
            settings.data_dir,
            environ={},
            overrides={**FAST_HASHING, "database_url": UNREACHABLE_DATABASE},
        ),
        secret_key=app.config["SECRET_KEY"],
    )
    try:
        client = down.test_client()
        client.set_cookie("bastion_session", cookie)
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json() == {"status": "unavailable"}
        assert ready.headers["X-Request-ID"]
    finally:
        dispose(down)
