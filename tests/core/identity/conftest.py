"""Helpers shared by the identity-and-access tests."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bastion.db import db
from bastion.identity import create_user, ensure_role
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
