"""Helpers for the sign-up tests: settings whose mail goes to the test SMTP server with quick retries,
and readers for the confirmation rows of the outbox (``edition_id`` NULL, channel ``confirm``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from imk_outreach.config import Settings
from imk_outreach.db import tables
from imk_outreach.services.database import engine_for
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import LISTS, PUBLIC_URL

FORM = {"email": "anna@example.org", "name": "Anna", "language": "en", "lists": ["newsletter"]}


def signup_settings(make_settings: Any, smtp: SmtpTestServer, **extra: Any) -> Settings:
    """Two lists, mail to ``smtp``, a retry one minute after a temporary failure; ``extra`` as in
    config.yaml (e.g. ``signup={"per_client": "2/1h"}``)."""
    data: dict[str, Any] = {
        "lists": LISTS,
        "public_url": PUBLIC_URL,
        "sender": {"name": "Cluster IMK", "email": "newsletter@example.org"},
        "consent_version": "2026-11",
        "smtp": {
            "host": smtp.host,
            "port": smtp.port,
            "timeout": 5,
            "connections": 2,
            "retry": {"base_delay": "1m", "max_delay": "10m", "max_attempts": 3},
        },
        **extra,
    }
    settings: Settings = make_settings([], **data)
    return settings


@dataclass(frozen=True)
class ConfirmRow:
    id: int
    subscriber_id: int | None
    language: str
    state: str
    attempts: int
    next_attempt_at: datetime
    message_id: str | None
    reply: str | None
    error: str | None


def confirm_rows(settings: Settings) -> list[ConfirmRow]:
    """The outbox rows without an edition, in the order they were queued."""
    outbox = tables.outbox
    query = (
        select(
            outbox.c.id,
            outbox.c.subscriber_id,
            outbox.c.language,
            outbox.c.state,
            outbox.c.attempts,
            outbox.c.next_attempt_at,
            outbox.c.message_id,
            outbox.c.reply,
            outbox.c.error,
        )
        .where(outbox.c.edition_id.is_(None), outbox.c.channel == "confirm")
        .order_by(outbox.c.id)
    )
    with engine_for(settings).connect() as conn:
        return [ConfirmRow(*row) for row in conn.execute(query)]


def states(settings: Settings) -> list[str]:
    return [row.state for row in confirm_rows(settings)]
