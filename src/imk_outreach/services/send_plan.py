"""The send plan: what ``send CAMPAIGN`` would queue now (edition, subject and recipients per language,
or why it would refuse), worked out without storing anything, so a person can confirm it first and
``--dry-run`` changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Connection

from imk_outreach.campaigns.selection import count_new
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Campaign, Edition, RenderedEmail
from imk_outreach.services.compose import Shortfall, get_campaign, selection_now, short_reason
from imk_outreach.services.database import engine_for
from imk_outreach.services.enqueue import refusal
from imk_outreach.services.rendering import content_hash, render_all


@dataclass(frozen=True)
class LanguagePlan:
    language: str
    subject: str
    recipients: int  # confirmed subscribers of the list who get this language


@dataclass(frozen=True)
class SendPlan:
    """What a send would do now. ``edition`` is the stored edition a send takes (approved or held),
    or the selection it would compose now (``frozen`` False; id 0 for a new edition)."""

    campaign: str
    list_name: str
    edition: Edition
    frozen: bool
    new_items: int
    min_items: int
    languages: tuple[LanguagePlan, ...]
    refusal: str | None = None  # why the send would queue nothing
    shortfall: Shortfall | None = None  # below min_items (a refusal unless forced)

    @property
    def recipients(self) -> int:
        return sum(lang.recipients for lang in self.languages)

    @property
    def items(self) -> int:
        return len(self.edition.items)


def plan(
    settings: Settings, campaign_name: str, now: datetime | None = None, force: bool = False
) -> SendPlan:
    """What ``send`` would queue for ``campaign_name`` now; nothing is stored or changed.

    :param force: as for send: an edition below ``min_items`` would go out anyway.
    :raises UnknownCampaignError, ConfigErrors: the campaign cannot be loaded.
    :raises TemplateError: its template does not render.
    """
    now = now or datetime.now(UTC)
    campaign = get_campaign(settings, campaign_name)
    with engine_for(settings).connect() as conn:
        edition, frozen = _edition_to_send(conn, campaign, now)
        sent = store.sent_item_ids(conn, campaign.name)
        recipients = store.recipients_per_language(conn, campaign.list, campaign.languages)
    new_items = count_new(edition.sections, sent)
    rendered = render_all(settings, campaign, edition, edition.date)
    if not frozen and campaign.approval == "auto" and new_items >= campaign.min_items:
        digest = content_hash(rendered)  # compose approves it at once
        edition = replace(edition, state="approved", approved_by="auto", approved_hash=digest)
    short = (
        Shortfall(edition.id, campaign.name, new_items, campaign.min_items)
        if new_items < campaign.min_items
        else None
    )
    problem = _refusal(campaign, edition, frozen, rendered, short, force)
    languages = tuple(
        LanguagePlan(lang, rendered[lang].subject, recipients.get(lang, 0)) for lang in campaign.languages
    )
    return SendPlan(
        campaign.name,
        campaign.list,
        edition,
        frozen,
        new_items,
        campaign.min_items,
        languages,
        problem,
        short,
    )


def _edition_to_send(conn: Connection, campaign: Campaign, now: datetime) -> tuple[Edition, bool]:
    """The approved or held edition (frozen: send takes it as it is), else what compose would make of
    the open draft or of a new one, unsaved."""
    open_editions = store.list_editions(conn, campaign.name, store.OPEN_STATES)
    if open_editions and open_editions[0].state in ("approved", "held"):
        return open_editions[0], True
    sections = selection_now(conn, campaign, now)
    draft_id = open_editions[0].id if open_editions else 0
    return Edition(id=draft_id, campaign=campaign.name, created_at=now, date=now, sections=sections), False


def _refusal(
    campaign: Campaign,
    edition: Edition,
    frozen: bool,
    rendered: Mapping[str, RenderedEmail],
    short: Shortfall | None,
    force: bool,
) -> str | None:
    if not frozen and short is not None and not force:  # compose skips it: there is nothing to approve
        return f"campaign {campaign.name}: nothing to send: {short_reason(short.new_items, short.min_items)}"
    problem = refusal(campaign.name, edition, rendered, short, force)
    return str(problem) if problem is not None else None
