"""Identity and access: teams, MFA, recovery codes, API tokens, throttling, role rules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["users.id"], name=op.f("fk_teams_manager_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["teams.id"], name=op.f("fk_teams_parent_id_teams"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    # Plain ADD COLUMN, not a batch copy of the users table: on SQLite the copy would
    # drop the old table and fire the ON DELETE CASCADE of every table referencing users.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE users ADD COLUMN team_id INTEGER CONSTRAINT fk_users_team_id_teams "
            "REFERENCES teams (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("users", sa.Column("team_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_users_team_id_teams"), "users", "teams", ["team_id"], ["id"],
            ondelete="SET NULL",
        )
    op.add_column("users", sa.Column("password_changed_at", sa.DateTime(timezone=True)))
    op.add_column(
        "users",
        sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("users", sa.Column("mfa_secret", sa.Text()))
    op.add_column("users", sa.Column("mfa_enabled_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("mfa_last_step", sa.BigInteger()))
    op.add_column("users", sa.Column("mfa_replay_at", sa.DateTime(timezone=True)))
    op.add_column(
        "roles", sa.Column("require_mfa", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("user_sessions", sa.Column("authenticated_at", sa.Integer()))
    op.add_column(
        "user_sessions",
        sa.Column("rotate", sa.Boolean(), nullable=False, server_default=sa.false()),
    )

    op.create_table(
        "role_object_rules",
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("object_name", sa.String(length=100), nullable=False),
        sa.Column("can_read", sa.Boolean(), nullable=False),
        sa.Column("can_create", sa.Boolean(), nullable=False),
        sa.Column("can_edit", sa.Boolean(), nullable=False),
        sa.Column("can_delete", sa.Boolean(), nullable=False),
        sa.Column("can_import", sa.Boolean(), nullable=False),
        sa.Column("can_export", sa.Boolean(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_role_object_rules_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role_id", "object_name", name=op.f("pk_role_object_rules")),
    )
    op.create_table(
        "role_field_rules",
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.Column("object_name", sa.String(length=100), nullable=False),
        sa.Column("field_name", sa.String(length=100), nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_role_field_rules_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "role_id", "object_name", "field_name", name=op.f("pk_role_field_rules")
        ),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_attempt", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_throttle")),
    )
    op.create_table(
        "password_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_password_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_tokens")),
    )
    op.create_index(op.f("ix_password_tokens_user_id"), "password_tokens", ["user_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Dropping users.team_id means copying the users table, and on SQLite dropping the
        # old copy fires ON DELETE CASCADE into sessions and role assignments.
        raise NotImplementedError(
            "Downgrading an SQLite installation is not supported; restore the backup taken "
            "before the upgrade (deploy/backup.sh)."
        )
    for index, table in (
        ("ix_password_tokens_user_id", "password_tokens"),
        ("ix_api_tokens_user_id", "api_tokens"),
        ("ix_recovery_codes_user_id", "recovery_codes"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "password_tokens",
        "auth_throttle",
        "api_tokens",
        "recovery_codes",
        "role_field_rules",
        "role_object_rules",
    ):
        op.drop_table(table)
    op.drop_column("user_sessions", "rotate")
    op.drop_column("user_sessions", "authenticated_at")
    op.drop_column("roles", "require_mfa")
    op.drop_constraint("fk_users_team_id_teams", "users", type_="foreignkey")
    for column in (
        "team_id",
        "password_changed_at",
        "must_change_password",
        "mfa_secret",
        "mfa_enabled_at",
        "mfa_last_step",
        "mfa_replay_at",
    ):
        op.drop_column("users", column)
    op.drop_table("teams")
