"""Blind indexes: a field setting for exact-match lookup on encrypted fields.

The shadow columns themselves live in the record tables, which the platform creates and
alters from the definitions (bastion.data.storage, bastion.data.blind_index).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "data_fields",
        sa.Column("blind_index", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("data_fields", "blind_index")
