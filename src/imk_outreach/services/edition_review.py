"""What the staff's edition page shows, worked out in one call: each language's newsletter as a sample
subscriber sees it (HTML and text part, subject, the items shown in their original language), who gets
which language, the social posts per channel with their counted lengths, whether the approval still
holds, and, once queued, the rows per state and the failed recipients with the server's reply.

A queued or sent edition shows what was frozen when it was queued (``edition_messages``, the outbox
posts), a draft what it renders to now. Nothing is stored or changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.posts import PostRow
from imk_outreach.db.records import OutboxRecord
from imk_outreach.errors import ImkError
from imk_outreach.models import Campaign, Edition, NewsItem, Post, RenderedEmail
from imk_outreach.render.email import personalize
from imk_outreach.services import social
from imk_outreach.services.compose import EditionError, get_campaign, get_edition
from imk_outreach.services.database import engine_for
from imk_outreach.services.enqueue import CHANNEL
from imk_outreach.services.preview import sample_values
from imk_outreach.services.records import OUTBOX_STATES
from imk_outreach.services.rendering import content_hash, render_all

__all__ = ["EditionReview", "LanguageView", "PostView", "edition_html", "review"]

FAILED_STATES = ("failed", "unknown")


@dataclass(frozen=True)
class LanguageView:
    """One language of a newsletter edition, personalised for a sample subscriber."""

    language: str
    subject: str
    preheader: str
    html: str
    text: str
    fallbacks: tuple[NewsItem, ...]  # items shown in their original language (no translation)
    recipients: int  # confirmed subscribers of the list who get this language (the outbox once queued)


@dataclass(frozen=True)
class PostView:
    """A social post as it is (queued: its outbox row's state, reply and time) or would be."""

    post: Post
    state: str | None = None
    at: datetime | None = None
    reply: str | None = None
    url: str | None = None

    @property
    def too_long(self) -> bool:
        return self.post.length > self.post.limit


@dataclass(frozen=True)
class EditionReview:
    """Everything the edition page shows. ``approval`` is as :func:`compose.approval_state` says it
    (``draft``, ``approved``, ``approval void (content changed)``, or the stored state); ``problem``
    says why the edition cannot be rendered (then ``languages`` and ``posts`` are empty)."""

    edition: Edition
    campaign: Campaign | None
    approval: str
    languages: tuple[LanguageView, ...] = ()
    posts: dict[str, list[PostView]] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)  # channel -> why it is paused
    counts: dict[str, int] = field(default_factory=dict)  # outbox rows per state (zeros included)
    failed: tuple[OutboxRecord, ...] = ()  # failed and unknown mail rows, at most ``failed_limit``
    problem: str | None = None

    @property
    def kind(self) -> str:
        return self.campaign.kind if self.campaign is not None else "newsletter"

    @property
    def queued(self) -> bool:
        return self.edition.state not in store.OPEN_STATES

    @property
    def list_name(self) -> str:
        return self.campaign.list if self.campaign is not None else ""


def review(settings: Settings, edition_id: int, failed_limit: int = 100) -> EditionReview:
    """The edition page's content for ``edition_id``.

    :raises EditionError: no such edition.
    """
    edition = get_edition(settings, edition_id)
    with engine_for(settings).connect() as conn:
        found = store.outbox_counts(conn, [edition_id]).get(edition_id, {})
        paused = store.paused_channels(conn)
    counts = {state: found.get(state, 0) for state in OUTBOX_STATES}
    try:
        campaign = get_campaign(settings, edition.campaign)
    except ImkError as exc:
        return EditionReview(edition, None, edition.state, paused=paused, counts=counts, problem=str(exc))
    base = EditionReview(edition, campaign, edition.state, paused=paused, counts=counts)
    try:
        if campaign.kind == "social":
            return _social(settings, base)
        return _newsletter(settings, base, failed_limit)
    except ImkError as exc:
        return EditionReview(edition, campaign, edition.state, paused=paused, counts=counts, problem=str(exc))


def edition_html(settings: Settings, edition_id: int, language: str) -> str:
    """The newsletter HTML of one language as a sample subscriber sees it (for the preview frame).

    :raises EditionError: no such edition, or it has no newsletter in ``language``.
    :raises UnknownCampaignError, ConfigErrors, TemplateError: its campaign cannot be rendered.
    """
    edition = get_edition(settings, edition_id)
    rendered = _messages(settings, get_campaign(settings, edition.campaign), edition)
    if language not in rendered:
        have = ", ".join(rendered) or "none"
        raise EditionError(f"edition {edition_id} has no newsletter in {language!r} (languages: {have})")
    return personalize(rendered[language], sample_values(settings, language))[0]


def _messages(settings: Settings, campaign: Campaign, edition: Edition) -> dict[str, RenderedEmail]:
    """What was frozen when the edition was queued, else what it renders to now."""
    if edition.state not in store.OPEN_STATES:
        with engine_for(settings).connect() as conn:
            frozen = store.get_edition_messages(conn, edition.id)
        if frozen:
            return {lang: frozen[lang] for lang in campaign.languages if lang in frozen} or frozen
    return render_all(settings, campaign, edition, edition.date)


def _approval(edition: Edition, digest: str) -> str:
    if edition.state != "approved":
        return edition.state
    return "approved" if digest == edition.approved_hash else "approval void (content changed)"


def _newsletter(settings: Settings, base: EditionReview, failed_limit: int) -> EditionReview:
    assert base.campaign is not None
    campaign, edition = base.campaign, base.edition
    rendered = _messages(settings, campaign, edition)
    approval = _approval(edition, content_hash(rendered)) if not base.queued else edition.state
    if base.queued:
        recipients, failed = _outbox_per_language(settings, edition.id, failed_limit)
    else:
        with engine_for(settings).connect() as conn:
            recipients = store.recipients_per_language(conn, campaign.list, campaign.languages)
        failed = []
    by_id = {item.id: item for item in edition.items}
    languages = []
    for lang, message in rendered.items():
        page, text = personalize(message, sample_values(settings, lang))
        fallbacks = tuple(by_id[i] for i in message.fallbacks if i in by_id)
        view = LanguageView(
            lang, message.subject, message.preheader, page, text, fallbacks, recipients.get(lang, 0)
        )
        languages.append(view)
    return EditionReview(
        edition,
        campaign,
        approval,
        tuple(languages),
        paused=base.paused,
        counts=base.counts,
        failed=tuple(failed),
    )


def _outbox_per_language(
    settings: Settings, edition_id: int, failed_limit: int
) -> tuple[dict[str, int], list[OutboxRecord]]:
    """Mail rows per language (counted in SQL) and the first failed ones: two short queries however
    many recipients the edition had."""
    with engine_for(settings).connect() as conn:
        per_language = store.rows_per_language(conn, edition_id, CHANNEL)
        failed = store.first_in_states(conn, edition_id, CHANNEL, FAILED_STATES, failed_limit)
    return per_language, failed


def _social(settings: Settings, base: EditionReview) -> EditionReview:
    assert base.campaign is not None
    campaign, edition = base.campaign, base.edition
    grouped: dict[str, list[PostView]] = {name: [] for name in campaign.channels}
    if base.queued:
        with engine_for(settings).connect() as conn:
            rows = store.list_posts(conn, edition_id=edition.id, limit=10_000)
        for row in rows:
            grouped.setdefault(row.channel, []).append(_queued_view(row))
        approval = edition.state
    else:
        posts = social.render_posts(settings, campaign, edition)
        for post in posts:
            grouped.setdefault(post.channel, []).append(PostView(post))
        approval = _approval(edition, social.posts_hash(posts))
    return EditionReview(edition, campaign, approval, posts=grouped, paused=base.paused, counts=base.counts)


def _queued_view(row: PostRow) -> PostView:
    return PostView(
        row.post,
        row.state,
        row.scheduled_at or row.next_attempt_at,
        row.reply or row.error,
        row.remote_url,
    )
