"""Helpers shared by the identity-and-access tests."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bastion.db import db
from bastion.identity import create_user, ensure_role
from bastion.logs import JsonFormatter
from bastion.models import Role, User

DEFAULT_PASSWORD = "a long enough test password"


def add_user(
    app,
    email: str,
    password: str = DEFAULT_PASSWORD,
    *,
    roles: Iterable[str] = (),
    name: str = "",
) -> int:
    """Create a user holding the named roles (created empty when missing); returns the id."""
    with app.app_context():
        role_rows: list[Role] = []
        for slug in roles:
            role_rows.append(ensure_role(slug, slug.replace("_", " ").title(), []))
        user: User = create_user(
            app.extensions["bastion.passwords"],
            email=email,
            password=password,
            name=name,
            roles=role_rows,
        )
        db.session.commit()
        return user.id


@pytest.fixture
def user_factory(app):
    def make(email: str, password: str = DEFAULT_PASSWORD, **kwargs):
        return add_user(app, email, password, **kwargs)

    return make


def logged_text(caplog) -> str:
    """Every captured record as Bastion's log handler writes it, extra fields included.

    ``caplog.text`` holds only the messages ("audit auth.sign_in"), so a secret passed
    in an audit entry's fields would never show there.
    """
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)
