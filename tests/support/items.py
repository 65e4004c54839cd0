"""Stored news items for tests that need an edition to compose (newsletters, delivery, scheduling)."""

from __future__ import annotations

from datetime import datetime, timedelta

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import NewsItem
from imk_outreach.services.database import engine_for


def store_items(
    settings: Settings, published: list[datetime], now: datetime, prefix: str = "i", title: str = "Meldung"
) -> None:
    """One German ``iot`` item of source ``manual`` per date, numbered from 1 (``i1``, ``Meldung 1``...)."""
    items = [
        NewsItem(
            id=f"{prefix}{n}",
            url=f"https://example.org/{prefix}/{n}" if prefix != "i" else f"https://example.org/{n}",
            source="manual",
            title=f"{title} {n}",
            summary_html="<p>Text</p>",
            published_at=moment,
            language="de",
            tags=("iot",),
        )
        for n, moment in enumerate(published, start=1)
    ]
    with engine_for(settings).begin() as conn:
        store.upsert_items(conn, "manual", items, now)


def days_before(now: datetime, count: int) -> list[datetime]:
    """``now`` minus 1, 2, ... ``count`` days."""
    return [now - timedelta(days=n) for n in range(1, count + 1)]
