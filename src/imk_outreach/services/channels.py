"""Social channels: a publisher built from a ``channels:`` entry (credentials looked up only now),
``channels test``, and the pause a refused credential puts on a channel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from imk_outreach.config import Settings, reveal
from imk_outreach.config_channels import ChannelSettings
from imk_outreach.db import store
from imk_outreach.errors import ImkError
from imk_outreach.publishers.base import PublishError, SocialPublisher, get_publisher_factory
from imk_outreach.services.database import engine_for

log = logging.getLogger(__name__)


class UnknownChannelError(ImkError):
    def __init__(self, settings: Settings, name: str) -> None:
        known = ", ".join(c.name for c in settings.channels) or "none: add channels: to config.yaml"
        super().__init__(f"no channel {name!r} in config.yaml (channels: {known})")


def get_channel(settings: Settings, name: str) -> ChannelSettings:
    """:raises UnknownChannelError: no such channel."""
    try:
        return settings.channel(name)
    except KeyError:
        raise UnknownChannelError(settings, name) from None


def _credentials(channel: ChannelSettings) -> dict[str, str]:
    """The channel's credentials, read from the environment now.

    :raises MissingVariableError: a variable is not set (names it and the line of config.yaml).
    """
    return {key: reveal(value) for key, value in channel.credentials.items()}


def _options(settings: Settings, channel: ChannelSettings) -> Any:
    """The options object of the channel's publisher module (each type has its own)."""
    secrets = _credentials(channel)
    name, timeout = channel.name, channel.timeout
    if channel.type == "x":
        from imk_outreach.publishers.x import XOptions

        bases = {"api_base": channel.base_url, "upload_base": channel.base_url} if channel.base_url else {}
        return XOptions(channel=name, timeout=timeout, **secrets, **bases)
    if channel.type == "mastodon":
        from imk_outreach.publishers.mastodon import MastodonOptions

        assert channel.base_url is not None
        return MastodonOptions(name, channel.base_url, secrets["access_token"], timeout=timeout)
    if channel.type == "bluesky":
        from imk_outreach.publishers.bluesky import BlueskyOptions

        assert channel.handle is not None
        with engine_for(settings).connect() as conn:
            session = store.channel_state(conn, name).session
        return BlueskyOptions(
            channel=name,
            handle=channel.handle,
            app_password=secrets["app_password"],
            service=channel.base_url or "https://bsky.social",
            timeout=timeout,
            session=session,
            on_session=lambda text: _save_session(settings, name, text),
        )
    if channel.type == "linkedin":
        from imk_outreach.publishers.linkedin import LinkedInOptions

        assert channel.author is not None and channel.api_version is not None
        return LinkedInOptions(
            channel=name,
            access_token=secrets["access_token"],
            author=channel.author,
            api_version=channel.api_version,
            base_url=channel.base_url or "https://api.linkedin.com",
            timeout=timeout,
        )
    from imk_outreach.publishers.file import FileOptions

    assert channel.path is not None
    return FileOptions(channel=name, path=settings.resolve_path(channel.path))


def _save_session(settings: Settings, channel: str, session: str) -> None:
    with engine_for(settings).begin() as conn:
        store.save_channel_state(conn, channel, datetime.now(UTC), session=session)


def publisher_for(settings: Settings, channel: ChannelSettings) -> SocialPublisher:
    """The channel's publisher (the plugin registered under its type).

    :raises MissingVariableError: a credential's variable is not set.
    """
    factory = get_publisher_factory(channel.type)
    return cast(SocialPublisher, factory(_options(settings, channel)))


# -- channels test, pausing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelCheck:
    channel: str
    ok: bool
    message: str  # who the credentials are, or what is wrong (one line)
    was_paused: str | None = None  # the reason it was paused (now lifted when ok)


def test_channel(settings: Settings, name: str, now: datetime | None = None) -> ChannelCheck:
    """Check the channel's credentials against the platform. Passing lifts a pause.

    :raises UnknownChannelError: no such channel.
    """
    now = now or datetime.now(UTC)
    channel = get_channel(settings, name)
    with engine_for(settings).connect() as conn:
        before = store.channel_state(conn, name)
    try:
        publisher = publisher_for(settings, channel)
        try:
            who = publisher.verify()
        finally:
            publisher.close()
    except PublishError as exc:
        return ChannelCheck(name, False, exc.message, before.paused_reason)
    except ImkError as exc:  # a variable not set
        return ChannelCheck(name, False, str(exc), before.paused_reason)
    with engine_for(settings).begin() as conn:
        store.save_channel_state(
            conn, name, now, paused_at=None, paused_reason=None, checked_at=now, checked_as=who
        )
    if before.paused_at is not None:
        log.info("channel %s: credentials work again (%s); pause lifted", name, who)
    return ChannelCheck(name, True, who, before.paused_reason)


def pause_channel(settings: Settings, name: str, reason: str, now: datetime) -> None:
    with engine_for(settings).begin() as conn:
        store.save_channel_state(conn, name, now, paused_at=now, paused_reason=reason)
    log.warning(
        "channel %s paused: %s; run 'imk-outreach channels test %s' once it is fixed", name, reason, name
    )


def paused(settings: Settings) -> dict[str, str]:
    """channel -> why it is paused."""
    with engine_for(settings).connect() as conn:
        return store.paused_channels(conn)


@dataclass(frozen=True)
class ChannelStatus:
    name: str
    type: str
    platform: str
    language: str
    slots: tuple[str, ...]
    daily_cap: int | None
    paused_reason: str | None
    checked_as: str | None
    checked_at: datetime | None


def channel_statuses(settings: Settings) -> list[ChannelStatus]:
    with engine_for(settings).connect() as conn:
        states = {c.name: store.channel_state(conn, c.name) for c in settings.channels}
    return [
        ChannelStatus(
            c.name,
            c.type,
            c.platform,
            c.language,
            tuple(c.slots),
            c.daily_cap,
            states[c.name].paused_reason if states[c.name].paused_at else None,
            states[c.name].checked_as,
            states[c.name].checked_at,
        )
        for c in settings.channels
    ]
