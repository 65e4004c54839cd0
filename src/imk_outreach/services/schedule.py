"""Scheduled campaigns: which fire times fell due, a grace time, the late policy, and approval.

The scheduler (``scheduler.py``) wakes these functions; everything they decide is stored, so a restart,
a second scheduler taking over, or a trigger firing twice changes nothing:

- ``campaign_schedules.checked_until`` says up to when fire times were looked at; a restart finds the
  runs it missed (all missed fire times coalesced into the latest one, the others counted).
- ``campaign_runs`` holds each run once (UNIQUE campaign + due time) with its state: ``due`` (recorded,
  not yet handled), ``waiting`` (a draft waits for approval), ``queued``, ``held`` (late: waits for a
  person), ``skipped`` (too few items, or a newer run took its place) or ``failed``.

A run is late when it is handled, or approved, after ``due + grace``. Then the campaign's
``late_policy`` decides: ``send`` goes ahead, ``hold`` parks the edition in state ``held`` until a
person runs ``approve EDITION`` or ``send CAMPAIGN``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from imk_outreach.campaigns import cron
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.models import Campaign, CampaignRun, Edition
from imk_outreach.services import compose, dispatch, notify
from imk_outreach.services.database import engine_for

log = logging.getLogger(__name__)

_STALE_COMPOSING = timedelta(minutes=10)  # a compose takes seconds; one claimed longer ago has died
_MAX_STEPS = 2000  # fire times walked per check; a longer gap is coalesced from its last day


# -- fire times (pure) -------------------------------------------------------------------------------


def schedule_text(schedule: Mapping[str, str]) -> str:
    """``cron: 0 9 1 * *`` or ``at: 2026-12-01T09:00``; empty for a manual campaign."""
    return "; ".join(f"{key}: {value}" for key, value in sorted(schedule.items()))


def at_time(text: str, tz: ZoneInfo) -> datetime:
    """An ``at:`` value as a UTC instant; without an offset it is wall time in ``tz``."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(ZoneInfo("UTC"))


def fire_times(schedule: Mapping[str, str], tz: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """The fire times ``t`` with ``after < t <= until``, as UTC instants, oldest first.

    Wall-clock times in ``tz`` (:mod:`campaigns.cron`): a cron time that does not exist one night fires
    once, when the clock skips it; one that exists twice fires once, at its first occurrence. A gap of
    more than a few thousand fire times is walked from its last day only (the runs before it are
    coalesced anyway).
    """
    if "at" in schedule:
        moment = at_time(schedule["at"], tz)
        return [moment] if after < moment <= until else []
    if "cron" not in schedule:
        return []
    parsed = cron.parse(schedule["cron"])
    times: list[datetime] = []
    current = cron.next_instant(parsed, tz, after)
    while current is not None and current <= until:
        times.append(current)
        step_from = current
        if len(times) >= _MAX_STEPS and current < until - timedelta(days=1):
            step_from = until - timedelta(days=1)  # the middle of a long gap is coalesced anyway
        current = cron.next_instant(parsed, tz, step_from)
    return times


def next_fire_time(schedule: Mapping[str, str], tz: ZoneInfo, now: datetime) -> datetime | None:
    """The first fire time after ``now`` (None: a manual campaign, or an ``at`` in the past)."""
    if "at" in schedule:
        moment = at_time(schedule["at"], tz)
        return moment if moment > now else None
    if "cron" not in schedule:
        return None
    return cron.next_instant(cron.parse(schedule["cron"]), tz, now)


# -- recording what fell due -------------------------------------------------------------------------


def check_due(settings: Settings, campaign: Campaign, now: datetime) -> CampaignRun | None:
    """Record the run of ``campaign`` that fell due since it was last checked (missed fire times
    coalesced into the latest) and handle it; None when nothing fell due.

    A campaign seen for the first time counts fire times from ``now - grace`` on, so a campaign added
    a little late (or an ``at`` a few minutes ago) still runs, and a new monthly campaign does not send
    last month's edition.
    """
    if not campaign.schedule:
        return None
    with engine_for(settings).begin() as conn:
        store.lock_campaign_schedule(conn, campaign.name)
        since = store.checked_until(conn, campaign.name) or (now - campaign.grace)
        due = fire_times(campaign.schedule, settings.tz, since, now)
        store.set_checked_until(conn, campaign.name, schedule_text(campaign.schedule), max(since, now))
        run = None
        if due:
            run = store.add_run(conn, campaign.name, due[-1], due[-1] + campaign.grace, len(due) - 1, now)
    if run is None:
        return None
    log.info(
        "campaign %s fell due at %s%s",
        campaign.name,
        run.due_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M"),
        f" ({run.missed} earlier missed runs coalesced into this one)" if run.missed else "",
    )
    return handle_run(settings, campaign, run, now)


def handle_run(settings: Settings, campaign: Campaign, run: CampaignRun, now: datetime) -> CampaignRun:
    """Compose the run's edition and take it as far as it may go now: queued when approved (or
    ``approval: auto``) and on time, ``held`` when late under ``late_policy: hold``, ``waiting`` when it
    needs approval, ``skipped`` when too few items are new."""
    with engine_for(settings).begin() as conn:
        if not store.claim_run(conn, run.id, now, now - _STALE_COMPOSING):
            stored = store.get_run(conn, run.id)
            return stored or run  # another scheduler or job composes it
    _supersede_older(settings, run, now)
    try:
        result = compose.compose(settings, campaign.name, now)
    except ImkError as exc:
        log.error("campaign %s: the run due at %s failed: %s", campaign.name, run.due_at.isoformat(), exc)
        return _set(settings, run, now, state="failed", note=str(exc))
    if result.edition is None:
        return _set(settings, run, now, state="skipped", note=result.skipped)
    run = _set(settings, run, now, edition_id=result.edition.id, state="waiting")
    return advance_run(settings, campaign, run, now)


def _supersede_older(settings: Settings, run: CampaignRun, now: datetime) -> None:
    """An older run of the same campaign still open gives way to this one: a draft of it is composed
    afresh, and a held edition (last week's news nobody released) is set aside as ``skipped``."""
    note = f"superseded by the run due at {run.due_at.isoformat()}"
    with engine_for(settings).begin() as conn:
        for older in store.list_runs(conn, store.OPEN_RUN_STATES, run.campaign):
            if older.id == run.id:
                continue
            store.update_run(conn, older.id, now, state="skipped", note=note)
            edition = store.get_edition(conn, older.edition_id) if older.edition_id is not None else None
            if edition is not None and edition.state == "held":
                store.update_edition(conn, replace(edition, state="skipped", skip_reason=note))


def _set(settings: Settings, run: CampaignRun, now: datetime, **values: object) -> CampaignRun:
    with engine_for(settings).begin() as conn:
        store.update_run(conn, run.id, now, **values)
        stored = store.get_run(conn, run.id)
    assert stored is not None
    return stored


# -- taking a run forward ----------------------------------------------------------------------------


def advance_run(settings: Settings, campaign: Campaign, run: CampaignRun, now: datetime) -> CampaignRun:
    """One step for a ``waiting`` or ``held`` run: queue an approved edition when it may go, hold a
    late one, tell staff about a draft; follow an edition someone queued or discarded by hand."""
    edition = _edition(settings, run)
    if edition is None:
        return _set(settings, run, now, state="skipped", note="the edition was discarded")
    if edition.state in ("queued", "sending", "sent"):
        return _set(settings, run, now, state="queued") if run.state != "queued" else run
    late = now > run.deadline
    if run.state == "held" or (late and campaign.late_policy == "hold"):
        return _hold(settings, campaign, run, edition, now)
    if edition.state == "approved":
        return _queue(settings, run, now)
    return _notify_once(settings, campaign, run, edition, now)


def _edition(settings: Settings, run: CampaignRun) -> Edition | None:
    if run.edition_id is None:
        return None
    with engine_for(settings).connect() as conn:
        return store.get_edition(conn, run.edition_id)


def _queue(settings: Settings, run: CampaignRun, now: datetime) -> CampaignRun:
    try:
        report = dispatch.send(settings, run.campaign, now)
    except ImkError as exc:  # e.g. the approval is void: content changed after approval
        log.warning("campaign %s: edition %s not queued: %s", run.campaign, run.edition_id, exc)
        return _set(settings, run, now, note=str(exc))
    log.info("campaign %s: edition %d queued, %d messages", run.campaign, report.edition.id, report.queued)
    return _set(settings, run, now, state="queued", note=f"{report.queued} messages queued")


def _hold(
    settings: Settings, campaign: Campaign, run: CampaignRun, edition: Edition, now: datetime
) -> CampaignRun:
    if edition.state != "held":
        with engine_for(settings).begin() as conn:
            store.set_edition_state(conn, edition.id, "held")
        log.warning(
            "campaign %s: edition %d held: due at %s, past its grace time; "
            "'imk-outreach approve %d' releases it%s",
            run.campaign,
            edition.id,
            run.due_at.isoformat(),
            edition.id,
            f" (approved already: 'imk-outreach send {run.campaign}' too)" if edition.approved_hash else "",
        )
    if run.state != "held":
        note = f"late (grace ended {run.deadline.isoformat()}): waits for a person: approve {edition.id}"
        run = _set(settings, run, now, state="held", note=note, notified_at=None)
    return _notify_once(settings, campaign, run, replace(edition, state="held"), now)


def _notify_once(
    settings: Settings, campaign: Campaign, run: CampaignRun, edition: Edition, now: datetime
) -> CampaignRun:
    if run.notified_at is not None or not settings.notify:
        return run
    if notify.edition_waits(settings, edition, run, now, campaign.late_policy):
        return _set(settings, run, now, notified_at=now)
    return run


def advance_all(settings: Settings, campaigns: Sequence[Campaign], now: datetime) -> list[CampaignRun]:
    """:func:`advance_run` for every open run (recorded but unhandled runs are handled first: a crash
    between recording and composing leaves them ``due``). Runs of a campaign whose file is gone stay."""
    by_name = {c.name: c for c in campaigns}
    with engine_for(settings).connect() as conn:
        runs = store.list_runs(conn, store.OPEN_RUN_STATES)
    done = []
    for run in sorted(runs, key=lambda r: r.due_at):
        campaign = by_name.get(run.campaign)
        if campaign is None:
            continue
        try:
            if run.state == "composing" and (run.updated_at or now) >= now - _STALE_COMPOSING:
                continue  # being composed right now
            step = handle_run if run.state in ("due", "composing") else advance_run
            done.append(step(settings, campaign, run, now))
        except ImkError as exc:
            log.error("campaign %s: run %d: %s", run.campaign, run.id, exc)
    return done


@dataclass(frozen=True)
class Approval:
    edition: Edition
    released: dispatch.SendReport | None  # a held edition, queued at once
    shortfall: compose.Shortfall | None  # approved below min_items (``force``)


def approve_edition(
    settings: Settings, reference: str, by: str | None, now: datetime, force: bool = False
) -> Approval:
    """``approve EDITION``: approve its current content; a ``held`` edition is released at once (the
    person approving it late is the one the late policy waits for).

    An edition below its campaign's ``min_items`` is neither approved nor released without ``force``
    (nor does the scheduler queue one later: :func:`_queue` goes through the same check in send).

    :param reference: an edition id, or a campaign name for its current draft.
    :raises EditionError: unknown edition, one already queued, or a campaign without a draft.
    :raises ShortEditionError: too few new items and no ``force``.
    """
    edition_id = compose.edition_id_for(settings, reference)
    before = compose.get_edition(settings, edition_id)
    short = compose.shortfall(settings, before) if before.state in store.OPEN_STATES else None
    approved = compose.approve(settings, edition_id, by, now, force=force)
    if before.state != "held":
        return Approval(approved, None, short)
    released = dispatch.send(settings, approved.campaign, now, force=force, edition_id=approved.id)
    return Approval(approved, released, short)


def approve_and_release(
    settings: Settings, edition_id: int, by: str | None, now: datetime, force: bool = False
) -> tuple[Edition, dispatch.SendReport | None]:
    """:func:`approve_edition` by id: the approved edition, and the send report if it was held."""
    done = approve_edition(settings, str(edition_id), by, now, force)
    return done.edition, done.released


# -- what comes next (status) ------------------------------------------------------------------------


@dataclass(frozen=True)
class NextRun:
    job: str  # "campaign monthly", "gather dehub-iot"
    at: datetime | None  # None: manual, or nothing more to do
    detail: str = ""


def next_runs(settings: Settings, campaigns: Sequence[Campaign], now: datetime) -> list[NextRun]:
    """When each campaign falls due next and each source is gathered next (from its last run)."""
    runs = [
        NextRun(
            f"campaign {c.name}",
            next_fire_time(c.schedule, settings.tz, now),
            schedule_text(c.schedule) or ("each new item" if c.trigger == "new_items" else "manual"),
        )
        for c in campaigns
    ]
    with engine_for(settings).connect() as conn:
        health = store.all_source_health(conn)
    for source in settings.sources:
        last = health.get(source.name)
        at = max(now, last.last_run_at + source.every) if last and last.last_run_at else now
        runs.append(NextRun(f"gather {source.name}", at, f"every {_span(source.every)}"))
    return sorted(runs, key=lambda r: (r.at is None, r.at or now, r.job))


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def open_runs(settings: Settings) -> list[CampaignRun]:
    """Runs that wait for something (approval, a person) or are not yet handled, newest first."""
    with engine_for(settings).connect() as conn:
        return store.list_runs(conn, store.OPEN_RUN_STATES)


def recent_runs(settings: Settings, limit: int = 20) -> list[CampaignRun]:
    with engine_for(settings).connect() as conn:
        return store.list_runs(conn, limit=limit)
