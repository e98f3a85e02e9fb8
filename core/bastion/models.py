"""The core's own tables: users, teams, roles and their rules, credentials, plugin state.

Business records are not here: they live in tables the data model derives from
definitions. Schema changes to these tables go through an Alembic migration.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bastion.db import db


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time with its zone: SQLite hands datetimes back naive, and all are UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


user_roles = Table(
    "user_roles",
    db.metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)


class Role(db.Model):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The slug (``sales_rep``): what the CLI, the API and the default rules name.
    name: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    #: Members cannot use Bastion until they have enrolled in MFA.
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    permissions: Mapped[list[RolePermission]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin"
    )
    object_rules: Mapped[list[RoleObjectRule]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin"
    )
    field_rules: Mapped[list[RoleFieldRule]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def permission_names(self) -> set[str]:
        return {p.permission for p in self.permissions}


class RolePermission(db.Model):
    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    # "*" grants every permission that an enabled plugin or the core defines.
    permission: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[Role] = relationship(back_populates="permissions")


#: Actions on records of an object; each is a column of RoleObjectRule.
OBJECT_ACTIONS = ("read", "create", "edit", "delete", "import", "export")
#: Record scopes, narrowest first.
SCOPES = ("own", "team", "team_tree", "all")


class RoleObjectRule(db.Model):
    """What a role may do with the records of one object, and which records it reaches.

    ``object_name`` "*" applies to every object that has no rule of its own for the role.
    """

    __tablename__ = "role_object_rules"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    object_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    can_read: Mapped[bool] = mapped_column(Boolean, default=False)
    can_create: Mapped[bool] = mapped_column(Boolean, default=False)
    can_edit: Mapped[bool] = mapped_column(Boolean, default=False)
    can_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    can_import: Mapped[bool] = mapped_column(Boolean, default=False)
    can_export: Mapped[bool] = mapped_column(Boolean, default=False)
    #: own, team, team_tree or all (see SCOPES).
    scope: Mapped[str] = mapped_column(String(16), default="own")
    role: Mapped[Role] = relationship(back_populates="object_rules")

    def allows(self, action: str) -> bool:
        return bool(getattr(self, f"can_{action}"))


class RoleFieldRule(db.Model):
    """Field-level security: a field a role may only read, or may not see at all."""

    __tablename__ = "role_field_rules"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    object_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    field_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: "hidden" or "read_only"
    access: Mapped[str] = mapped_column(String(16))
    role: Mapped[Role] = relationship(back_populates="field_rules")


class Team(db.Model):
    """A group of users with a manager; teams nest through ``parent_id``."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", use_alter=True)
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    manager: Mapped[User | None] = relationship(foreign_keys=[manager_id], lazy="joined")
    parent: Mapped[Team | None] = relationship(remote_side=[id], lazy="joined")


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Set by an administrator: the user must choose a new password before anything else.
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    #: The TOTP secret, encrypted by bastion.encryption; None until enrolment is confirmed.
    mfa_secret: Mapped[str | None] = mapped_column(Text)
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The last accepted TOTP time step: codes for it or earlier steps are refused.
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    #: When a replayed code was last refused; shown to the user at their next sign-in.
    mfa_replay_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    roles: Mapped[list[Role]] = relationship(secondary=user_roles, lazy="selectin")
    team: Mapped[Team | None] = relationship(foreign_keys=[team_id], lazy="joined")

    @property
    def mfa_enabled(self) -> bool:
        return self.mfa_secret is not None

    @property
    def has_password(self) -> bool:
        """False for an invited user who has not chosen a password yet."""
        return self.password_hash.startswith("$argon2")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def get_id(self) -> str:
        return str(self.id)

    @property
    def display_name(self) -> str:
        return self.name or self.email


class UserSession(db.Model):
    """A signed-in session, held on the server so that it can be ended from there.

    The browser's cookie carries a random token; only its SHA-256 is stored, so a copy
    of this table cannot be replayed. Times are Unix seconds (SQLite keeps no zones).
    """

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[int] = mapped_column(Integer)
    client_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    ended_at: Mapped[int | None] = mapped_column(Integer)
    #: sign_out, idle, absolute, revoked or rotated
    end_reason: Mapped[str | None] = mapped_column(String(32))
    #: When the user last proved who they are (sign-in or re-authentication).
    authenticated_at: Mapped[int | None] = mapped_column(Integer)
    #: Privileges changed: the next request swaps this session for a fresh one.
    rotate: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class RecoveryCode(db.Model):
    """A single-use MFA recovery code, stored as a salted SHA-256 (codes carry 80 bits)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    salt: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(db.Model):
    """A personal access token; only the SHA-256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the token, shown so users can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    #: JSON list of permissions narrower than the user's, or None for all of the user's.
    scopes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user: Mapped[User] = relationship(lazy="joined")


class AuthThrottle(db.Model):
    """Failed-attempt counters per account and per client address (bastion.throttle)."""

    __tablename__ = "auth_throttle"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: Unix time of the last counted attempt.
    last_attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: No attempt for this key reaches the password check before this Unix time.
    blocked_until: Mapped[int] = mapped_column(Integer, default=0)


class PasswordToken(db.Model):
    """A single-use, time-limited link to set a password (reset or invitation)."""

    __tablename__ = "password_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: reset or invite
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)
    used_at: Mapped[int | None] = mapped_column(Integer)


class PluginState(db.Model):
    """Whether an installed plugin is enabled: the row every server process reads."""

    __tablename__ = "plugin_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(320), default="system")


class SiteSetting(db.Model):
    """Settings administrators change at runtime (the active theme, ...)."""

    __tablename__ = "site_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(320), default="system")
