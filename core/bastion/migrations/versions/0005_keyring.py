"""Keyring: data keys wrapped by the master key, and the online re-encryption jobs.

Existing installations keep their credentials key: `bastion upgrade` (or the first use
of the keyring) wraps it as data key version 1, so every ``v1:`` ciphertext keeps
decrypting.

Revision ID: 0005
Revises: 0004 (audit trail)
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        # NULL once retired: the key material is destroyed, only its history stays.
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("master_key_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("purpose", "version", name="uq_encryption_keys_purpose_version"),
    )
    op.create_table(
        "encryption_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        # rotate, encrypt_field, decrypt_field
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("object_name", sa.String(40), nullable=True),
        sa.Column("field_name", sa.String(50), nullable=True),
        sa.Column("target_version", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),  # running, done
        sa.Column("migrated", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_encryption_jobs_state", "encryption_jobs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_encryption_jobs_state", "encryption_jobs")
    op.drop_table("encryption_jobs")
    op.drop_table("encryption_keys")
