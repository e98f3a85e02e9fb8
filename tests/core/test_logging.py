"""Structured logs: one JSON object per line, the request id while serving, no secrets."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re

import pytest

from bastion.config import load_settings
from bastion.identity import find_user_by_email
from bastion.logs import JsonFormatter, RequestIdFilter
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, FAST_HASHING, sign_in
from tests.core.conftest import run_init

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class LogCapture:
    """A handler configured like Bastion's own, on the root logger."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(RequestIdFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def logs():
    capture = LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    yield capture
    root.removeHandler(capture.handler)
    root.setLevel(level)


def lines_for(logs: LogCapture, request_id: str) -> list[dict]:
    return [e for e in logs.entries() if e.get("request_id") == request_id]


def test_every_line_is_one_json_object(probe_app, logs):
    client = probe_app.test_client()
    client.get("/probe/log")
    client.get("/probe/boom")  # a traceback spans many lines of text
    sign_in(client)
    lines = logs.text.splitlines()
    assert len(lines) >= 5
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict)
        assert {"time", "level", "logger", "message"} <= set(entry)
    errors = [e for e in logs.entries() if e["logger"] == "bastion.errors"]
    assert len(errors) == 1
    assert "Traceback" in errors[0]["exception"]


def test_the_installed_handler_writes_json_lines_to_stderr(probe_app, capsys):
    capsys.readouterr()
    response = probe_app.test_client().get("/probe/log")
    err = capsys.readouterr().err
    entries = [json.loads(line) for line in err.splitlines()]
    probe = [e for e in entries if e["logger"] == "bastion.probe"]
    assert len(probe) == 1
    assert probe[0]["message"] == "probe view ran"
    assert probe[0]["probe"] is True  # extra fields become keys
    assert probe[0]["request_id"] == response.headers["X-Request-ID"]


def test_lines_written_while_serving_carry_the_request_id(probe_app, logs):
    response = probe_app.test_client().get("/probe/log")
    request_id = response.headers["X-Request-ID"]
    assert REQUEST_ID_RE.match(request_id)
    mine = lines_for(logs, request_id)
    assert {e["logger"] for e in mine} == {"bastion.probe", "bastion.access_log"}
    access = next(e for e in mine if e["logger"] == "bastion.access_log")
    assert access["method"] == "GET"
    assert access["path"] == "/probe/log"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float)


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_sign_in_audit_line_carries_the_request_id(client, logs):
    response = sign_in(client)
    request_id = response.headers["X-Request-ID"]
    audit = [e for e in lines_for(logs, request_id) if e["logger"] == "bastion.audit"]
    assert len(audit) == 1
    assert audit[0]["action"] == "auth.sign_in"
    assert audit[0]["outcome"] == "success"


def test_lines_outside_a_request_have_no_request_id(logs):
    logging.getLogger("bastion.test").warning("outside any request")
    (entry,) = logs.entries()
    assert "request_id" not in entry
    assert entry["level"] == "WARNING"


@pytest.fixture
def proxied(app, settings, app_for):
    """A client whose requests come from the trusted reverse proxy (127.0.0.1)."""
    return app_for(dataclasses.replace(settings, trusted_proxy_count=1)).test_client()


@pytest.mark.parametrize(
    "incoming",
    ["0123456789abcdef", "req-2024-01-01-abcdef", "A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF"],
)
def test_a_well_formed_request_id_from_the_proxy_is_reused(proxied, logs, incoming):
    response = proxied.get("/login", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    assert any(e["logger"] == "bastion.access_log" for e in lines_for(logs, incoming))


@pytest.mark.parametrize(
    "incoming",
    [
        "short",
        "x" * 65,
        "has spaces in it",
        '{"level": "CRITICAL"}',
        "<script>alert(1)</script>",
        "id_with_underscore",
        "ünïcödé-request-id",
    ],
)
def test_a_malformed_incoming_request_id_is_replaced(proxied, logs, incoming):
    response = proxied.get("/login", headers={"X-Request-ID": incoming})
    replaced = response.headers["X-Request-ID"]
    assert REQUEST_ID_RE.match(replaced)
    assert lines_for(logs, replaced)
    assert incoming not in logs.text


def test_a_request_id_from_anyone_but_a_trusted_proxy_is_ignored(client, proxied):
    planted = "0123456789abcdef"
    assert (
        client.get("/login", headers={"X-Request-ID": planted}).headers["X-Request-ID"] != planted
    )  # no proxy configured
    direct = proxied.get(
        "/login", headers={"X-Request-ID": planted}, environ_base={"REMOTE_ADDR": "198.51.100.4"}
    )
    assert direct.headers["X-Request-ID"] != planted
    assert REQUEST_ID_RE.match(direct.headers["X-Request-ID"])


def test_a_refused_form_still_has_a_request_id(client, logs):
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": "x"})
    assert response.status_code == 400
    request_id = response.headers["X-Request-ID"]
    assert REQUEST_ID_RE.match(request_id)
    loggers = {e["logger"] for e in lines_for(logs, request_id)}
    assert "bastion.access_log" in loggers
    assert "flask_wtf.csrf" in loggers  # the reason for the refusal, with the request id


def test_secrets_never_reach_the_logs(cli, bastion_env, data_dir, database_url, app_for, logs):
    bastion_env["BASTION_LOG_LEVEL"] = "DEBUG"
    result = run_init(cli, "--demo")
    assert result.exit_code == 0, result.output

    overrides = {**FAST_HASHING, "log_level": "DEBUG"}
    if database_url:
        overrides["database_url"] = database_url
    app = app_for(load_settings(data_dir, environ={}, overrides=overrides))
    client = app.test_client()
    wrong = "a wrong guess at the password"
    assert sign_in(client, ADMIN_EMAIL, wrong).status_code == 401
    assert sign_in(client, "nobody@example.com", wrong).status_code == 401
    assert sign_in(client).status_code == 302
    assert client.get("/").status_code == 200

    with app.app_context():
        password_hash = find_user_by_email(ADMIN_EMAIL).password_hash
    session_key = (data_dir / "secrets" / "session.key").read_text().strip()
    session_cookie = client.get_cookie("bastion_session").value

    written = logs.text + result.output
    assert "auth.sign_in" in logs.text  # the capture did see the sign-ins
    for secret in (ADMIN_PASSWORD, wrong, session_key, password_hash, session_cookie):
        assert secret not in written
