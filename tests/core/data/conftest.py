"""Fixtures for the data-model tests: the demo organization, users' clients and services.

The demo (``make_app(demo=True)``) has an administrator and Maria (sales manager of
team Sales), Sam (sales rep in Sales North, a sub-team of Sales), Sofia (support),
Mark (marketing) and Aiko (auditor), all with ADMIN_PASSWORD.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bastion.data.catalog import forget_catalog
from bastion.data.records import RecordService
from bastion.db import db
from bastion.models import User
from bastion.tokens import create_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, dispose, make_app, sign_in

MARIA = "maria.manager@example.com"
SAM = "sam.sales@example.com"
SOFIA = "sofia.support@example.com"
MARK = "mark.marketing@example.com"
AIKO = "aiko.auditor@example.com"
ADMIN = ADMIN_EMAIL


@pytest.fixture
def demo_app(settings):
    application = make_app(settings, demo=True)
    yield application
    dispose(application)


def user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


@contextlib.contextmanager
def service_as(app, email: str | None) -> Iterator[RecordService]:
    """A record service acting as ``email`` (None: the system), in a request context."""
    with app.test_request_context():
        forget_catalog()
        if email is None:
            yield RecordService(None, system=True)
            return
        user = db.session.scalar(select(User).where(User.email == email))
        yield RecordService(user)


def client_as(app, email: str, password: str = ADMIN_PASSWORD):
    """A browser-like test client signed in as ``email``."""
    client = app.test_client()
    response = sign_in(client, email, password)
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]
    return client


def bearer(app, email: str, scopes: list[str] | None = None) -> dict[str, str]:
    """Authorization headers with a fresh API token of ``email``."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        _, raw = create_token(user, f"test {secrets.token_hex(4)}", scopes=scopes)
        return {"Authorization": f"Bearer {raw}"}


def set_field_access(app, role: str, object_name: str, field: str, access: str) -> None:
    """Give the role a field rule: "hidden" or "read_only" (roles: sales_rep, ...)."""
    from bastion.models import Role, RoleFieldRule

    with app.app_context():
        row = db.session.scalar(select(Role).where(Role.name == role))
        row.field_rules.append(
            RoleFieldRule(object_name=object_name, field_name=field, access=access)
        )
        db.session.commit()
