"""Wiring of the render stage: the one template environment, the brand, rendering an edition in every
language, and the content hash that approval records."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from jinja2 import Environment

from imk_outreach.campaigns.loader import text_line
from imk_outreach.config import Settings
from imk_outreach.models import Brand, Campaign, Edition, RenderedEmail
from imk_outreach.render.email import TextLocator, render_email
from imk_outreach.render.env import make_env

_envs: dict[str, Environment] = {}


def template_env(settings: Settings, fresh: bool = False) -> Environment:
    """The one Jinja environment: staff templates first, the shipped defaults behind them.

    :param fresh: build it anew, forgetting compiled templates (Jinja's cache would keep serving a
        shipped template after staff add an override of the same name).
    """
    staff = settings.resolve_path(settings.templates_dir)
    key = f"{staff}|{settings.timezone}"
    if fresh or key not in _envs:
        _envs[key] = make_env([staff], timezone=settings.timezone)
    return _envs[key]


def template_exists(settings: Settings, name: str) -> bool:
    return name in set(template_env(settings).list_templates())


def brand(settings: Settings) -> Brand:
    return Brand(
        name=dict(settings.name),
        imprint=dict(settings.imprint),
        public_url=settings.public_url,
        sender_name=settings.sender.name,
        sender_email=settings.sender.email,
        social_links=tuple((link.name, link.url) for link in settings.social_links),
    )


def render_all(
    settings: Settings, campaign: Campaign, edition: Edition, now: datetime
) -> dict[str, RenderedEmail]:
    """The edition compiled once per campaign language.

    :raises TemplateError: a template or the MJML is broken (names the template and line), or a campaign
        text is (names the campaign file, the line in it and the key).
    """
    env, look, locate = template_env(settings), brand(settings), _text_locator(campaign)
    return {
        lang: render_email(env, campaign, edition, lang, look, now, locate_text=locate)
        for lang in campaign.languages
    }


def _text_locator(campaign: Campaign) -> TextLocator | None:
    """Where a campaign text starts in its file; the file is read only when an error needs the line."""
    if not campaign.path:
        return None
    path = Path(campaign.path)
    return lambda key, language: text_line(path, (key, language))


def content_hash(rendered: Mapping[str, RenderedEmail]) -> str:
    """A hash over every rendered message (subject, preheader, HTML, text) in every language."""
    digest = hashlib.sha256()
    for lang in sorted(rendered):
        message = rendered[lang]
        for part in (lang, message.subject, message.preheader, message.html, message.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()
