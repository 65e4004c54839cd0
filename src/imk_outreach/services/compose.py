"""Compose: a campaign's selection rules pick items into an edition; approval freezes its content."""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from imk_outreach.campaigns.loader import CampaignContext, load_all
from imk_outreach.campaigns.selection import count_new, select_sections
from imk_outreach.config import Settings
from imk_outreach.db import items_admin as items_admin_db
from imk_outreach.db import store
from imk_outreach.errors import ConfigError, ConfigErrors, ImkError
from imk_outreach.models import Campaign, Edition, EditionSection
from imk_outreach.services import social
from imk_outreach.services.database import engine_for
from imk_outreach.services.rendering import content_hash, render_all, template_exists
from imk_outreach.sources.normalize import canonical_url

log = logging.getLogger(__name__)


class UnknownCampaignError(ImkError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        listed = ", ".join(known) or "none; add a YAML file to the campaigns folder"
        super().__init__(f"no campaign named {name!r} (known: {listed})")


class EditionError(ImkError):
    """An edition cannot do what was asked (unknown id, wrong state)."""


@dataclass(frozen=True)
class Shortfall:
    """An edition with fewer new items than its campaign's ``min_items``: it must not go out unasked."""

    edition_id: int  # 0: an edition not stored yet
    campaign: str
    new_items: int
    min_items: int

    def __str__(self) -> str:
        which = f"edition {self.edition_id} of {self.campaign}" if self.edition_id else "the new edition"
        count = f"{self.new_items} new item{'' if self.new_items == 1 else 's'}"
        return f"{which} has only {count}; the campaign needs {self.min_items} (min_items)"


class ShortEditionError(EditionError):
    """Approving or queueing an edition below ``min_items`` without ``force``."""

    def __init__(self, shortfall: Shortfall, action: str) -> None:
        self.shortfall = shortfall
        self.action = action
        super().__init__(f"{shortfall}. Add --force to {action} it anyway")


@dataclass(frozen=True)
class ComposeResult:
    """The edition composed (or the open one reused); ``skipped`` says why none was made."""

    edition: Edition | None
    campaign: Campaign
    new_items: int
    skipped: str | None = None
    reused: bool = False


def campaign_context(settings: Settings, conn: Connection | None = None) -> CampaignContext:
    """What campaign files may refer to: configured lists, sources and languages, known tags, templates."""
    tags = set(settings.tagging)
    for source in settings.sources:
        tags.update(t.lower() for t in source.tags)
    if conn is not None:
        tags |= store.known_tags(conn)
    else:
        with engine_for(settings).connect() as own:
            tags |= store.known_tags(own)
    return CampaignContext(
        languages=settings.languages,
        lists=frozenset(settings.lists),
        sources=frozenset(s.name for s in settings.sources),
        tags=frozenset(tags),
        template_exists=lambda name: template_exists(settings, name),
        canonicalize=canonical_url,
        channels=frozenset(channel.name for channel in settings.channels),
    )


def campaigns_dir(settings: Settings) -> Path:
    return settings.resolve_path(settings.campaigns_dir)


def load_campaigns(settings: Settings) -> tuple[list[Campaign], list[ConfigError]]:
    """Every campaign file, and every problem found in them (a broken file does not hide the others)."""
    folder = campaigns_dir(settings)
    if not folder.is_dir():
        return [], []
    return load_all(folder, campaign_context(settings))


def get_campaign(settings: Settings, name: str) -> Campaign:
    """The campaign called ``name``.

    :raises UnknownCampaignError: no such campaign.
    :raises ConfigErrors: its file has problems.
    """
    campaigns, errors = load_campaigns(settings)
    for campaign in campaigns:
        if campaign.name == name:
            return campaign
    mine = [e for e in errors if Path(str(e.location.path)).stem == name]
    if mine:
        raise ConfigErrors(mine)
    raise UnknownCampaignError(name, sorted(c.name for c in campaigns))


def _longest_since(campaign: Campaign) -> timedelta | None:
    spans = [s.select.since for s in campaign.sections]
    if not spans or any(span is None for span in spans):
        return None
    return max(span for span in spans if span is not None)


def selection_now(conn: Connection, campaign: Campaign, now: datetime) -> tuple[EditionSection, ...]:
    """The sections an edition composed now would hold (items earlier editions sent, and items staff
    excluded from editions, left out)."""
    since = _longest_since(campaign)
    candidates = store.list_items(conn, since=(now - since) if since else None)
    excluded = items_admin_db.excluded_among(conn, [item.id for item in candidates])
    candidates = [item for item in candidates if item.id not in excluded]
    return select_sections(campaign, candidates, now, store.sent_item_ids(conn, campaign.name))


def short_reason(new_items: int, min_items: int) -> str:
    """Why a selection is not composed (it is skipped): the words compose and the send plan use."""
    return f"only {new_items} new items, the campaign needs {min_items} (min_items)"


def current_selection(settings: Settings, campaign: Campaign, now: datetime) -> Edition:
    """What an edition composed now would hold, without storing anything (for ``check``)."""
    with engine_for(settings).connect() as conn:
        sections = selection_now(conn, campaign, now)
    return Edition(id=0, campaign=campaign.name, created_at=now, date=now, sections=sections)


def compose(
    settings: Settings, name: str, now: datetime | None = None, keep_short: bool = False
) -> ComposeResult:
    """Compose the campaign's edition now: a new draft, the open draft refreshed, or the approved
    edition unchanged (approved content is frozen; a change would void the approval).

    :param keep_short: compose even below ``min_items`` (for preview), reporting the shortfall.
    :raises UnknownCampaignError, ConfigErrors: the campaign cannot be loaded.
    :raises TemplateError: its template does not render.
    """
    now = now or datetime.now(UTC)
    campaign = get_campaign(settings, name)
    with engine_for(settings).begin() as conn:
        open_editions = store.list_editions(conn, campaign.name, store.OPEN_STATES)
        if open_editions and open_editions[0].state in ("approved", "held"):  # frozen until released
            return ComposeResult(open_editions[0], campaign, len(open_editions[0].items), reused=True)
        sections = selection_now(conn, campaign, now)
        new_items = count_new(sections)
        short = new_items < campaign.min_items
        reason = short_reason(new_items, campaign.min_items) if short else None
        if short and not keep_short:
            log.warning("campaign %s: edition skipped: %s", campaign.name, reason)
            return ComposeResult(None, campaign, new_items, skipped=reason)
        draft = open_editions[0] if open_editions else None
        edition = Edition(
            id=draft.id if draft else 0, campaign=campaign.name, created_at=now, date=now, sections=sections
        )
        edition = replace(edition, content_hash=edition_hash(settings, campaign, edition, now))
        if campaign.approval == "auto" and not short:
            edition = replace(
                edition,
                state="approved",
                approved_by="auto",
                approved_at=now,
                approved_hash=edition.content_hash,
            )
        if draft is None:
            edition = replace(edition, id=store.create_edition(conn, edition))
        else:
            store.update_edition(conn, edition)
    return ComposeResult(edition, campaign, new_items, skipped=reason)


def shortfall(settings: Settings, edition: Edition, campaign: Campaign | None = None) -> Shortfall | None:
    """How far ``edition`` falls below its campaign's ``min_items`` (None: it has enough). New items
    are those no earlier edition of the campaign sent; call it for an edition not yet queued."""
    campaign = campaign or get_campaign(settings, edition.campaign)
    with engine_for(settings).connect() as conn:
        new_items = count_new(edition.sections, store.sent_item_ids(conn, campaign.name))
    if new_items >= campaign.min_items:
        return None
    return Shortfall(edition.id, campaign.name, new_items, campaign.min_items)


def edition_id_for(settings: Settings, reference: str) -> int:
    """The edition ``reference`` names: an id, or a campaign name for that campaign's current draft
    (its newest edition not yet queued: draft, approved or held).

    :raises UnknownCampaignError, ConfigErrors: neither an id nor a campaign that loads.
    :raises EditionError: the campaign has no draft.
    """
    text = reference.strip()
    if text.isdigit():
        return int(text)
    campaign = get_campaign(settings, text)
    with engine_for(settings).connect() as conn:
        drafts = store.list_editions(conn, campaign.name, store.OPEN_STATES)
    if not drafts:
        raise EditionError(f"no draft of {campaign.name}; run 'imk-outreach preview {campaign.name}'")
    return drafts[0].id


def list_editions(settings: Settings, campaign: str | None = None) -> list[Edition]:
    with engine_for(settings).connect() as conn:
        return store.list_editions(conn, campaign)


def get_edition(settings: Settings, edition_id: int) -> Edition:
    """:raises EditionError: no edition with that id."""
    with engine_for(settings).connect() as conn:
        edition = store.get_edition(conn, edition_id)
    if edition is None:
        raise EditionError(f"no edition {edition_id} (see 'imk-outreach editions')")
    return edition


def current_hash(settings: Settings, edition: Edition, now: datetime | None = None) -> str:
    """The content hash the edition renders to now (items may have changed since it was composed)."""
    campaign = get_campaign(settings, edition.campaign)
    return edition_hash(settings, campaign, edition, now or edition.date)


def edition_hash(settings: Settings, campaign: Campaign, edition: Edition, now: datetime) -> str:
    """The content hash approval pins: every email of a newsletter, every post of a social campaign."""
    if campaign.kind == "social":
        return social.edition_posts_hash(settings, campaign, edition)
    return content_hash(render_all(settings, campaign, edition, now))


def approve(
    settings: Settings,
    edition_id: int,
    by: str | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> Edition:
    """Approve what the edition renders to now: records who, when and the content hash.

    :param force: approve it even below the campaign's ``min_items`` (logged).
    :raises EditionError: unknown edition, or one that is already queued or sent.
    :raises ShortEditionError: fewer new items than ``min_items`` and no ``force``.
    """
    now = now or datetime.now(UTC)
    edition = get_edition(settings, edition_id)
    if edition.state not in store.OPEN_STATES:
        raise EditionError(f"edition {edition_id} is {edition.state}; only draft editions can be approved")
    short = shortfall(settings, edition)
    if short is not None and not force:
        raise ShortEditionError(short, "approve")
    if short is not None:
        log.info("%s; approved anyway (--force)", short)
    digest = current_hash(settings, edition)
    who = by or getpass.getuser()
    approved = replace(
        edition, state="approved", content_hash=digest, approved_by=who, approved_at=now, approved_hash=digest
    )
    with engine_for(settings).begin() as conn:
        store.update_edition(conn, approved)
    log.info("edition %d of %s approved by %s (hash %s)", edition_id, edition.campaign, who, digest[:12])
    return approved


def approval_state(settings: Settings, edition: Edition) -> str:
    """``draft``, ``approved``, ``approval void`` (content changed since approval), or the stored state."""
    if edition.state != "approved":
        return edition.state
    try:
        digest = current_hash(settings, edition)
    except ImkError:
        return "approval void (does not render)"
    return "approved" if digest == edition.approved_hash else "approval void (content changed)"
