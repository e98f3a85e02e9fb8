"""Read-only fields: a plugin's field whose value only the platform and the plugin set.

Users' writes to such a field are refused by the record service (bastion.data.records);
the column records the declaration so every process reads it from the definitions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "data_fields",
        sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("data_fields", "read_only")
