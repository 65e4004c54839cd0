"""Grouping for the demo tour: the sample items by newsletter section and language."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imk_outreach.config import Settings
from imk_outreach.config_channels import ChannelSettings
from imk_outreach.models import NewsItem
from imk_outreach.services import compose, demo_samples, dispatch, social_queue, subscriptions
from imk_outreach.services.database import dispose_all
from imk_outreach.services.mailcapture import MailCapture

# The sections of the sample monthly newsletter (DESIGN.md); the first whose tags match wins.
DEMO_SECTIONS = {
    "innovation": "Innovation fields / Innovationsfelder",
    "media": "Media & creative industries / Medien & Kreativwirtschaft",
    "finance": "FinTech & BFI",
    "cluster": "Cluster & events / Cluster & Veranstaltungen",
}
_SECTION_TAGS = {
    "finance": {"fintech", "bfi", "blockchain", "finance", "banking"},
    "media": {"film", "tv", "games", "animation", "vfx", "media", "medien", "xr", "vr", "ar"},
    "innovation": {"ki", "ai", "iot", "security", "sicherheit", "xr", "design", "usability", "smart-city"},
}


def section_of(item: NewsItem) -> str:
    tags = set(item.tags)
    for section in ("finance", "media", "innovation"):
        if tags & _SECTION_TAGS[section]:
            return section
    return "cluster"


def group_for_demo(
    items: Sequence[NewsItem], languages: Sequence[str]
) -> list[tuple[tuple[str, str], list[NewsItem]]]:
    """Items grouped by (section, language) in section order, then configured language order."""
    groups: dict[tuple[str, str], list[NewsItem]] = {}
    for item in items:
        groups.setdefault((section_of(item), item.language), []).append(item)
    order = {lang: i for i, lang in enumerate(languages)}
    sections = list(DEMO_SECTIONS)
    keys = sorted(groups, key=lambda k: (sections.index(k[0]), order.get(k[1], len(order)), k[1]))
    return [(key, groups[key]) for key in keys]


# -- the mail part of the tour ---------------------------------------------------------------------


@dataclass(frozen=True)
class MailTour:
    maildir: Path
    subscribers: int
    queued: int
    sent: int
    edition_id: int | None
    note: str | None = None


class PictureServer:
    """A local HTTP server for the pictures the demo draws (``var/demo/pictures``), so gathering
    fetches, checks and resizes item images as it does from a news site. Used as a context manager."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                name = path.split("?", 1)[0].rsplit("/", 1)[-1]
                return str((server.folder or Path("/nonexistent")) / name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-pictures", daemon=True)

    def __enter__(self) -> PictureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def demo_settings(
    settings: Settings, now: datetime | None = None, pictures: PictureServer | None = None
) -> Settings:
    """The config with its own fresh database under var/demo/, so the tour can run again and again and
    never touches the configured database, and with its local sources read from copies under
    var/demo/samples/ whose dates are moved so the newest is yesterday (the tour looks the same any day).

    :param now: the clock (UTC) the sample dates are moved towards.
    :param pictures: serves the pictures drawn for the samples' image addresses while gathering.
    :raises OSError: a sample file cannot be read or copied.
    """
    folder = settings.resolve_path("var/demo")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    dispose_all()
    now = now or datetime.now(UTC)
    if pictures is not None:
        pictures.folder = folder / demo_samples.PICTURES
    sources, _ = demo_samples.copy_sources(
        settings.sources,
        settings.base_dir,
        folder,
        now,
        settings.tz,
        pictures.url if pictures is not None else None,
    )
    database_url = f"sqlite:///{folder / 'imk-outreach.db'}"
    channels = tuple(demo_channel(channel, folder / "posts") for channel in settings.channels)
    changes = {"database_url": database_url, "sources": sources, "channels": channels}
    return settings.model_copy(update=changes)


def demo_channel(channel: ChannelSettings, folder: Path) -> ChannelSettings:
    """The channel as the demo posts to it: a ``file`` channel under var/demo/posts/ with the same name,
    language, hashtags and length rules (the demo never posts to a real account; no slots, so the
    posts go at once)."""
    return ChannelSettings(
        name=channel.name,
        type="file",
        language=channel.language,
        hashtags=dict(channel.hashtags),
        rules=channel.platform,
        path=folder / f"{channel.name}.jsonl",
    )


@dataclass(frozen=True)
class SocialTour:
    posts: tuple[social_queue.PostRow, ...]
    folder: Path
    notes: tuple[str, ...] = ()


def social_tour(settings: Settings, now: datetime) -> SocialTour:
    """The ``trigger: new_items`` campaigns turn the new sample items into posts, published to the
    demo's file channels at once."""
    campaigns = compose.load_campaigns(settings)[0]
    outcomes = social_queue.post_new_items(settings, campaigns, now)
    notes = tuple(
        f"{o.campaign}: {o.error}" if o.error else f"{o.campaign}: a draft waits for approval"
        for o in outcomes
        if o.error or o.waiting is not None
    )
    dispatch.deliver_posts(settings, now=now)
    posts = tuple(sorted(social_queue.recent_posts(settings, limit=1000), key=lambda r: r.id))
    return SocialTour(posts, settings.resolve_path("var/demo/posts"), notes)


def mail_tour(
    settings: Settings, campaign: str = "monthly", subscribers_csv: str = "samples/subscribers.csv"
) -> MailTour:
    """Import the sample subscribers, approve and queue the campaign, and deliver it to a local mail
    capture (a real SMTP server writing a Maildir under var/demo/mail)."""
    maildir = settings.resolve_path("var/demo/mail")
    imported = subscriptions.import_csv(
        settings,
        settings.resolve_path(subscribers_csv),
        status="confirmed",
        consent_note="made-up sample people of the demo",
    )
    count = imported.imported + imported.updated + imported.unchanged
    result = compose.compose(settings, campaign)
    if result.edition is None:
        return MailTour(maildir, count, 0, 0, None, result.skipped)
    if result.edition.state == "draft":
        compose.approve(settings, result.edition.id, by="demo")
    with MailCapture(maildir) as capture:
        smtp = settings.smtp.model_copy(
            update={
                "host": "127.0.0.1",
                "port": capture.port,
                "security": "none",
                "username": None,
                "password": None,
                "dkim": None,
            }
        )
        local = settings.model_copy(update={"smtp": smtp})
        report = dispatch.send(local, campaign)
        delivered = dispatch.deliver(local, until_empty=True)
    return MailTour(maildir, count, report.queued, delivered.sent, report.edition.id)
