"""Reading what was gathered: items for staff and campaigns, and the health of each source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import NewsItem, SourceHealth
from imk_outreach.services.database import engine_for


def find_items(
    settings: Settings,
    since: timedelta | None = None,
    tags: Sequence[str] = (),
    sources: Sequence[str] = (),
    now: datetime | None = None,
    limit: int | None = None,
) -> list[NewsItem]:
    """Stored items newest first, published within ``since`` of ``now``, with any of ``tags``, seen in any
    of ``sources``."""
    start = (now - since) if (since is not None and now is not None) else None
    with engine_for(settings).connect() as conn:
        return store.list_items(conn, start, [t.lower() for t in tags], sources, limit)


@dataclass(frozen=True)
class SourceStatus:
    """A configured source with its health; ``stored`` counts the items it has had."""

    name: str
    type: str
    url: str
    health: SourceHealth | None
    stored: int

    @property
    def state(self) -> str:
        if self.health is None or self.health.last_status is None:
            return "never gathered"
        if self.health.last_status == "error":
            return "failing"
        return "warning" if self.health.last_warning else "ok"


def source_statuses(settings: Settings) -> list[SourceStatus]:
    """Every configured source, in config order, with what is stored about it."""
    with engine_for(settings).connect() as conn:
        health = store.all_source_health(conn)
        counts = store.count_items_by_source(conn)
    return [
        SourceStatus(s.name, s.type, settings.source_location(s), health.get(s.name), counts.get(s.name, 0))
        for s in settings.sources
    ]
