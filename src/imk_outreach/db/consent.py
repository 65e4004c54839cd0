"""Consent evidence: the append-only events per subscriber and the consent wording per version.

There is no function that changes or deletes an event: evidence is only ever added. A person's events
go with the person (``subscribers erase``: the foreign key cascades).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from imk_outreach.db.engine import chunks, insert_for
from imk_outreach.db.tables import consent_events, consent_texts


@dataclass(frozen=True)
class ConsentEvent:
    """One piece of consent evidence. ``kind``: signup, confirm, preferences, unsubscribe, bounce,
    import, add. ``ip_hash`` is a keyed hash (never the address); ``consent_version`` names the wording
    the person was shown (see :func:`consent_text`); ``detail`` says what changed."""

    subscriber_id: int
    kind: str
    at: datetime
    ip_hash: str | None = None
    consent_version: str | None = None
    language: str | None = None
    source: str | None = None
    note: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


def add_consent_event(conn: Connection, event: ConsentEvent) -> None:
    conn.execute(consent_events.insert().values(**_event_values(event)))


def add_consent_events(conn: Connection, events: Sequence[ConsentEvent]) -> None:
    if events:
        conn.execute(consent_events.insert(), [_event_values(event) for event in events])


def _event_values(event: ConsentEvent) -> dict[str, Any]:
    return {
        "subscriber_id": event.subscriber_id,
        "kind": event.kind,
        "at": event.at,
        "ip_hash": event.ip_hash,
        "consent_version": event.consent_version,
        "language": event.language,
        "source": event.source,
        "note": event.note,
        "detail": json.dumps(dict(event.detail), ensure_ascii=False, sort_keys=True)
        if event.detail
        else None,
    }


def consent_events_of(conn: Connection, subscriber_id: int) -> list[ConsentEvent]:
    """The subscriber's events, oldest first (in the order they were recorded)."""
    return consent_events_by_subscriber(conn, [subscriber_id]).get(subscriber_id, [])


def consent_events_by_subscriber(conn: Connection, ids: Sequence[int]) -> dict[int, list[ConsentEvent]]:
    """subscriber id -> their events, oldest first (a batch of an export)."""
    result: dict[int, list[ConsentEvent]] = {}
    for part in chunks(list(ids)):
        query = (
            select(consent_events)
            .where(consent_events.c.subscriber_id.in_(list(part)))
            .order_by(consent_events.c.subscriber_id, consent_events.c.id)
        )
        for row in conn.execute(query):
            result.setdefault(row.subscriber_id, []).append(_event_from_row(row))
    return result


def _event_from_row(row: Any) -> ConsentEvent:
    return ConsentEvent(
        id=row.id,
        subscriber_id=row.subscriber_id,
        kind=row.kind,
        at=row.at,
        ip_hash=row.ip_hash,
        consent_version=row.consent_version,
        language=row.language,
        source=row.source,
        note=row.note,
        detail=json.loads(row.detail) if row.detail else {},
    )


def consent_text(conn: Connection, version: str, language: str) -> str | None:
    """The wording stored for consent text ``version`` in ``language``, or None."""
    query = select(consent_texts.c.text).where(
        consent_texts.c.version == version, consent_texts.c.language == language
    )
    text: str | None = conn.execute(query).scalar_one_or_none()
    return text


def consent_texts_of(conn: Connection, shown: Collection[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """version -> language -> wording, for the (version, language) pairs in ``shown``."""
    result: dict[str, dict[str, str]] = {}
    versions = sorted({version for version, _ in shown})
    if versions:
        query = select(consent_texts).where(consent_texts.c.version.in_(versions))
        for row in conn.execute(query.order_by(consent_texts.c.version, consent_texts.c.language)):
            if (row.version, row.language) in shown:
                result.setdefault(row.version, {})[row.language] = row.text
    return result


def keep_consent_text(conn: Connection, version: str, language: str, text: str, now: datetime) -> str:
    """Store the wording of ``version`` in ``language`` unless one is stored; return the stored one
    (the first wording seen for a version stays: a different one needs a new version)."""
    statement = insert_for(conn, consent_texts).values(
        version=version, language=language, text=text, created_at=now
    )
    conn.execute(statement.on_conflict_do_nothing(index_elements=["version", "language"]))
    stored = consent_text(conn, version, language)
    assert stored is not None
    return stored
