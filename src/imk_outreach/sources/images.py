"""Item images: fetch one, make sure it is a real image, and make the copy editions link to.

Editions never hot-link a news site's image (every open would tell that site who read the mail, when
and from where); gathering stores a copy, which the web app serves under ``public_url/media/``.

- :func:`fetch_image` reads the bytes: over HTTP (a size cap, a deadline for the whole answer, bounded
  redirects, and a ``Content-Type`` of JPEG, PNG, GIF or WebP), or from a file when a local source names
  one (``file:`` URLs, which only a source read from disk can produce).
- :func:`prepare` is pure, bytes in and bytes out. The header is not trusted: Pillow must decode the
  image with one of those four decoders (no other decoder is ever tried), its pixel count is checked
  from the header before decoding (a small file can unpack to gigabytes), and the result is drawn
  upright (EXIF orientation), converted to sRGB, at most :data:`IMAGE_WIDTH` wide and written afresh,
  so no metadata of the original (EXIF with camera, GPS position, author; comments; colour profiles)
  survives. Opaque images become JPEG, images with transparency PNG; animations keep their first frame.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from imk_outreach.errors import ImkError
from imk_outreach.sources.fetch import FetchLimits

MAX_IMAGE_BYTES = 5_000_000  # the download, before resizing
# The newsletter body is 600 px wide (mj-body in templates/newsletter/default.mjml.j2). Cards show the
# image in a 36 % column (~190 CSS px: 600 px is over 3x for high-density screens); on phones it spans
# the column (at most ~450 CSS px). A 2x copy (1200 px) would double what every reader downloads.
IMAGE_WIDTH = 600
MIN_SIDE = 32  # smaller is a spacer or a tracking pixel, not a picture to show
MAX_PIXELS = 40_000_000  # decoded pixels (about 160 MB as RGBA); a 48-megapixel photo is refused
JPEG_QUALITY = 82
CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
ACCEPT = "image/webp, image/png, image/jpeg, image/gif;q=0.9"
# What Pillow raises for malformed input (its decoders are not consistent about it).
_BROKEN = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
# Pillow warns from 89 million pixels on; MAX_PIXELS refuses such images before anything is decoded.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ImkError):
    """An image that cannot be used; ``reason`` says why in words staff can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class PreparedImage:
    """The copy to store: ``data`` in ``extension`` format (``jpg`` or ``png``)."""

    data: bytes
    extension: str
    width: int
    height: int

    @property
    def name(self) -> str:
        """Content-addressed file name: the same picture always gets the same name."""
        return f"{hashlib.sha256(self.data).hexdigest()}.{self.extension}"


# -- fetching --------------------------------------------------------------------------------------


async def fetch_image(client: httpx.AsyncClient, url: str, limits: FetchLimits) -> bytes:
    """The bytes of the image at ``url`` (http(s) or ``file:``).

    :param limits: ``timeout`` bounds the whole answer; ``max_bytes`` the body.
    :raises ImageError: unreachable, an HTTP error, a timeout, not labelled as an image, too large,
        a missing file.
    """
    if url.startswith("file:"):
        return read_local_image(url, limits.max_bytes)
    try:
        async with asyncio.timeout(limits.timeout):
            async with client.stream("GET", url, headers={"Accept": ACCEPT}) as response:
                if response.status_code >= 400:
                    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                    raise ImageError(f"the server answered {reason}")
                _check_content_type(response.headers.get("Content-Type"))
                return await _read_capped(response, limits.max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        raise ImageError(f"no complete answer within {limits.timeout:g} s (timeout)") from None
    except httpx.TooManyRedirects:
        raise ImageError(f"more than {limits.max_redirects} redirects") from None
    except httpx.ConnectError as exc:
        raise ImageError(f"connection failed ({str(exc) or type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise ImageError(f"cannot fetch: {str(exc) or type(exc).__name__}") from None


def _check_content_type(header: str | None) -> None:
    kind = (header or "").split(";", 1)[0].strip().lower()
    if kind not in CONTENT_TYPES:
        raise ImageError(f"not an image (Content-Type {kind or 'missing'}; JPEG, PNG, GIF or WebP expected)")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ImageError(_too_large(max_bytes))
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ImageError(_too_large(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> str:
    return f"larger than the {max_bytes / 1_000_000:g} MB limit for images"


def read_local_image(url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the file a ``file:`` URL names.

    :raises ImageError: missing, not a file, unreadable, too large.
    """
    path = Path(url2pathname(urlsplit(url).path))
    try:
        if not path.is_file():
            raise ImageError(f"file not found: {path}")
        if path.stat().st_size > max_bytes:
            raise ImageError(_too_large(max_bytes))
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None


# -- the copy --------------------------------------------------------------------------------------


def prepare(data: bytes, width: int = IMAGE_WIDTH) -> PreparedImage:
    """The copy of the image in ``data`` to store: upright, sRGB, at most ``width`` wide, no metadata.

    :raises ImageError: not a JPEG, PNG, GIF or WebP image Pillow can decode; too many pixels; too small.
    """
    try:
        with Image.open(BytesIO(data), formats=FORMATS) as probe:
            _check_size(*probe.size)
            probe.verify()  # structure and checksums, without decoding the pixels
        with Image.open(BytesIO(data), formats=FORMATS) as image:
            _draft(image, width)
            image.load()
            return _encode(_fit(_to_srgb(ImageOps.exif_transpose(image)), width))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (not JPEG, PNG, GIF or WebP)") from None
    except Image.DecompressionBombError as exc:  # past twice Pillow's limit: refused while opening
        raise ImageError(f"too many pixels ({exc})") from None
    except _BROKEN as exc:
        raise ImageError(f"a broken or unreadable image ({str(exc) or type(exc).__name__})") from None


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(f"too many pixels ({width}×{height}; at most {MAX_PIXELS / 1_000_000:g} million)")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"too small to show ({width}×{height} px; a spacer or tracking pixel?)")


def _draft(image: Image.Image, width: int) -> None:
    """JPEG only: let the decoder scale down by 1/2, 1/4 or 1/8 while decoding (much less memory and
    time), never below ``width`` on the shorter side, so the copy is sharp in either orientation."""
    shorter = min(image.size)
    if image.format == "JPEG" and shorter > width:
        factor = width / shorter
        image.draft(None, (math.ceil(image.width * factor), math.ceil(image.height * factor)))


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _to_srgb(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when some pixel is not fully opaque; colours moved to sRGB if a profile says how."""
    target = "RGB"
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        lowest = rgba.getchannel("A").getextrema()[0]  # one band: (min, max)
        if isinstance(lowest, int | float) and lowest < 255:
            target, image = "RGBA", rgba
    profile = image.info.get("icc_profile")
    if profile and image.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=target)
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: convert as if there were none
    return image.convert(target)


_SRGB = ImageCms.createProfile("sRGB")


def _fit(image: Image.Image, width: int) -> Image.Image:
    """``image`` scaled down (never up) to at most ``width`` wide and twice that high (a very tall
    image, such as an infographic, would otherwise fill a phone's screen many times over)."""
    fitted = image.copy()
    fitted.thumbnail((width, 2 * width), Image.Resampling.LANCZOS)
    return fitted


def _encode(image: Image.Image) -> PreparedImage:
    # A new image from the bare pixels: nothing of the original's info (EXIF, text chunks, profile)
    # can reach the encoder.
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    out = BytesIO()
    if clean.mode == "RGBA":
        clean.save(out, "PNG", optimize=True)
        extension = "png"
    else:
        clean.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        extension = "jpg"
    return PreparedImage(out.getvalue(), extension, clean.width, clean.height)
