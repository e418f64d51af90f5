"""deliveries.due_at: when each recipient of a deliver_at: local issue is due (NULL: at once, as before)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column with no default: on PostgreSQL and SQLite alike, no rewrite of existing rows.
    op.add_column("deliveries", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("due_at")
