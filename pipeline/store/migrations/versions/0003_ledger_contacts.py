"""deliveries carry each recipient's address and token version from planning; subscriber_changes logs, by trigger,
every change since that may make a planned recipient unmailable or change their contact

A later migration that rebuilds subscribers or suppressions on SQLite (batch_alter_table copies the table) drops
these triggers with the old table and must create them again; the ledger tests fail if they are missing.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# What can stop a planned recipient being mailable, or change what their email needs: the columns of the
# eligibility test and the contact, the subscriber's deletion, and a suppression of their address.
_WATCHED = ("status", "paused_until", "email", "email_key", "token_version")

_SQLITE = [
    "CREATE TRIGGER tr_subscribers_changed AFTER UPDATE OF {cols} ON subscribers WHEN {changed} "
    "BEGIN INSERT INTO subscriber_changes (subscriber_id) VALUES (NEW.id); END".format(
        cols=", ".join(_WATCHED), changed=" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED)),
    "CREATE TRIGGER tr_subscribers_deleted AFTER DELETE ON subscribers "
    "BEGIN INSERT INTO subscriber_changes (subscriber_id) VALUES (OLD.id); END",
    "CREATE TRIGGER tr_suppressions_added AFTER INSERT ON suppressions "
    "BEGIN INSERT INTO subscriber_changes (subscriber_id) SELECT id FROM subscribers WHERE email_key = NEW.email_key; END",
]

# clock_timestamp(), not now(): the time of the change itself, not of its transaction's start.
_POSTGRES = [
    "CREATE FUNCTION log_subscriber_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO subscriber_changes (subscriber_id, changed_at) "
    "VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, clock_timestamp()); RETURN NULL; END $$",
    "CREATE FUNCTION log_suppression() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO subscriber_changes (subscriber_id, changed_at) "
    "SELECT id, clock_timestamp() FROM subscribers WHERE email_key = NEW.email_key; RETURN NULL; END $$",
    "CREATE TRIGGER tr_subscribers_changed AFTER UPDATE OF {cols} ON subscribers FOR EACH ROW WHEN ({changed}) "
    "EXECUTE FUNCTION log_subscriber_change()".format(
        cols=", ".join(_WATCHED), changed=" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)),
    "CREATE TRIGGER tr_subscribers_deleted AFTER DELETE ON subscribers FOR EACH ROW "
    "EXECUTE FUNCTION log_subscriber_change()",
    "CREATE TRIGGER tr_suppressions_added AFTER INSERT ON suppressions FOR EACH ROW EXECUTE FUNCTION log_suppression()",
]


def upgrade() -> None:
    op.create_table(
        "subscriber_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_changes")),
    )
    op.create_index("ix_subscriber_changes_subscriber", "subscriber_changes", ["subscriber_id", "changed_at"])
    op.create_index("ix_subscriber_changes_changed_at", "subscriber_changes", ["changed_at"])
    op.add_column("deliveries", sa.Column("email", sa.String(length=320), nullable=True))
    op.add_column("deliveries", sa.Column("token_version", sa.Integer(), nullable=True))
    op.add_column("issues", sa.Column("changes_since", sa.DateTime(timezone=True), nullable=True))
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    for name, table in (("tr_subscribers_changed", "subscribers"), ("tr_subscribers_deleted", "subscribers"),
                        ("tr_suppressions_added", "suppressions")):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS log_subscriber_change()")
        op.execute("DROP FUNCTION IF EXISTS log_suppression()")
    with op.batch_alter_table("issues") as batch_op:
        batch_op.drop_column("changes_since")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("token_version")
        batch_op.drop_column("email")
    op.drop_table("subscriber_changes")
