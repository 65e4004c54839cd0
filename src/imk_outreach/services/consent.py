"""Consent evidence: every event of a subscriber, append-only, with the exact consent wording shown.

Decisions:

* One event per thing that happened to a person's consent: ``signup`` (web form), ``confirm`` (their
  link), ``preferences`` (language or lists changed), ``unsubscribe`` (link, one-click or staff),
  ``bounce`` (the mail server refused the address for good), ``import`` (a CSV row added or changed
  them) and ``add`` (staff added them by hand). Each keeps the time, the keyed hash of the IP when there
  is one, the consent text version and language, the source (``web:/subscribe``, ``import:FILE.csv``,
  ``cli``, ...), a note (an import's ``--consent-note``, a bounce's reason) and a detail (what changed).
  Events are only ever added; the subscriber row keeps the latest state, the events the whole story, so
  a new sign-up of an unsubscribed or bounced address leaves the earlier evidence as it was.
* The wording: the sign-up form shows ``web/_consent.html.j2`` (staff may override it). Its text,
  rendered in the sign-up's language with ``settings.consent_version``, is kept in ``consent_texts`` the
  first time a sign-up uses that (version, language). A changed wording needs a new ``consent_version``:
  when the same version renders differently, the wording stored first stays (it is what the earlier
  sign-ups saw), the new event keeps the wording it was shown in its detail (``consent_text``) so the
  evidence stays true, and an error is logged asking for a new version. The sign-up itself goes on:
  turning people away for an operator's slip would help nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import Connection

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.consent import ConsentEvent
from imk_outreach.render.env import render_template
from imk_outreach.services.database import engine_for
from imk_outreach.services.rendering import template_env

__all__ = [
    "KINDS",
    "CONSENT_TEMPLATE",
    "ConsentEvent",
    "Evidence",
    "record",
    "wording",
    "history",
    "event_json",
    "compact",
]

log = logging.getLogger(__name__)

KINDS = ("signup", "confirm", "preferences", "unsubscribe", "bounce", "import", "add")
CONSENT_TEMPLATE = "web/_consent.html.j2"


def record(
    conn: Connection,
    subscriber_id: int | None,
    kind: str,
    now: datetime,
    *,
    settings: Settings | None = None,
    ip_hash: str | None = None,
    consent_version: str | None = None,
    language: str | None = None,
    source: str | None = None,
    note: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> ConsentEvent:
    """Add one consent event to the subscriber's evidence (in the caller's transaction).

    :param settings: give it when the person was shown the consent text (a web sign-up): the event then
        names ``settings.consent_version`` and the wording shown in ``language`` is kept in
        ``consent_texts`` the first time (see the module's decisions for a changed wording).
    :raises ValueError: an unknown ``kind``, or a subscriber without an id (a programming error).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown consent event {kind!r} (kinds: {', '.join(KINDS)})")
    if subscriber_id is None:
        raise ValueError("a consent event needs a stored subscriber")
    extra = dict(detail or {})
    if settings is not None:
        consent_version = settings.consent_version
        language = language or settings.default_language
        shown = wording(settings, language)
        if store.keep_consent_text(conn, consent_version, language, shown, now) != shown:
            log.error(
                "consent text version %s (%s) now reads differently from the wording stored for it; "
                "set a new consent_version in config.yaml whenever the wording changes "
                "(this sign-up keeps the wording it was shown)",
                consent_version,
                language,
            )
            extra["consent_text"] = shown
    event = ConsentEvent(
        subscriber_id=subscriber_id,
        kind=kind,
        at=now,
        ip_hash=ip_hash,
        consent_version=consent_version,
        language=language,
        source=source,
        note=note,
        detail=extra,
    )
    store.add_consent_event(conn, event)
    return event


def wording(settings: Settings, language: str) -> str:
    """The consent sentence of the sign-up form in ``language`` as plain text (tags dropped, entities
    resolved, white space collapsed), with ``settings.consent_version``.

    :raises TemplateError: the template is broken.
    """
    html = render_template(
        template_env(settings),
        CONSENT_TEMPLATE,
        language,
        {"consent_version": settings.consent_version},
    )
    return Markup(html).striptags()


@dataclass(frozen=True)
class Evidence:
    """A subscriber's consent events (oldest first) and the wording of every version they name
    (version -> language -> text)."""

    events: list[ConsentEvent]
    texts: dict[str, dict[str, str]]


def history(settings: Settings, subscriber_id: int | None) -> Evidence:
    """Everything recorded about one subscriber's consent (nothing for one not stored)."""
    if subscriber_id is None:
        return Evidence([], {})
    with engine_for(settings).connect() as conn:
        events = store.consent_events_of(conn, subscriber_id)
        shown = {(e.consent_version, e.language) for e in events if e.consent_version and e.language}
        return Evidence(events, store.consent_texts_of(conn, shown))


def event_json(event: ConsentEvent) -> dict[str, Any]:
    """The documented JSON shape of one event (``subscribers show --json``, ``export --format json``)."""
    return {
        "kind": event.kind,
        "at": event.at.isoformat(),
        "ip_hash": event.ip_hash,
        "consent_version": event.consent_version,
        "language": event.language,
        "source": event.source,
        "note": event.note,
        "detail": dict(event.detail),
    }


def compact(events: Iterable[Mapping[str, Any]]) -> str:
    """Events (as :func:`event_json` gives them) in one line for a CSV cell, oldest first, separated
    by `` | ``: time, kind, then in parentheses the consent version, the source and the note when there
    are any, e.g. ``2026-11-24T10:00:00+00:00 signup (consent 2026-11, web:/subscribe) |
    2026-11-24T10:05:00+00:00 confirm (consent 2026-11, web:/confirm)``."""
    return " | ".join(_compact_one(event) for event in events)


def _compact_one(event: Mapping[str, Any]) -> str:
    version, source, note = event.get("consent_version"), event.get("source"), event.get("note")
    parts = [
        *([f"consent {version}"] if version else []),
        *([source] if source else []),
        *([f"note: {' '.join(note.split())}"] if note else []),
    ]
    text = f"{event['at']} {event['kind']}"
    return f"{text} ({', '.join(parts)})" if parts else text
