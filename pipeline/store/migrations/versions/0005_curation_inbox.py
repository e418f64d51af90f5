"""the curation inbox: watched sources' health, candidates with their sources, and the inbox's action log

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "curation_sources",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_try_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("items_seen", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_sources")),
    )
    op.create_table(
        "curation_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("guid_hash", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=True),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_candidates")),
        sa.UniqueConstraint("url_hash", name=op.f("uq_curation_candidates_url_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_curation_candidates_state_seen", "curation_candidates", ["state", "first_seen_at"])
    op.create_index("ix_curation_candidates_guid_hash", "curation_candidates", ["guid_hash"])
    op.create_table(
        "curation_candidate_sources",
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("guid", sa.String(length=500), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("candidate_id", "source_id", name=op.f("pk_curation_candidate_sources")),
    )
    op.create_index("ix_curation_candidate_sources_guid", "curation_candidate_sources", ["source_id", "guid"])
    op.create_table(
        "curation_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("candidate_id", sa.Integer(), nullable=True),
        sa.Column("slug", sa.String(length=120), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_actions")),
    )
    op.create_index("ix_curation_actions_at", "curation_actions", ["at"])


def downgrade() -> None:
    op.drop_table("curation_actions")
    op.drop_table("curation_candidate_sources")
    op.drop_table("curation_candidates")
    op.drop_table("curation_sources")
