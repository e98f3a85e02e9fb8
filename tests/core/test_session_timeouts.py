"""Idle and absolute session timeouts end a signed-in session."""

import time

import pytest

from bastion import sessions
from tests.conftest import sign_in


@pytest.fixture
def clock(monkeypatch):
    now = [time.time()]
    monkeypatch.setattr(sessions.time, "time", lambda: now[0])
    return now


def test_idle_session_expires(client, clock):
    sign_in(client)
    clock[0] += 29 * 60
    assert client.get("/").status_code == 200  # activity within the idle limit
    clock[0] += 29 * 60
    assert client.get("/").status_code == 200  # the previous request refreshed it
    clock[0] += 31 * 60
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert "Your session has expired" in client.get("/login").get_data(as_text=True)


def test_absolute_limit_ends_an_active_session(client, clock):
    sign_in(client)
    for step in range(1, 50):  # activity every fifteen minutes, just past twelve hours
        clock[0] += 15 * 60
        expected = 200 if step * 15 <= 12 * 60 else 302
        assert client.get("/").status_code == expected, f"after {step * 15} minutes"
