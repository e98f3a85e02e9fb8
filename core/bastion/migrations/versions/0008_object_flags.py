"""Object flags from the declaration: listed in the navigation, written by the system only.

``navigation`` False keeps a plugin's internal object (lines, rules, history) out of the
top navigation; ``system_only`` lets users read its records while only the platform and
the plugin write them (bastion.data.records refuses users' writes).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "data_objects",
        sa.Column("navigation", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "data_objects",
        sa.Column("system_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("data_objects", "system_only")
    op.drop_column("data_objects", "navigation")
