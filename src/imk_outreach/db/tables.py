"""SQLAlchemy Core tables. Migrations in ``migrations/versions`` must create exactly this schema
(a test compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the database; every datetime must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sources = Table(
    "sources",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("type", String(20), nullable=False),
    Column("url", Text, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_run_at", UTCDateTime),
    Column("last_status", String(20)),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("last_warning", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("items_seen", Integer, nullable=False, default=0),
)

items = Table(
    "items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("source", String(100), nullable=False),
    Column("title", Text, nullable=False),
    Column("summary_html", Text, nullable=False),
    Column("published_at", UTCDateTime, nullable=False),
    Column("date_estimated", Boolean, nullable=False, default=False),
    Column("language", String(8), nullable=False),
    # image: a stored copy, "media/<sha256>.jpg" (services/media.py); image_source: the URL it was made
    # from, so an unchanged item is not fetched again.
    Column("image", Text),
    Column("image_source", Text),
    Column("translations", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Excluded from editions by a staff member (the web app's items page): when, and by whom (the name).
    Column("excluded_at", UTCDateTime),
    Column("excluded_by", String(100)),
    Index("ix_items_published_at", "published_at"),
)

# Tags and sources of an item live in their own tables so selection by tag or source is plain SQL
# on both SQLite and PostgreSQL (no JSON operators).
item_tags = Table(
    "item_tags",
    metadata,
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(100), primary_key=True),
    Index("ix_item_tags_tag", "tag"),
)

item_sources = Table(
    "item_sources",
    metadata,
    Column("item_id", String(40), ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(100), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Index("ix_item_sources_source", "source"),
)

editions = Table(
    "editions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("date", UTCDateTime, nullable=False),
    Column("state", String(20), nullable=False),
    Column("sections", JSON, nullable=False),  # [{"id", "heading": {lang: text}}] in order
    Column("content_hash", String(64)),
    Column("approved_by", String(200)),
    Column("approved_at", UTCDateTime),
    Column("approved_hash", String(64)),
    Column("skip_reason", Text),
    Column("list_name", String(100)),  # the mailing list it was queued for (set by send)
    Index("ix_editions_campaign", "campaign"),
)

# The frozen selection of an edition; also answers "which items did this campaign already send".
edition_items = Table(
    "edition_items",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(40), ForeignKey("items.id"), primary_key=True),
    Column("section", String(100), nullable=False),
    Column("position", Integer, nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased: unique ignoring case
    Column("name", String(200), nullable=False),
    Column("language", String(8), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("signup_at", UTCDateTime),
    Column("confirmed_at", UTCDateTime),
    Column("unsubscribed_at", UTCDateTime),
    Column("consent_version", String(100)),
    Column("ip_hash", String(64)),
    Column("source", String(200)),
    Column("bounce_reason", Text),
    # Random per subscriber and per sign-up after erasure: part of every token, so a link of an erased
    # person stays dead even if the same address signs up again into a reused row id.
    Column("token_nonce", String(32)),
    Index("ix_subscribers_status", "status"),
)

subscriber_lists = Table(
    "subscriber_lists",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("list", String(100), primary_key=True),
    Index("ix_subscriber_lists_list", "list"),
)

# Erased subscribers leave only a keyed hash of their address, so a re-import cannot add them by accident.
erased_addresses = Table(
    "erased_addresses",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("erased_at", UTCDateTime, nullable=False),
)

CONFIRMATIONS = "edition_id IS NULL"

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition_id", Integer, ForeignKey("editions.id")),  # NULL: a confirmation mail (channel confirm)
    Column("channel", String(100), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("language", String(8), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(100)),
    Column("lease_until", UTCDateTime),
    Column("message_id", String(300)),
    Column("reply", Text),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Social posts (subscriber_id NULL): which post of the edition on this channel (the item id, or
    # ``digest``), the rendered post (models.Post as JSON) and the platform's web address of it.
    Column("post_key", String(200)),
    Column("payload", JSON),
    Column("remote_url", Text),
    Column("scheduled_at", UTCDateTime),  # the slot it was given (next_attempt_at moves on a retry)
    UniqueConstraint("edition_id", "channel", "subscriber_id", name="uq_outbox_edition_channel_recipient"),
    Index("uq_outbox_edition_channel_post", "edition_id", "channel", "post_key", unique=True),
    Index("ix_outbox_channel_scheduled", "channel", "scheduled_at"),
    Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_outbox_subscriber", "subscriber_id"),
    # Confirmation mails (no edition), by state: the ones waiting are claimed first, so a sign-up
    # during a campaign of 100,000 is not answered after it. Partial: a campaign's rows are not in it.
    Index(
        "ix_outbox_confirmations",
        "state",
        "next_attempt_at",
        sqlite_where=text(CONFIRMATIONS),
        postgresql_where=text(CONFIRMATIONS),
    ),
)

# A social channel's state: paused (its credentials were refused) until ``channels test`` passes again,
# and the platform session a publisher keeps between processes (Bluesky).
channel_states = Table(
    "channel_states",
    metadata,
    Column("channel", String(100), primary_key=True),
    Column("paused_at", UTCDateTime),
    Column("paused_reason", Text),
    Column("checked_at", UTCDateTime),
    Column("checked_as", Text),
    Column("session", Text),
    Column("updated_at", UTCDateTime, nullable=False),
)

app_settings = Table(
    "app_settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# What an approved edition rendered to when it was queued: workers send exactly this, so what goes out
# is what was approved, and no worker re-renders.
edition_messages = Table(
    "edition_messages",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    Column("language", String(8), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("fallbacks", JSON, nullable=False),
)

# -- the scheduler ---------------------------------------------------------------------------------

# Per campaign: fire times up to ``checked_until`` have been handled, so a restart knows which runs it
# missed (APScheduler's job store forgets a fired one-off job and recomputes replaced jobs from now).
campaign_schedules = Table(
    "campaign_schedules",
    metadata,
    Column("campaign", String(100), primary_key=True),
    Column("schedule", Text, nullable=False),  # the cron or at text it was last checked against
    Column("checked_until", UTCDateTime, nullable=False),
)

# One row per scheduled run of a campaign that fell due (missed ones coalesced into the latest).
# UNIQUE (campaign, due_at): a run is handled once, however often the trigger fires.
campaign_runs = Table(
    "campaign_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("deadline", UTCDateTime, nullable=False),  # due_at + grace: later than this is late
    Column("state", String(20), nullable=False),  # waiting | queued | held | skipped | failed
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="SET NULL")),
    Column("missed", Integer, nullable=False, default=0),  # earlier fire times coalesced into this one
    Column("note", Text),
    Column("notified_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("campaign", "due_at", name="uq_campaign_runs_campaign_due_at"),
    Index("ix_campaign_runs_state", "state"),
)

# Live processes: the scheduler (role 'scheduler', at most one holds it) and delivery workers, each
# with a heartbeat, so status, /healthz and a restarted process can tell who is alive.
processes = Table(
    "processes",
    metadata,
    Column("name", String(200), primary_key=True),  # host:pid:start
    Column("role", String(20), nullable=False),  # scheduler | standby | worker
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("state", String(40), nullable=False),  # running | stopping
    Column("info", JSON, nullable=False),  # next runs, last job outcomes (shown by status)
)


# The consent wording people were shown, per version and language (the exact text, as evidence).
consent_texts = Table(
    "consent_texts",
    metadata,
    Column("version", String(100), primary_key=True),
    Column("language", String(8), primary_key=True),
    Column("text", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Append-only consent evidence, one row per event: signup, confirm, preferences, unsubscribe, bounce,
# import (erasure deletes a person's rows with the person; only the keyed hash of the address stays).
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("ip_hash", String(64)),
    Column("consent_version", String(100)),
    Column("language", String(8)),
    Column("source", String(200)),
    Column("note", Text),
    Column("detail", Text),  # JSON: what changed (lists, language), the reply of a bounce
    Index("ix_consent_events_subscriber", "subscriber_id", "id"),
    sqlite_autoincrement=True,
)


# Web sign-ups of the last while, for the limits against mail bombing (services/throttle.py): one row
# per sign-up let through, with keyed hashes of the client's network and of the mailbox (never the IP
# or the address); rows older than the longest limit's window are deleted by the next sign-up.
signup_attempts = Table(
    "signup_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("client_key", String(64)),
    Column("mailbox_key", String(64), nullable=False),
    Index("ix_signup_attempts_at", "at"),
    Index("ix_signup_attempts_client", "client_key", "at"),
    Index("ix_signup_attempts_mailbox", "mailbox_key", "at"),
)


# -- staff of the web app (services/staff.py) ------------------------------------------------------

# Staff users: the password as an argon2id hash (with its own salt and parameters), never in clear.
staff_users = Table(
    "staff_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("email", String(320)),
    Column("language", String(8)),  # NULL: the browser's Accept-Language decides
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Server-side sessions of the web app: the SHA-256 of the cookie's token (never the token itself, so
# a copy of the database signs nobody in), the session's CSRF token, and when it began and was last used.
staff_sessions = Table(
    "staff_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("staff_users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Index("ix_staff_sessions_user_id", "user_id"),
)

# Failed sign-ins of the last while, per client (a keyed hash of its address or IPv6 /64, never the
# address): too many in the window and the client is refused for a while. A row is written before the
# password is checked (so attempts at once count each other) and deleted again when it was right.
staff_login_attempts = Table(
    "staff_login_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("client_key", String(64), nullable=False),
    Index("ix_staff_login_attempts_at", "at"),
    Index("ix_staff_login_attempts_client_key", "client_key", "at"),
)
