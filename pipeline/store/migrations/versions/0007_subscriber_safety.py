"""signup_requests: the choices of each unconfirmed sign-up, kept with the confirmation token that names them, so a
second sign-up for the same address cannot change what the owner of the inbox confirms

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),
        sa.Column("cadence", sa.String(length=20), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_requests")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_signup_requests_subscriber", "signup_requests", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_signup_requests_subscriber", table_name="signup_requests")
    op.drop_table("signup_requests")
