"""Item images: stored copies, so a subscriber opening a mail tells no news site who read it.

Gathering fetches each item's image once, checks and resizes it (``sources/images.py``) and stores the
copy in ``media_dir`` under a content-addressed name (``<sha256>.jpg`` or ``.png``). The item's ``image``
becomes ``media/<name>``, which rendering turns into ``{public_url}/media/<name>``, served by the web
app. The URL the copy was made from is kept beside it (``image_source``), so an item gathered again
with the same image is not fetched again while its copy exists. An image that cannot be fetched or is
not a usable picture leaves the item without one, with a warning naming source, item and reason; the
item and its source go on.

Copies are never deleted here: mails already sent link to them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import NewsItem
from imk_outreach.sources import images
from imk_outreach.sources.fetch import FetchLimits, make_client

log = logging.getLogger(__name__)

PREFIX = "media/"
NAME_PATTERN = re.compile(r"[0-9a-f]{64}\.(?:jpg|png)")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
# Decoding a large image takes up to ~160 MB (images.MAX_PIXELS); a few at a time keep memory flat
# while downloads go on at the gather's concurrency.
DECODERS = 2


def media_folder(settings: Settings) -> Path:
    """The folder of the stored copies (``media_dir``, relative to config.yaml)."""
    return settings.resolve_path(settings.media_dir)


# -- serving ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFile:
    """A stored copy, for the web app. The name is the hash of the bytes, so it is also the ETag."""

    path: Path
    content_type: str
    etag: str


def media_file(settings: Settings, name: str) -> MediaFile | None:
    """The stored copy called ``name``; None for any name that is not one of ours (no path can get
    out of ``media_dir``) or a copy that is not there."""
    if not NAME_PATTERN.fullmatch(name):
        return None
    path = media_folder(settings) / name
    if not path.is_file():
        return None
    stem, _, extension = name.partition(".")
    return MediaFile(path, CONTENT_TYPES[extension], f'"{stem}"')


def _copy_exists(folder: Path, image: str | None) -> bool:
    name = image[len(PREFIX) :] if image and image.startswith(PREFIX) else ""
    return bool(NAME_PATTERN.fullmatch(name)) and (folder / name).is_file()


# -- storing at gather -----------------------------------------------------------------------------


def _still_current(stored: store.StoredImage, url: str, folder: Path) -> bool:
    """Whether the stored copy was made from ``url`` and is still there. A local file (``file:``) is
    read again whenever its source is: staff may replace a picture under the same name."""
    return stored.image_source == url and not url.startswith("file:") and _copy_exists(folder, stored.image)


def image_limits(settings: Settings) -> FetchLimits:
    """The gather's timeout, redirects and user agent, with the size cap for images."""
    g = settings.gather
    return FetchLimits(g.timeout, images.MAX_IMAGE_BYTES, g.max_redirects, g.user_agent)


@dataclass(frozen=True)
class ImageResult:
    """One source's items with their images stored (``image`` is ``media/<name>`` or None)."""

    items: tuple[NewsItem, ...]
    sources: dict[str, str]  # item id -> the URL its image came from
    failures: tuple[str, ...]  # "<url>: <reason>" per image left out

    @property
    def warning(self) -> str | None:
        """One line for the source's report, or None when every image could be stored."""
        if not self.failures:
            return None
        count = len(self.failures)
        what = "1 item image" if count == 1 else f"{count} item images"
        return f"{what} left out (the items are kept, without image); first: {self.failures[0]}"


@dataclass(frozen=True)
class ImageSession:
    """What every image of one gather shares: the HTTP client, the limits and the two gates."""

    client: httpx.AsyncClient
    folder: Path
    limits: FetchLimits
    downloads: asyncio.Semaphore
    decoders: asyncio.Semaphore

    async def store_images(
        self, source: str, items: Sequence[NewsItem], known: Mapping[str, store.StoredImage]
    ) -> ImageResult:
        """``items`` of ``source`` with their images stored (or left out); concurrently.

        :param known: the stored state of items gathered before (``store.stored_images``).
        """
        done = await asyncio.gather(*(self._one(source, item, known.get(item.id)) for item in items))
        sources = {item.id: url for item, url, _ in done if url is not None}
        failures = tuple(failure for _, _, failure in done if failure is not None)
        return ImageResult(tuple(item for item, _, _ in done), sources, failures)

    async def _one(
        self, source: str, item: NewsItem, stored: store.StoredImage | None
    ) -> tuple[NewsItem, str | None, str | None]:
        """(the item, the URL of its image, why the image was left out or None)."""
        url = item.image
        if url is None:
            return item, None, None
        if stored is not None and stored.source != source:
            # Another source brought the item first; its text and image stay (store.upsert_items).
            return replace(item, image=stored.image), stored.image_source, None
        if stored is not None and _still_current(stored, url, self.folder):
            return replace(item, image=stored.image), url, None
        try:
            name = await self._fetch_and_store(url)
        except images.ImageError as exc:
            reason = exc.reason
        except OSError as exc:
            reason = f"cannot write into media_dir {self.folder}: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - one image never stops the gather
            log.exception("source %s: item %s: image %s failed unexpectedly", source, item.url, url)
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
        else:
            return replace(item, image=PREFIX + name), url, None
        log.warning("source %s: item %s: image %s left out: %s", source, item.url, url, reason)
        return replace(item, image=None), url, f"{url}: {reason}"

    async def _fetch_and_store(self, url: str) -> str:
        async with self.downloads:
            data = await images.fetch_image(self.client, url, self.limits)
        async with self.decoders:
            return await asyncio.to_thread(store_copy, self.folder, data)


@asynccontextmanager
async def image_session(settings: Settings) -> AsyncIterator[ImageSession]:
    """An :class:`ImageSession` for one gather, its client closed at the end."""
    limits = image_limits(settings)
    concurrency = settings.gather.concurrency
    async with make_client(limits, concurrency) as client:
        yield ImageSession(
            client,
            media_folder(settings),
            limits,
            asyncio.Semaphore(concurrency),
            asyncio.Semaphore(DECODERS),
        )


def store_copy(folder: Path, data: bytes) -> str:
    """Check, resize and store the image in ``data``; returns the copy's name.

    Written to a temporary name and renamed, so the web app never serves half a file.

    :raises ImageError: not a usable image.
    :raises OSError: the folder cannot be written.
    """
    prepared = images.prepare(data)
    target = folder / prepared.name
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{prepared.name}.{uuid.uuid4().hex}.part"
        try:
            partial.write_bytes(prepared.data)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return prepared.name
