"""The schema, declared once. Alembic migrations must produce exactly this (tests/integration/test_migrations.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})



class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which has no zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTC_DT = UTCDateTime()

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    # Lower-cased address: the unique key, so Ann@Example.org and ann@example.org are one subscriber.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    # Topic ids joined by ';' (as in the CSV). Empty means "the default, non-sensitive topics".
    Column("topics", Text, nullable=False, default=""),
    Column("cadence", String(20), nullable=False, default="weekly"),
    Column("timezone", String(64), nullable=False, default="UTC"),
    # pending | confirmed | unsubscribed
    Column("status", String(20), nullable=False, default="pending"),
    Column("consent_source", String(40)),
    Column("consent_at", UTC_DT),
    Column("created_at", UTC_DT, nullable=False),
    Column("updated_at", UTC_DT, nullable=False),
    Column("confirmation_sent_at", UTC_DT),
    Column("unsubscribed_at", UTC_DT),
    Column("paused_until", UTC_DT),
    # Bumped when a subscriber leaves or deletes data, so old links stop working.
    Column("token_version", Integer, nullable=False, default=0),
    # Ids are never reused, so a link signed for a deleted subscriber can never match a new one.
    sqlite_autoincrement=True,
)
Index("ix_subscribers_status_cadence", subscribers.c.status, subscribers.c.cadence)

suppressions = Table(
    "suppressions", metadata,
    Column("email_key", String(320), primary_key=True),
    # bounce | dropped | spamreport | unsubscribe | deceased | manual | …
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("source", String(40), nullable=False, default="manual"),
    Column("created_at", UTC_DT, nullable=False),
)

# One row per unconfirmed web sign-up: the choices it was made with. Its confirmation token names the row, so
# confirming applies exactly what was chosen in that request, whatever later sign-ups for the address asked for.
signup_requests = Table(
    "signup_requests", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("topics", Text, nullable=False),
    Column("cadence", String(20), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("created_at", UTC_DT, nullable=False),
    # Ids are never reused, so a token for a request that is gone can never name a new one.
    sqlite_autoincrement=True,
)
Index("ix_signup_requests_subscriber", signup_requests.c.subscriber_id)

# Every email that is not a digest, written in the same transaction as the change that causes it and sent by the
# outbox sender (pipeline.delivery.outbox). state: pending | sent | failed | dropped. ``message`` (the whole MIME
# message, which holds the address and signed links) is cleared once the message is sent, failed or dropped.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("message", LargeBinary),
    Column("subscriber_id", Integer),
    Column("signup_request_id", Integer),  # a confirmation's sign-up: dropped with it after 24 hours unsent
    Column("created_at", UTC_DT, nullable=False),
    Column("due_at", UTC_DT, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_until", UTC_DT),  # a sender's claim; another may take the message once it has passed
    Column("lease_token", String(32)),
    Column("finished_at", UTC_DT),
    Column("reason", String(300)),  # why it failed, was dropped, or why the last try did not go
    sqlite_autoincrement=True,
)
Index("ix_outbox_state_due", outbox.c.state, outbox.c.due_at)
Index("ix_outbox_subscriber", outbox.c.subscriber_id)

issues = Table(
    "issues", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("fire_at", UTC_DT, nullable=False),
    Column("period_start", UTC_DT, nullable=False),
    Column("period_end", UTC_DT, nullable=False),
    Column("planned_at", UTC_DT, nullable=False),
    Column("completed_at", UTC_DT),
    # The database's own clock at planning, less a margin: subscriber_changes from then on are checked again
    # when a batch is claimed. Written and compared only in SQL. None (planned before revision 0003): check all.
    Column("changes_since", DateTime(timezone=True)),
    UniqueConstraint("digest", "fire_at", name="uq_issues_digest_fire_at"),
)

# The delivery ledger: one row per recipient of an issue, fixed when the issue is first planned.
deliveries = Table(
    "deliveries", metadata,
    # No foreign keys: they made the bulk insert of an issue's rows four times slower on PostgreSQL. Ledger rows
    # go with their subscriber in lifecycle.delete_subscriber, and issues are never deleted.
    Column("issue_id", Integer, primary_key=True),
    Column("subscriber_id", Integer, primary_key=True),
    # pending | in_flight | sent | failed | suppressed | unknown. Deliberately in no index: each row changes
    # state twice per send, and an indexed state would rewrite index entries each time.
    Column("state", String(20), nullable=False, default="pending"),
    Column("variant", String(64), nullable=False),
    # On PostgreSQL the table has fillfactor 45 (migration 0002), so those state changes are in-place updates.
    # Fixed when the issue is planned: each variant's recipients in runs of one backend batch. A sender claims
    # a batch at a time, and walks them in order through ix_deliveries_issue_batch.
    Column("batch_no", Integer, nullable=False, default=0, server_default="0"),
    Column("batch_id", String(64)),
    Column("claimed_by", String(128)),
    Column("claimed_at", UTC_DT),
    Column("sent_at", UTC_DT),
    # deliver_at: local digests only: when this recipient is due (local_time in their zone). NULL: due at once.
    Column("due_at", UTC_DT),
    Column("attempts", Integer, nullable=False, default=0),
    # True when the row was in flight during a crash and was sent again: a possible duplicate.
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    Column("reason", Text),
    Column("provider_status", String(40)),
    # The recipient's address and token version as planned, so that a claim need not look up each subscriber;
    # what changed since is found through subscriber_changes. Cleared once the row is no longer open.
    Column("email", String(320)),
    Column("token_version", Integer),
)
Index("ix_deliveries_issue_batch", deliveries.c.issue_id, deliveries.c.batch_no, deliveries.c.subscriber_id)

# Written by database triggers (migration 0003), never by the application: which subscribers changed, and when
# (the database's clock), in a way that can make them unmailable or change their address or links.
subscriber_changes = Table(
    "subscriber_changes", metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("CURRENT_TIMESTAMP")),
)
Index("ix_subscriber_changes_subscriber", subscriber_changes.c.subscriber_id, subscriber_changes.c.changed_at)
Index("ix_subscriber_changes_changed_at", subscriber_changes.c.changed_at)

# A claimed batch whose sending has started. Until ``outcome`` is set, after a crash its rows are the possible
# duplicates (a claim never posted went nowhere). When the backend took the whole batch, ``outcome`` records it in
# one row, and the batch's own rows are brought in line afterwards (ledger.settle), off the sending path.
delivery_posts = Table(
    "delivery_posts", metadata,
    Column("issue_id", Integer, primary_key=True),
    Column("batch_id", String(64), primary_key=True),
    Column("batch_no", Integer, nullable=False),
    Column("posted_at", UTC_DT, nullable=False),
    Column("outcome", String(20)),  # None while posting; "sent" once the backend took every row of it
    Column("provider_status", String(40)),
    Column("finished_at", UTC_DT),
)

webhook_events = Table(
    "webhook_events", metadata,
    Column("event_id", String(128), primary_key=True),
    Column("event", String(40), nullable=False),
    Column("received_at", UTC_DT, nullable=False),
)

rate_events = Table(
    "rate_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(200), nullable=False),
    Column("at", UTC_DT, nullable=False),
)
Index("ix_rate_events_key_at", rate_events.c.key, rate_events.c.at)

# ----- the editorial record (DESIGN.md "Editorial record"; pipeline/editorial/) -----

# People who write, review and manage articles. No default account exists; `pipeline staff add` makes them.
staff = Table(
    "staff", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),  # editor | reviewer | admin
    Column("credentials", String(200), nullable=False, default=""),
    Column("password_hash", Text, nullable=False),  # argon2id, in its own encoded form
    Column("totp_secret", String(64)),  # base32; a second factor where set
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTC_DT, nullable=False),
    Column("updated_at", UTC_DT, nullable=False),
)

# One row per distinct reviewed text of an article; never updated (a trigger refuses it on PostgreSQL).
revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(120), nullable=False),
    Column("hash", String(64), nullable=False),  # SHA-256 of ``text``
    Column("text", Text, nullable=False),  # the canonical reviewed text (JSON)
    Column("author", String(200), nullable=False),  # staff:<id> or file:content/<slug>.md
    Column("created_at", UTC_DT, nullable=False),
    UniqueConstraint("slug", "hash", name="uq_revisions_slug_hash"),
)

# Each names exactly one revision. kind: staff (an account proved who it is) or attested (front matter).
reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(120), nullable=False),
    Column("revision", String(64), nullable=False),
    Column("verdict", String(20), nullable=False),  # approved | changes_requested
    Column("kind", String(20), nullable=False),
    Column("staff_id", Integer),
    # As shown to readers, fixed when the review was given.
    Column("reviewer", String(500), nullable=False),
    Column("reviewed_on", Date, nullable=False),
    Column("at", UTC_DT, nullable=False),
    Column("note", Text, nullable=False, default=""),
)
Index("ix_reviews_slug", reviews.c.slug, reviews.c.id)

# What is scheduled: one row per article. The text comes from its newest approved revision, never from here.
publications = Table(
    "publications", metadata,
    Column("slug", String(120), primary_key=True),
    Column("state", String(20), nullable=False),  # scheduled | retracted
    Column("publish_at", UTC_DT, nullable=False),
    Column("author", String(200)),
    Column("updated_at", UTC_DT),
    Column("changed_at", UTC_DT, nullable=False),
)

# Append-only: the application only inserts; on PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE.
# No subscriber data: actors are staff:<id>, file:…, operator, feed-build or unknown.
audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("event", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", UTC_DT, nullable=False),
    Column("slug", String(120)),
    Column("revision", String(64)),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_audit_log_slug", audit_log.c.slug, audit_log.c.id)
Index("ix_audit_log_at", audit_log.c.at)

# Staff sessions behind an opaque cookie: only the SHA-256 of the cookie's value is kept. stage: code (password
# proved, one-time code to come), enrol (a second factor to set up) or full. ``stamp`` is a digest of the account's
# password hash when the session began, so a password change ends it.
staff_sessions = Table(
    "staff_sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("staff_id", Integer, nullable=False),
    Column("stage", String(10), nullable=False),
    Column("stamp", String(64), nullable=False),
    Column("pending_secret", String(64)),  # base32, during enrolment only
    Column("created_at", UTC_DT, nullable=False),
    Column("last_seen_at", UTC_DT, nullable=False),
    Column("password_at", UTC_DT, nullable=False),  # when the password was last entered (approval re-asks after 5 min)
)
Index("ix_staff_sessions_staff_id", staff_sessions.c.staff_id)
# --- curation inbox (issue 16) ---------------------------------------------------------------------------------
# Each watched source's fetch state and health, keyed by its id in content/sources.yaml.
curation_sources = Table(
    "curation_sources", metadata,
    Column("id", String(64), primary_key=True),
    Column("etag", String(500)),
    Column("last_modified", String(100)),
    Column("last_try_at", UTC_DT),
    Column("last_success_at", UTC_DT),
    Column("last_error", Text),
    Column("items_seen", Integer, nullable=False, default=0),  # entries in the feed at the last successful read
    Column("failures", Integer, nullable=False, default=0),  # in a row; drives the backoff
    Column("next_try_at", UTC_DT),  # not before: backoff, or the server's Retry-After
)

# One outside story, however many feeds carry it: known by its canonical URL (url_hash) or a URI-like GUID.
curation_candidates = Table(
    "curation_candidates", metadata,
    Column("id", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("url_hash", String(64), nullable=False, unique=True),  # SHA-256 of the canonical URL
    Column("guid_hash", String(64)),  # SHA-256 of a GUID that is a URI, so it means the same in every feed
    Column("title", Text, nullable=False, default=""),  # plain text, bounded (outside text: reference only)
    Column("summary", Text, nullable=False, default=""),
    Column("published_at", UTC_DT),
    Column("first_seen_at", UTC_DT, nullable=False),
    Column("state", String(20), nullable=False, default="new"),  # new | dismissed | promoted
    Column("slug", String(120)),
    Column("acted_at", UTC_DT),
    sqlite_autoincrement=True,
)
Index("ix_curation_candidates_state_seen", curation_candidates.c.state, curation_candidates.c.first_seen_at)
Index("ix_curation_candidates_guid_hash", curation_candidates.c.guid_hash)

curation_candidate_sources = Table(
    "curation_candidate_sources", metadata,
    Column("candidate_id", Integer, primary_key=True),
    Column("source_id", String(64), primary_key=True),
    Column("guid", String(500)),  # the GUID this source gave it
    Column("first_seen_at", UTC_DT, nullable=False),
    Column("seq", Integer, nullable=False, default=0),  # 0 for the source that carried it first, then 1, 2 …
)
Index("ix_curation_candidate_sources_guid", curation_candidate_sources.c.source_id, curation_candidate_sources.c.guid)

# What happened in the inbox (fetched, promoted, dismissed, dropped), written only by curation.actions.record.
curation_actions = Table(
    "curation_actions", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTC_DT, nullable=False),
    Column("action", String(20), nullable=False),
    Column("source_id", String(64)),
    Column("candidate_id", Integer),
    Column("slug", String(120)),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_curation_actions_at", curation_actions.c.at)
# --- end curation inbox ------------------------------------------------------------------------------------------

# Values an installation makes once and keeps for ever, whatever its settings become (store/site_keys.py).
site_keys = Table(
    "site_keys", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTC_DT, nullable=False),
)

# APScheduler's own job table lives in the same database but belongs to APScheduler.
FOREIGN_TABLES = {"apscheduler_jobs", "alembic_version"}
