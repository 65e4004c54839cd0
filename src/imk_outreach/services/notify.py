"""Mails to staff (``notify:`` in config.yaml): an edition waits for approval or was held.

Staff mails are short, bilingual (German first) plain text with the preview link; they go straight to
the SMTP server, not through the subscribers' outbox. A failed notification is logged and tried
again on the scheduler's next tick.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from imk_outreach.config import Settings
from imk_outreach.errors import ImkError
from imk_outreach.models import CampaignRun, Edition
from imk_outreach.publishers.base import Outcome
from imk_outreach.publishers.smtp import SmtpSender
from imk_outreach.services import tokens
from imk_outreach.services.mailserver import sender_domain, smtp_options

log = logging.getLogger(__name__)

_TEXT = {
    "waiting": {
        "de": (
            "Die Ausgabe {edition} der Kampagne {campaign} wartet auf Freigabe.\n"
            "Fällig: {due}. Ohne Freigabe bis {deadline} {late_de}\n\n"
            "Vorschau (alle Sprachen): {url}\n"
            "Freigeben: imk-outreach approve {edition}\n"
        ),
        "en": (
            "Edition {edition} of campaign {campaign} waits for approval.\n"
            "Due: {due}. Without approval by {deadline} {late_en}\n\n"
            "Preview (every language): {url}\n"
            "Approve: imk-outreach approve {edition}\n"
        ),
    },
    "held": {
        "de": (
            "Die Ausgabe {edition} der Kampagne {campaign} wurde angehalten: sie war am {due} fällig "
            "und ist nicht bis {deadline} hinausgegangen.\n\n"
            "Vorschau: {url}\n"
            "Prüfen und jetzt senden: imk-outreach approve {edition}\n"
        ),
        "en": (
            "Edition {edition} of campaign {campaign} is held: it was due at {due} and did not go out by "
            "{deadline}.\n\n"
            "Preview: {url}\n"
            "Check it and send it now: imk-outreach approve {edition}\n"
        ),
    },
}
_SUBJECT = {
    "waiting": "Freigabe nötig / Approval needed: {campaign}, edition {edition}",
    "held": "Angehalten / Held: {campaign}, edition {edition}",
}
_LATE = {
    "de": {"hold": "wird sie angehalten.", "send": "geht sie nach der Freigabe verspätet hinaus."},
    "en": {"hold": "it will be held.", "send": "it goes out late, once approved."},
}


def compose_notice(
    settings: Settings, edition: Edition, run: CampaignRun, url: str, late_policy: str
) -> EmailMessage:
    """The staff mail for a waiting or held edition (pure: no I/O)."""
    kind = "held" if edition.state == "held" else "waiting"
    local = "%Y-%m-%d %H:%M"
    values = {
        "edition": edition.id,
        "campaign": edition.campaign,
        "due": run.due_at.astimezone(settings.tz).strftime(local),
        "deadline": run.deadline.astimezone(settings.tz).strftime(local),
        "url": url,
        "late_de": _LATE["de"].get(late_policy, ""),
        "late_en": _LATE["en"].get(late_policy, ""),
    }
    message = EmailMessage()
    message["Subject"] = _SUBJECT[kind].format(**values)
    message["From"] = f"{settings.sender.name} <{settings.sender.email}>"
    message["To"] = ", ".join(settings.notify)
    message["Date"] = format_datetime(run.updated_at or run.due_at)
    message["Message-ID"] = make_msgid(f"imk.notice.{run.id}", domain=sender_domain(settings))
    message["Auto-Submitted"] = "auto-generated"
    body = _TEXT[kind]["de"].format(**values) + "\n-- \n\n" + _TEXT[kind]["en"].format(**values)
    message.set_content(body)
    return message


def edition_waits(
    settings: Settings, edition: Edition, run: CampaignRun, now: datetime, late_policy: str = "hold"
) -> bool:
    """Tell every ``notify`` address that ``edition`` waits (for approval, or for a person: held).

    :returns: True when the SMTP server took the mail for every address.
    """
    if not settings.notify:
        return False
    secret = tokens.secret_key(settings)
    url = tokens.edition_preview_url(settings, secret, edition.id, now)
    data = compose_notice(settings, edition, run, url, late_policy).as_bytes()
    try:
        with SmtpSender(smtp_options(settings)) as sender:
            results = [sender.send(settings.sender.email, to, data) for to in settings.notify]
    except ImkError as exc:
        log.warning("staff notice for edition %d not sent: %s", edition.id, exc)
        return False
    refused = [r.reply for r in results if r.outcome != Outcome.SENT]
    if refused:
        log.warning("staff notice for edition %d not accepted: %s", edition.id, "; ".join(map(str, refused)))
        return False
    log.info(
        "staff told that edition %d of %s waits (%s)",
        edition.id,
        edition.campaign,
        ", ".join(settings.notify),
    )
    return True
