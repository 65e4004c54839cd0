"""Gather: fetch every due source concurrently, read, normalise, de-duplicate and store its items.

A source that fails is recorded with its reason; the others go on. Each item's image is then fetched
and stored as a copy (``services/media.py``); an image that fails only leaves its item without one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine

from imk_outreach.config import Settings, SourceSettings
from imk_outreach.db import store
from imk_outreach.errors import ImkError, SourceError
from imk_outreach.models import NewsItem, SourceHealth, SourceReport, SourceSpec, Validators
from imk_outreach.services import media
from imk_outreach.services.database import engine_for
from imk_outreach.sources.base import get_source
from imk_outreach.sources.fetch import FetchLimits, NotModified, fetch, make_client
from imk_outreach.sources.normalize import normalize_all

log = logging.getLogger(__name__)
T = TypeVar("T")


class UnknownSourceError(ImkError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"no source named {name!r} in the config (known: {', '.join(known)})")


@dataclass(frozen=True)
class Outcome:
    """What fetching and reading one source produced, before storing."""

    spec: SourceSpec
    status: str  # ok | not_modified | error
    items: tuple[NewsItem, ...] = ()
    seen: int = 0
    validators: Validators = Validators()
    error: str | None = None
    warning: str | None = None
    image_sources: Mapping[str, str] = field(default_factory=dict)  # item id -> URL of its image


@dataclass(frozen=True)
class GatherResult:
    reports: tuple[SourceReport, ...]

    @property
    def failed(self) -> int:
        return sum(1 for r in self.reports if r.status == "error")

    @property
    def exit_code(self) -> int:
        """0 all fine, 3 some failed while others went through, 1 all failed."""
        if not self.failed:
            return 0
        return 1 if self.failed == len(self.reports) else 3


def source_spec(settings: Settings, source: SourceSettings) -> SourceSpec:
    """The stage's view of a configured source (absolute URL or path, language filled in)."""
    return SourceSpec(
        name=source.name,
        type=source.type,
        url=settings.source_location(source),
        language=settings.source_language(source),
        tags=source.tags,
        every=source.every,
        selectors=dict(source.selectors or {}),
    )


def _selected(settings: Settings, names: Sequence[str] | None) -> list[SourceSettings]:
    if not names:
        return list(settings.sources)
    known = [s.name for s in settings.sources]
    for name in names:
        if name not in known:
            raise UnknownSourceError(name, known)
    return [s for s in settings.sources if s.name in names]


def gather(
    settings: Settings, names: Sequence[str] | None = None, now: datetime | None = None
) -> GatherResult:
    """Gather the named sources (all when None) and store what is new.

    :param now: the clock (UTC); undated items get it as their first-seen date.
    :raises UnknownSourceError: a name that is not configured.
    :raises DatabaseError: the database cannot be opened.
    """
    now = now or datetime.now(UTC)
    specs = [source_spec(settings, s) for s in _selected(settings, names)]
    engine = engine_for(settings)
    with engine.connect() as conn:
        health = store.all_source_health(conn)
    outcomes = _run_async(_read_all(settings, specs, health, now))
    with engine.connect() as conn:
        known = store.stored_images(conn, [item.id for o in outcomes for item in o.items])
    outcomes = _run_async(_with_images(settings, outcomes, known))
    reports = []
    for outcome in outcomes:
        reports.append(_store(engine, outcome, health.get(outcome.spec.name), now))
    return GatherResult(tuple(reports))


def _run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion, also when the caller already runs an event loop (a web app,
    a test driving a browser): then it runs on a loop of its own in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _limits(settings: Settings) -> FetchLimits:
    g = settings.gather
    return FetchLimits(g.timeout, g.max_bytes, g.max_redirects, g.user_agent)


async def _read_all(
    settings: Settings, specs: list[SourceSpec], health: dict[str, SourceHealth], now: datetime
) -> list[Outcome]:
    limits = _limits(settings)
    gate = asyncio.Semaphore(settings.gather.concurrency)
    async with make_client(limits, settings.gather.concurrency) as client:

        async def one(spec: SourceSpec) -> Outcome:
            known = health.get(spec.name)
            # Only reuse validators if the source still points where it did.
            validators = known.validators if known and known.url == spec.url else Validators()
            async with gate:
                return await _read_one(client, settings, spec, validators, limits, now)

        return list(await asyncio.gather(*(one(spec) for spec in specs)))


async def _with_images(
    settings: Settings, outcomes: list[Outcome], known: Mapping[str, store.StoredImage]
) -> list[Outcome]:
    """The outcomes with every item's image stored as a copy, or left out (a warning of the source)."""
    async with media.image_session(settings) as session:

        async def one(outcome: Outcome) -> Outcome:
            if not outcome.items:
                return outcome
            stored = await session.store_images(outcome.spec.name, outcome.items, known)
            warnings = "; ".join(w for w in (outcome.warning, stored.warning) if w) or None
            return replace(outcome, items=stored.items, image_sources=stored.sources, warning=warnings)

        return list(await asyncio.gather(*(one(outcome) for outcome in outcomes)))


async def _read_one(
    client: httpx.AsyncClient,
    settings: Settings,
    spec: SourceSpec,
    validators: Validators,
    limits: FetchLimits,
    now: datetime,
) -> Outcome:
    try:
        doc = await fetch(client, spec, validators, limits)
        result = get_source(spec.type).parse(doc, spec)
        items, skipped = normalize_all(
            result, result.base_url or doc.base_url, spec, now, settings.tagging, settings.tz
        )
    except NotModified:
        return Outcome(spec, "not_modified", validators=validators)
    except SourceError as exc:
        log.warning("source %s failed: %s", spec.name, exc.reason)
        return Outcome(spec, "error", error=exc.reason)
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not stop the other sources
        log.exception("source %s failed unexpectedly", spec.name)
        return Outcome(spec, "error", error=f"unexpected error: {type(exc).__name__}: {exc}")
    warnings = list(result.warnings)
    if skipped:
        warnings.append(f"{skipped} entries without a usable link were skipped")
    seen = len(result.entries)
    return Outcome(spec, "ok", tuple(items), seen, doc.validators, warning="; ".join(warnings) or None)


def _store(engine: Engine, outcome: Outcome, previous: SourceHealth | None, now: datetime) -> SourceReport:
    spec = outcome.spec
    base = previous or SourceHealth(name=spec.name)
    base = replace(base, type=spec.type, url=spec.url, last_run_at=now, last_status=outcome.status)
    new = updated = 0
    with engine.begin() as conn:
        if outcome.status == "error":
            health = replace(
                base,
                last_error=outcome.error,
                last_error_at=now,
                consecutive_failures=base.consecutive_failures + 1,
            )
        else:
            if outcome.items:
                new, updated = store.upsert_items(conn, spec.name, outcome.items, now, outcome.image_sources)
            health = replace(
                base,
                last_success_at=now,
                consecutive_failures=0,
                last_warning=outcome.warning,
                items_seen=outcome.seen if outcome.status == "ok" else base.items_seen,
                validators=outcome.validators,
            )
        store.save_source_health(conn, health)
    if new or updated:
        log.info("source %s: %d new, %d updated", spec.name, new, updated)
    return SourceReport(spec.name, outcome.status, new, updated, outcome.error, outcome.warning, outcome.seen)  # type: ignore[arg-type]
