"""Helpers for the core's behaviour tests (the shared fixtures live in tests/conftest.py)."""

from __future__ import annotations

import logging

import pytest
from flask import Blueprint

from bastion.access import login_required, public
from bastion.app import create_app
from bastion.config import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, dispose, make_app

#: Raised by the probe routes; must never reach a response body.
SECRET_IN_EXCEPTION = "hunter2-must-not-leak"
#: Nothing listens on port 1: connecting fails at once.
UNREACHABLE_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/x"


def run_init(cli, *extra: str, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD):
    """`bastion init` with the password on standard input, as a script would run it."""
    return cli("init", "--admin-email", email, "--admin-password-file", "-", *extra, input=password)


@pytest.fixture
def app_for():
    """Build the app of an installation the CLI initialized; disposed after the test."""
    apps = []

    def build(settings: Settings, **kwargs):
        app = create_app(settings, **kwargs)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        dispose(app)


@pytest.fixture
def probe_app(settings):
    """A fresh installation whose app has test routes, registered before its first request.

    /probe/undeclared and /probe/undeclared-post declare no access rule; /probe/open is
    public; /probe/members needs a signed-in user; /probe/boom and /api/probe/boom raise;
    /probe/log writes a log line. ``app.probe_calls`` lists the views that ran.
    """
    app = make_app(settings)
    calls: list[str] = []
    bp = Blueprint("probe", __name__)

    @bp.get("/probe/undeclared")
    def undeclared():
        calls.append("undeclared")
        return "secret"

    @bp.post("/probe/undeclared-post")
    def undeclared_post():
        calls.append("undeclared-post")
        return "secret"

    @bp.get("/probe/open")
    @public
    def open_route():
        calls.append("open")
        return "open"

    @bp.get("/probe/members")
    @login_required
    def members():
        calls.append("members")
        return "members"

    @bp.get("/probe/boom")
    @public
    def boom():
        calls.append("boom")
        raise RuntimeError(SECRET_IN_EXCEPTION)

    @bp.get("/api/probe/boom")
    @public
    def api_boom():
        calls.append("api-boom")
        raise RuntimeError(SECRET_IN_EXCEPTION)

    @bp.get("/probe/log")
    @public
    def log_line():
        calls.append("log")
        logging.getLogger("bastion.probe").info("probe view ran", extra={"probe": True})
        return "logged"

    app.register_blueprint(bp)
    app.extensions["bastion"].blueprint_owner[bp.name] = "core"
    app.probe_calls = calls
    yield app
    dispose(app)
