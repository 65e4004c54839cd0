"""Enqueue: an approved edition becomes outbox rows, one per (edition, channel, recipient), so queueing
twice adds nothing; and test copies sent outside the outbox."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Edition, RenderedEmail, Subscriber
from imk_outreach.publishers.base import Outcome
from imk_outreach.publishers.smtp import SmtpSender
from imk_outreach.render.message import format_date
from imk_outreach.services import tokens
from imk_outreach.services.compose import (
    EditionError,
    ShortEditionError,
    Shortfall,
    compose,
    get_campaign,
    shortfall,
)
from imk_outreach.services.database import engine_for
from imk_outreach.services.delivery import message_template, render_for
from imk_outreach.services.mailserver import require_smtp, sender_domain, smtp_options
from imk_outreach.services.rendering import content_hash, render_all
from imk_outreach.services.social_queue import send_social

log = logging.getLogger(__name__)
CHANNEL = "email"


@dataclass(frozen=True)
class SendReport:
    edition: Edition
    queued: int
    already_queued: bool = False
    shortfall: Shortfall | None = None  # queued below min_items because ``force`` was given


def refusal(
    campaign_name: str,
    edition: Edition,
    rendered: Mapping[str, RenderedEmail],
    short: Shortfall | None,
    force: bool = False,
) -> EditionError | None:
    """Why :func:`send` would not queue ``edition`` (an open edition as composed now), or None.

    Shared with the send plan, so the plan refuses with the same words as the send.
    """
    if edition.state == "draft" or (edition.state == "held" and edition.approved_hash is None):
        which = f"edition {edition.id}" if edition.id else "a new edition"
        return EditionError(
            f"{which} of {campaign_name} waits for approval: check it with "
            f"'imk-outreach preview {campaign_name}', then run 'imk-outreach approve {campaign_name}'"
        )
    if edition.approved_hash is not None and content_hash(rendered) != edition.approved_hash:
        return EditionError(
            f"the approval of edition {edition.id} is void: its content changed after approval; "
            f"preview it again and run 'imk-outreach approve {edition.id}'"
        )
    if short is not None and not force:
        return ShortEditionError(short, "send")
    return None


def send(
    settings: Settings,
    campaign_name: str,
    now: datetime | None = None,
    force: bool = False,
    edition_id: int | None = None,
) -> SendReport:
    """Compose the campaign now (or take its approved edition) and queue it for every confirmed
    subscriber of its list. Queueing twice, or from two processes at once, adds nothing.

    :param force: queue it even below the campaign's ``min_items``.
    :param edition_id: queue only this edition (the one a person confirmed); another is an error.
    :raises EditionError: the edition waits for approval, or its approval is void, or it is not
        ``edition_id``.
    :raises ShortEditionError: fewer new items than ``min_items`` and no ``force``.
    """
    now = now or datetime.now(UTC)
    if get_campaign(settings, campaign_name).kind == "social":  # posts: each at its channel's next slot
        posted = send_social(settings, campaign_name, now, force=force, edition_id=edition_id)
        return SendReport(posted.edition, posted.queued, already_queued=posted.already_queued)
    require_smtp(settings)  # mail that is queued must be able to go out
    result = compose(settings, campaign_name, now, keep_short=force)  # forced: a short draft, to approve
    if result.edition is None:
        raise EditionError(f"campaign {campaign_name}: nothing to send: {result.skipped}")
    edition = result.edition
    if edition_id is not None and edition.id != edition_id:
        raise EditionError(
            f"campaign {campaign_name}: edition {edition.id} is the one to send now, not edition "
            f"{edition_id} as planned; nothing was queued. Run 'imk-outreach send {campaign_name}' again"
        )
    rendered = render_all(settings, result.campaign, edition, edition.date)
    short = shortfall(settings, edition, result.campaign)
    problem = refusal(campaign_name, edition, rendered, short, force)
    if problem is not None:
        raise problem
    if short is not None:
        log.info("%s; queued anyway (--force)", short)
    with engine_for(settings).begin() as conn:
        if store.lock_edition(conn, edition.id) not in ("approved", "held"):  # another send was quicker
            return SendReport(edition, 0, already_queued=True)
        store.save_edition_messages(conn, edition.id, list(rendered.values()))
        queued = store.enqueue_edition(
            conn, edition.id, result.campaign.list, result.campaign.languages, CHANNEL, now
        )
        store.set_edition_state(conn, edition.id, "queued", list_name=result.campaign.list)
    log.info("edition %d of %s: %d messages queued", edition.id, campaign_name, queued)
    return SendReport(edition, queued, shortfall=short)


def send_test(
    settings: Settings, campaign_name: str, to_email: str, now: datetime | None = None
) -> list[str]:
    """Send one copy per language to ``to_email`` now, outside the outbox (no approval needed).

    :returns: the subjects sent.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, campaign_name, now, keep_short=True)
    assert result.edition is not None
    rendered = render_all(settings, result.campaign, result.edition, result.edition.date)
    secret = tokens.secret_key(settings)
    subjects = []
    with SmtpSender(smtp_options(settings)) as sender:
        for language, message in rendered.items():
            test_message = RenderedEmail(
                language,
                f"[Test] {message.subject}",
                message.preheader,
                message.html,
                message.text,
                message.fallbacks,
            )
            template = message_template(settings, result.campaign.list, test_message)
            fake = Subscriber(email=to_email, language=language, name="", status="confirmed", id=0)
            data = render_for(
                settings,
                secret,
                template,
                fake,
                f"<imk.test.{result.edition.id}.{language}.{int(now.timestamp())}@{sender_domain(settings)}>",
                format_date(now),
            )
            outcome = sender.send(settings.sender.email, to_email, data)
            if outcome.outcome != Outcome.SENT:
                raise EditionError(f"test mail to {to_email} ({language}) not accepted: {outcome.reply}")
            subjects.append(test_message.subject)
    return subjects
