"""Queueing social posts: an approved social edition becomes one outbox row per post, each at its
channel's next free slot (as Buffer does) within the channel's daily cap; ``post-now`` and
``outbox resolve`` let staff override and settle."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from imk_outreach.config import Settings
from imk_outreach.config_channels import ChannelSettings
from imk_outreach.db import store
from imk_outreach.db.posts import PostRow as PostRow
from imk_outreach.errors import ImkError
from imk_outreach.models import Campaign, Edition, Post
from imk_outreach.services import social
from imk_outreach.services.compose import (
    EditionError,
    ShortEditionError,
    compose,
    current_selection,
    get_campaign,
    shortfall,
)
from imk_outreach.services.database import engine_for

log = logging.getLogger(__name__)

# A channel with a daily cap but no slots posts at once; once the day's cap is reached, the rest wait
# for the next day with room, from this time of day on (local time).
CAP_RESUME = time(9, 0)
_HORIZON_DAYS = 400  # a slot further away than this means the cap and slots leave no room
UPCOMING_STATES = ("queued", "retry", "sending", "posting", "unknown")


class PostError(ImkError):
    """A post cannot be found or changed as asked."""


@dataclass(frozen=True)
class QueuedPost:
    post: Post
    at: datetime
    added: bool


@dataclass(frozen=True)
class SocialSendReport:
    edition: Edition
    queued: int
    posts: tuple[QueuedPost, ...] = ()
    already_queued: bool = False


# -- slots ---------------------------------------------------------------------------------------------


def _candidates(channel: ChannelSettings, tz: ZoneInfo, now: datetime) -> Iterator[datetime]:
    """The times a post of the channel may take, in order, from ``now`` on."""
    weekly = channel.weekly_slots()
    today = now.astimezone(tz).date()
    if not weekly:
        yield now
        for offset in range(1, _HORIZON_DAYS):
            yield datetime.combine(today + timedelta(days=offset), CAP_RESUME, tz).astimezone(UTC)
        return
    for offset in range(_HORIZON_DAYS):
        day = today + timedelta(days=offset)
        for weekday, clock in weekly:
            if weekday == day.weekday():
                at = datetime.combine(day, clock, tz).astimezone(UTC)
                if at >= now:
                    yield at


class _Slots:
    """The slots of one channel already held, and the posts per local day (for the daily cap)."""

    def __init__(self, channel: ChannelSettings, tz: ZoneInfo, taken: Sequence[datetime]) -> None:
        self.channel, self.tz = channel, tz
        self.taken = {t.replace(second=0, microsecond=0) for t in taken}
        self.per_day: Counter[date] = Counter(t.astimezone(tz).date() for t in taken)

    def next_free(self, now: datetime) -> datetime:
        with_slots = bool(self.channel.slots)
        for at in _candidates(self.channel, self.tz, now):
            if with_slots and at.replace(second=0, microsecond=0) in self.taken:
                continue
            cap = self.channel.daily_cap
            if cap is not None and self.per_day[at.astimezone(self.tz).date()] >= cap:
                continue
            return at
        raise PostError(f"channel {self.channel.name}: no free slot in the next {_HORIZON_DAYS} days")

    def take(self, at: datetime) -> None:
        self.taken.add(at.replace(second=0, microsecond=0))
        self.per_day[at.astimezone(self.tz).date()] += 1


def _slots_for(conn: object, settings: Settings, channel: ChannelSettings, now: datetime) -> _Slots:
    tz = settings.tz
    day_start = datetime.combine(now.astimezone(tz).date(), time(0), tz).astimezone(UTC)
    return _Slots(channel, tz, store.scheduled_times(conn, channel.name, day_start))  # type: ignore[arg-type]


def _channel_slots(conn: object, settings: Settings, campaign: Campaign, now: datetime) -> dict[str, _Slots]:
    return {c.name: _slots_for(conn, settings, c, now) for c in social.campaign_channels(settings, campaign)}


def _placed(
    settings: Settings, campaign: Campaign, posts: Sequence[Post], now: datetime
) -> list[tuple[Post, datetime]]:
    """Each post with the slot it would take if queued now, in order; nothing is stored."""
    with engine_for(settings).connect() as conn:
        slots = _channel_slots(conn, settings, campaign, now)
    placed = []
    for post in posts:
        at = slots[post.channel].next_free(now)
        slots[post.channel].take(at)
        placed.append((post, at))
    return placed


def next_slot(settings: Settings, channel_name: str, now: datetime | None = None) -> datetime:
    """When a post queued now on the channel would go (its next free slot within the daily cap)."""
    now = now or datetime.now(UTC)
    channel = settings.channel(channel_name)
    with engine_for(settings).connect() as conn:
        return _slots_for(conn, settings, channel, now).next_free(now)


# -- queueing ------------------------------------------------------------------------------------------


def send_social(
    settings: Settings,
    campaign_name: str,
    now: datetime | None = None,
    force: bool = False,
    edition_id: int | None = None,
) -> SocialSendReport:
    """Compose the social campaign now (or take its approved edition) and queue its posts, each at its
    channel's next free slot. Queueing twice adds nothing (UNIQUE edition, channel, post key).

    :raises EditionError: nothing new to post, the edition waits for approval, its approval is void,
        or it is not ``edition_id``.
    :raises ShortEditionError: fewer new items than ``min_items`` and no ``force``.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, campaign_name, now, keep_short=force)
    if result.edition is None:
        raise EditionError(f"campaign {campaign_name}: nothing to post: {result.skipped}")
    edition, campaign = result.edition, result.campaign
    if edition_id is not None and edition.id != edition_id:
        raise EditionError(
            f"campaign {campaign_name}: edition {edition.id} is the one to post now, not edition "
            f"{edition_id}; nothing was queued"
        )
    posts = social.render_posts(settings, campaign, edition)
    if edition.state == "draft" or (edition.state == "held" and edition.approved_hash is None):
        raise EditionError(
            f"edition {edition.id} of {campaign_name} waits for approval: check it with "
            f"'imk-outreach preview {campaign_name}', then run 'imk-outreach approve {campaign_name}'"
        )
    if edition.approved_hash is not None and social.posts_hash(posts) != edition.approved_hash:
        raise EditionError(
            f"the approval of edition {edition.id} is void: its posts changed after approval; "
            f"preview it again and run 'imk-outreach approve {edition.id}'"
        )
    short = shortfall(settings, edition, campaign)
    if short is not None and not force:
        raise ShortEditionError(short, "send")
    queued: list[QueuedPost] = []
    with engine_for(settings).begin() as conn:
        if store.lock_edition(conn, edition.id) not in ("approved", "held"):
            return SocialSendReport(edition, 0, already_queued=True)
        slots = _channel_slots(conn, settings, campaign, now)
        for post in posts:
            at = slots[post.channel].next_free(now)
            added = store.queue_post(conn, edition.id, post, at, now)
            if added:
                slots[post.channel].take(at)
            queued.append(QueuedPost(post, at, added))
        store.set_edition_state(conn, edition.id, "queued" if posts else "sent")
    count = sum(1 for q in queued if q.added)
    log.info("edition %d of %s: %d posts queued", edition.id, campaign_name, count)
    return SocialSendReport(edition, count, tuple(queued))


# -- staff overrides -------------------------------------------------------------------------------------


def get_post(settings: Settings, post_id: int) -> PostRow:
    """:raises PostError: no social post with that id."""
    with engine_for(settings).connect() as conn:
        row = store.get_post(conn, post_id)
    if row is None:
        raise PostError(f"no social post {post_id} (see 'imk-outreach posts' for the waiting ones)")
    return row


def post_now(settings: Settings, post_id: int, now: datetime | None = None) -> PostRow:
    """Make a waiting post due at once, past its slot and the channel's daily cap.

    :raises PostError: no such post, or it is not waiting (sent, failed, cancelled, on its way).
    """
    now = now or datetime.now(UTC)
    row = get_post(settings, post_id)
    if row.state not in ("queued", "retry"):
        raise PostError(f"post {post_id} is {row.state}; only a waiting (queued or retry) post can go now")
    with engine_for(settings).begin() as conn:
        changed = store.set_forced(conn, post_id, now)
    assert changed is not None
    log.info("post %d on %s: moved to now by staff (post-now)", post_id, row.channel)
    return changed


RESOLUTIONS = ("sent", "retry", "failed")


def resolve(settings: Settings, post_id: int, verdict: str, by: str, now: datetime | None = None) -> PostRow:
    """Settle a post whose outcome is unknown (the request went out, no answer came): ``sent`` (it is
    on the platform), ``retry`` (it is not: post it again) or ``failed`` (give it up). A ``failed`` post
    can be given ``retry`` too (its channel's credentials were renewed since). A ``failed`` post
    can be given ``retry`` too (its channel's credentials were renewed since).

    :raises PostError: no such post, or it is not ``unknown``, or ``verdict`` is not one of
        :data:`RESOLUTIONS`.
    """
    now = now or datetime.now(UTC)
    if verdict not in RESOLUTIONS:
        raise PostError(f"resolve a post as one of {', '.join(RESOLUTIONS)}, not {verdict!r}")
    row = get_post(settings, post_id)
    retried = row.state == "failed" and verdict == "retry"  # e.g. its channel's token was renewed since
    if row.state != "unknown" and not retried:
        raise PostError(
            f"post {post_id} is {row.state}; only a post whose outcome is unknown can be resolved "
            "(and a failed one retried)"
        )
    note = f"resolved as {verdict} by {by}"
    with engine_for(settings).begin() as conn:
        store.settle_post(
            conn,
            post_id,
            verdict,
            now,
            reply=f"{row.reply or ''} ({note})".strip(),
            error=None if verdict != "failed" else note,
        )
        if verdict == "retry":
            store.set_edition_state(conn, row.edition_id, "queued")  # it has a post waiting again
        elif not store.has_pending(conn, row.edition_id):
            store.set_edition_state(conn, row.edition_id, "sent")
    log.info("post %d on %s %s", post_id, row.channel, note)
    got = get_post(settings, post_id)
    return got


def upcoming(settings: Settings, channel: str | None = None, limit: int = 200) -> dict[str, list[PostRow]]:
    """Posts not settled yet (waiting, on their way, unknown), per channel in slot order."""
    with engine_for(settings).connect() as conn:
        rows = store.list_posts(conn, states=UPCOMING_STATES, channel=channel, limit=limit)
    grouped: dict[str, list[PostRow]] = {c.name: [] for c in settings.channels}
    for row in rows:
        grouped.setdefault(row.channel, []).append(row)
    return grouped


def recent_posts(settings: Settings, limit: int = 50) -> list[PostRow]:
    with engine_for(settings).connect() as conn:
        rows = store.list_posts(conn, states=("sent", "failed", "cancelled"), limit=10_000)
    return sorted(rows, key=lambda r: r.updated_at or r.next_attempt_at, reverse=True)[:limit]


# -- preview -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SocialPreview:
    edition: Edition
    skipped: str | None
    posts: tuple[tuple[Post, datetime], ...]  # each with the slot it would take if queued now
    upcoming: dict[str, list[PostRow]]


def preview_social(settings: Settings, campaign_name: str, now: datetime | None = None) -> SocialPreview:
    """Compose a draft of the social campaign now and render every post per channel and language,
    each with the slot it would get; nothing is queued.

    :raises TemplateError, PostTooLongError, ChannelError: as for rendering the posts.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, campaign_name, now, keep_short=True)
    assert result.edition is not None  # keep_short always composes
    posts = social.render_posts(settings, result.campaign, result.edition)
    placed = _placed(settings, result.campaign, posts, now)
    return SocialPreview(result.edition, result.skipped, tuple(placed), upcoming(settings))


# -- trigger: new_items --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerOutcome:
    campaign: str
    queued: int = 0
    waiting: int | None = None  # a draft with this many items waits for approval
    error: str | None = None


def post_new_items(
    settings: Settings, campaigns: Sequence[Campaign], now: datetime | None = None
) -> list[TriggerOutcome]:
    """For every ``trigger: new_items`` campaign: its new matching items become posts (``approval:
    auto``) or a draft that waits for approval. Called after each gather. A broken campaign is reported
    and the others go on."""
    now = now or datetime.now(UTC)
    outcomes = []
    for campaign in campaigns:
        if campaign.kind != "social" or campaign.trigger != "new_items":
            continue
        try:
            result = compose(settings, campaign.name, now)
            edition = result.edition
            if edition is None:
                continue
            if edition.state == "draft":
                outcomes.append(TriggerOutcome(campaign.name, waiting=len(edition.items)))
                continue
            report = send_social(settings, campaign.name, now, edition_id=edition.id)
            outcomes.append(TriggerOutcome(campaign.name, queued=report.queued))
        except ImkError as exc:
            log.error("campaign %s: %s", campaign.name, exc)
            outcomes.append(TriggerOutcome(campaign.name, error=str(exc)))
    return outcomes


def plan_posts(
    settings: Settings, campaign_name: str, now: datetime | None = None
) -> list[tuple[Post, datetime]]:
    """What ``send`` would queue now, each post with its slot; stores nothing (``send --dry-run``)."""
    now = now or datetime.now(UTC)
    campaign = get_campaign(settings, campaign_name)
    with engine_for(settings).connect() as conn:
        open_editions = store.list_editions(conn, campaign.name, store.OPEN_STATES)
    frozen = open_editions[0] if open_editions and open_editions[0].state in ("approved", "held") else None
    edition = frozen or current_selection(settings, campaign, now)
    return _placed(settings, campaign, social.render_posts(settings, campaign, edition), now)
