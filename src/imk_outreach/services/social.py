"""Wiring of social posts: an edition of a ``kind: social`` campaign rendered into one post per
(item or digest, channel), the content hash that approval pins, and what ``check`` says about the
templates' fixed text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime

from imk_outreach.config import Settings
from imk_outreach.config_channels import ChannelSettings
from imk_outreach.db.posts import post_to_json
from imk_outreach.errors import ImkError
from imk_outreach.models import Campaign, Edition, NewsItem, Post, PostImage
from imk_outreach.render import social
from imk_outreach.services.media import media_file
from imk_outreach.services.rendering import template_env

LIMITS = social.LIMITS
ImageFinder = Callable[[NewsItem], PostImage | None]
DIGEST_KEY = "digest"


class ChannelError(ImkError):
    """A campaign names a channel config.yaml does not have (any more)."""


def campaign_channels(settings: Settings, campaign: Campaign) -> list[ChannelSettings]:
    """:raises ChannelError: a channel of the campaign is not in config.yaml."""
    found = []
    for name in campaign.channels:
        try:
            found.append(settings.channel(name))
        except KeyError:
            known = ", ".join(c.name for c in settings.channels) or "none configured"
            raise ChannelError(
                f"campaign {campaign.name}: no channel {name!r} in config.yaml (channels: {known})"
            ) from None
    return found


def template_for(campaign: Campaign, channel: ChannelSettings, digest: bool) -> str:
    return campaign.templates.get(channel.platform) or social.default_template(channel.platform, digest)


def spec_for(campaign: Campaign, channel: ChannelSettings, key: str) -> social.PostSpec:
    return social.PostSpec(
        channel=channel.name,
        platform=channel.platform,
        language=channel.language,
        languages=campaign.languages,
        key=key,
        template=template_for(campaign, channel, key == DIGEST_KEY),
        hashtags=dict(channel.hashtags),
    )


def image_finder(settings: Settings) -> ImageFinder:
    def image_for(item: NewsItem) -> PostImage | None:
        if not item.image or not item.image.startswith("media/"):
            return None
        found = media_file(settings, item.image.removeprefix("media/"))
        if found is None:
            return None
        return PostImage(str(found.path), found.content_type, item.title)

    return image_for


def render_posts(
    settings: Settings, campaign: Campaign, edition: Edition, channels: Sequence[str] | None = None
) -> list[Post]:
    """Every post of the edition: per new item and channel (``trigger: new_items``), or one digest post
    per channel (a scheduled social campaign). In channel order, then item order.

    :raises TemplateError: a social template is broken (names it and the line).
    :raises PostTooLongError: a template's fixed text alone is over the platform's limit.
    :raises ChannelError: a channel of the campaign is not configured.
    """
    env = template_env(settings)
    image_for = image_finder(settings)
    posts = []
    for channel in campaign_channels(settings, campaign):
        if channels is not None and channel.name not in channels:
            continue
        if campaign.trigger == "new_items":
            for item in edition.items:
                spec = spec_for(campaign, channel, item.id)
                posts.append(social.render_post(env, spec, [item], date=edition.date, image_for=image_for))
        elif edition.items:
            spec = spec_for(campaign, channel, DIGEST_KEY)
            posts.append(
                social.render_post(env, spec, list(edition.items), date=edition.date, image_for=image_for)
            )
    return posts


def posts_hash(posts: Sequence[Post]) -> str:
    """A hash over every post (text, link, facets, card, image, language) of an edition."""
    digest = hashlib.sha256()
    for post in sorted(posts, key=lambda p: (p.channel, p.key)):
        digest.update(json.dumps(post_to_json(post), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def edition_posts_hash(settings: Settings, campaign: Campaign, edition: Edition) -> str:
    return posts_hash(render_posts(settings, campaign, edition))


def fixed_text_problems(settings: Settings, campaign: Campaign, now: datetime) -> list[str]:
    """One message per (template, platform) whose fixed text alone is over the platform's limit, or
    that does not render at all."""
    env = template_env(settings)
    problems = []
    seen: set[tuple[str, str, str]] = set()
    for channel in campaign_channels(settings, campaign):
        key = DIGEST_KEY if campaign.trigger != "new_items" else "item"
        spec = spec_for(campaign, channel, key)
        marker = (spec.template, spec.platform, spec.language)
        if marker in seen:
            continue
        seen.add(marker)
        try:
            social.check_template(env, spec, date=now)
        except ImkError as exc:  # too long (names template, platform, length) or broken (template:line)
            problems.append(f"{exc} (channel {channel.name})")
    return problems
