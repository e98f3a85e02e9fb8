"""Users and roles: creation, look-up, and the Flask-Login user loader."""

from __future__ import annotations

from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email
from flask import Flask
from flask_login import LoginManager
from sqlalchemy import func, select

from bastion.db import db
from bastion.models import Role, RolePermission, User, utcnow
from bastion.passwords import Passwords
from bastion.sessions import session_is_valid
from bastion.web.params import bounded_int

ADMIN_ROLE = "administrator"
#: The password hash of an invited user: verifies against nothing (see Passwords.verify).
UNUSABLE_PASSWORD = "!"  # noqa: S105  (a marker, not a secret)


class IdentityError(ValueError):
    """A user or role change was refused; the message says why."""


def normalize_email(raw: str) -> str:
    try:
        return validate_email(
            raw.strip(), check_deliverability=False, globally_deliverable=False
        ).normalized.lower()
    except EmailNotValidError as exc:
        raise IdentityError(f"{raw!r} is not a valid email address: {exc}") from None


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def ensure_role(
    name: str, label: str, permissions: Iterable[str] = (), description: str = ""
) -> Role:
    role = db.session.scalar(select(Role).where(Role.name == name))
    if role is None:
        role = Role(name=name, label=label, description=description)
        db.session.add(role)
    have = role.permission_names
    for permission in permissions:
        if permission not in have:
            role.permissions.append(RolePermission(permission=permission))
    return role


def create_user(
    passwords: Passwords,
    *,
    email: str,
    password: str | None,
    name: str = "",
    roles: Iterable[Role] = (),
) -> User:
    """Add a user to the session (the caller commits).

    ``password`` None makes an invited user: the hash is unusable until they choose a
    password through their invitation link.
    """
    email = normalize_email(email)
    if find_user_by_email(email) is not None:
        raise IdentityError(f"A user with the email {email} already exists.")
    name = name.strip()
    user = User(email=email, name=name, password_hash=UNUSABLE_PASSWORD)
    if password is not None:
        passwords.check_policy(password, context=(email, name))
        user.password_hash, user.password_changed_at = passwords.hash(password), utcnow()
    user.roles.extend(roles)
    db.session.add(user)
    return user


def init_login(app: Flask) -> None:
    manager = LoginManager()
    manager.login_view = "auth.login"
    manager.login_message = "Please sign in to see that page."
    manager.login_message_category = "info"
    # Flask-Login's own session protection would log users out behind some proxies;
    # sessions are checked against their server-side record instead (bastion.sessions).
    manager.session_protection = None

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        uid = bounded_int(user_id, minimum=1)
        if uid is None:
            return None
        user = db.session.get(User, uid)
        if user is None or not user.active or not session_is_valid(user):
            return None
        return user

    manager.init_app(app)
