"""Bluesky posts through the atproto SDK: one session reused and refreshed, a record key per outbox row.

**The session.** A :class:`BlueskyPublisher` signs in once, on first use: it resumes the session string
saved earlier (``BlueskyOptions.session``, from ``Client.export_session_string``) when there is one for
this handle, else it calls ``com.atproto.server.createSession`` with the app password. Every later call
reuses that session. The SDK checks the access token's ``exp`` before each request and, 15 minutes before
it runs out, calls ``com.atproto.server.refreshSession`` itself; when it creates or refreshes the session,
``BlueskyOptions.on_session`` gets the new session string, so the service can save it and the next
process resumes instead of signing in again (``createSession`` is limited to 30 per 5 minutes and 300
a day per account). Should the server refuse an access token all the same (``ExpiredToken`` /
``InvalidToken``: our clock behind the server's, a revoked session), the publisher refreshes once, falls
back to the app password if the refresh is refused too, and repeats the call once. Only when the app
password itself is refused does the post fail, with ``pause`` (the channel waits for ``channels test``).

**Exactly once.** The post is created with ``com.atproto.repo.createRecord`` under a record key derived
from the outbox key (:func:`record_key`: a valid TID built from a hash of the key), so every attempt of
one outbox row names the same record. A second create of an existing key is refused (the reference PDS
answers it with a 500 today, bluesky-social/atproto#3718); whenever a create fails with an answer that
is not a rate limit or a refused credential, the publisher looks the record up
(``com.atproto.repo.getRecord``): if it exists with the same text, the post is SENT (found from an
earlier attempt). So a timeout after the request went out is safe to retry: it is RETRY, not UNKNOWN.
A record under that key with a *different* text means the key was reused for another post: FAILED, and
nothing is overwritten.

**Outcomes.** 429 (``RateLimitExceeded``): RETRY with ``retry_after`` from ``Retry-After`` or the
``RateLimit-Reset`` epoch seconds; the SDK neither retries nor sleeps (atproto_client.request raises on
every non-2xx answer), so the outbox owns the timing. 5xx (and 409): RETRY. No answer (refused
connection, timeout, connection lost): RETRY. 401/403 or ``AuthenticationRequired`` / ``ExpiredToken`` /
``InvalidToken`` / ``AccountTakedown`` left after the renewal above: FAILED with ``pause`` and
Bluesky's message. Other 4xx (``InvalidRequest``: too long, a bad facet): FAILED.

**The record.** ``text``, ``createdAt``, ``langs`` (``both``: German and English), the facets of
:class:`~imk_outreach.models.Post` (links and hashtags, UTF-8 byte ranges) and one embed, as Bluesky
allows one: the link card (``app.bsky.embed.external``) with the item image uploaded as its ``thumb``,
or, without a card, the image (``app.bsky.embed.images``) with its alt text. An image that cannot be read
or is larger than Bluesky accepts is left out (the reply says so); the post goes out without it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from atproto import Client, Session, SessionEvent, models  # type: ignore[import-untyped, unused-ignore]
from atproto_client.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    InvokeTimeoutError,
    LoginRequiredError,
    NetworkError,
    RateLimitExceededError,
    RequestErrorBase,
)
from atproto_client.models.common import XrpcError  # type: ignore[import-untyped, unused-ignore]
from atproto_client.request import Request  # type: ignore[import-untyped, unused-ignore]
from atproto_core.exceptions import AtProtocolError  # type: ignore[import-untyped, unused-ignore]
from PIL import Image, UnidentifiedImageError

from imk_outreach.models import Post, PostImage
from imk_outreach.publishers.base import Outcome, PostResult, PublishError

__all__ = ["COLLECTION", "BlueskyOptions", "BlueskyPublisher", "record_key"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

COLLECTION = "app.bsky.feed.post"
MAX_IMAGE_BYTES = 2_000_000  # app.bsky.embed.images#image
MAX_THUMB_BYTES = 1_000_000  # app.bsky.embed.external#external thumb
LANGS = {"de": ["de"], "en": ["en"], "both": ["de", "en"]}
# the server refused the session's tokens: renew them (refresh, else sign in) and repeat the call once
_SESSION_REFUSED = frozenset({"ExpiredToken", "InvalidToken", "AuthMissing"})
# left after that renewal: the credentials themselves are refused
_AUTH_REFUSED = _SESSION_REFUSED | {"AuthenticationRequired", "AccountTakedown", "AccountDeactivated"}
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable
_TID_EPOCH_US = 1_672_531_200_000_000  # 2023-01-01T00:00:00Z in microseconds
_TID_SPAN_BITS = 45  # a record key's timestamp lies in the ~407 days from _TID_EPOCH_US


@dataclass(frozen=True)
class BlueskyOptions:
    """One Bluesky account; the service layer builds it from the channel's settings.

    ``service`` is the PDS or entryway the account signs in at (``https://bsky.social``; after sign-in
    the SDK talks to the account's own PDS host named in its DID document). ``timeout`` bounds each
    HTTP request (connect, send, answer) in seconds. ``session``: a session string saved from an earlier
    ``on_session`` call, resumed instead of a new sign-in. ``on_session`` is called with the new
    session string whenever a session is created or refreshed, so the service can keep it.
    """

    channel: str
    handle: str
    app_password: str
    service: str = "https://bsky.social"
    timeout: float = 20.0
    session: str | None = None
    on_session: Callable[[str], None] | None = None


def record_key(key: str) -> str:
    """The record key of the post for outbox key ``key``: a TID (13 base32-sortable characters: a 53-bit
    microsecond timestamp and a 10-bit clock id), both parts taken from a SHA-256 of the key.

    The same key always gives the same record key, so a repeated attempt names the record of the first.
    The timestamp lies in 2023/24, before any post of this product, so it never claims a future date; the
    atproto spec says a TID record key may hold any value and is not to be trusted as a creation time
    (``createdAt`` is). Changing this derivation would let a retry after an upgrade post twice.
    """
    digest = int.from_bytes(hashlib.sha256(f"imk-outreach:{key}".encode()).digest()[:8], "big")
    micros = _TID_EPOCH_US + (digest >> (64 - _TID_SPAN_BITS))
    value = (micros << 10) | (digest & 0x3FF)
    return "".join(_TID_ALPHABET[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


class _BadPost(Exception):
    """The post cannot be sent as it is (a rendering bug); FAILED without asking Bluesky."""


class BlueskyPublisher:
    """Publishes posts on one Bluesky account; see the module docstring. One thread at a time."""

    def __init__(self, options: BlueskyOptions) -> None:
        """:raises PublishError: ``service`` is no http(s) URL or ``timeout`` is not positive."""
        if not options.service.startswith(("https://", "http://")) or not options.timeout > 0:
            problem = f"service {options.service!r} is not an http(s) URL such as https://bsky.social"
            if options.timeout <= 0:
                problem = f"timeout {options.timeout:g} must be more than 0 seconds"
            raise PublishError(options.channel, problem, retryable=False)
        self.options = options
        request = Request(timeout=httpx.Timeout(options.timeout))
        self._client = Client(base_url=options.service, request=request)
        self._client.on_session_change(self._session_changed)
        self._signed_in = False
        self._step = "signing in"  # what the publisher was doing, for the reply when it fails
        self._did: str | None = None
        self._handle = options.handle

    # -- SocialPublisher --------------------------------------------------------------------------------

    def publish(self, post: Post, key: str) -> PostResult:
        rkey = record_key(key)
        try:
            record = _record(post)
        except _BadPost as exc:
            return PostResult(Outcome.FAILED, str(exc))
        try:
            return self._with_session(lambda: self._create(post, record, rkey))
        except (AtProtocolError, httpx.HTTPError) as exc:
            return self._failure(exc)

    def verify(self) -> str:
        try:
            info = self._with_session(self._get_session)
        except (AtProtocolError, httpx.HTTPError) as exc:
            result = self._failure(exc)
            raise PublishError(
                self.options.channel, result.reply, retryable=result.outcome is Outcome.RETRY
            ) from exc
        return f"@{info.handle} ({info.did})"

    def close(self) -> None:
        self._client.request.close()

    # -- session ----------------------------------------------------------------------------------------

    def _session_changed(self, event: SessionEvent, session: Session) -> None:
        self._did, self._handle = session.did, session.handle
        if event in (SessionEvent.CREATE, SessionEvent.REFRESH) and self.options.on_session is not None:
            try:
                self.options.on_session(session.export())
            except Exception:  # saving is the service's business; a failure must not fail the post
                log.exception("%s: could not save the new Bluesky session", self.options.channel)

    def _sign_in(self) -> None:
        if not self._signed_in and not self._resume():
            self._login()
        self._signed_in = True

    def _login(self) -> None:
        self._step = "signing in"
        self._client.login(self.options.handle, self.options.app_password, fetch_bsky_profile=False)

    def _get_session(self) -> Any:
        self._step = "checking the session"
        return self._client.com.atproto.server.get_session()

    def _resume(self) -> bool:
        """Resume the saved session if it belongs to this handle and its tokens decode."""
        saved = self.options.session
        if not saved:
            return False
        try:
            session = Session.decode(saved)
            usable = session.handle.casefold() == self.options.handle.casefold() and bool(
                session.access_jwt_payload.exp
            )
        except Exception:  # noqa: BLE001 - any defect of the saved string means: sign in afresh
            usable = False
        if not usable:
            log.warning("%s: the saved Bluesky session is unusable; signing in again", self.options.channel)
            return False
        self._client.login(session_string=saved, fetch_bsky_profile=False)
        return True

    def _with_session(self, call: Callable[[], _T]) -> _T:
        """``call`` within the session; a refused session is renewed and ``call`` repeated once."""
        self._sign_in()
        try:
            return call()
        except RequestErrorBase as exc:
            if _error_name(exc) not in _SESSION_REFUSED:
                raise
            log.info("%s: Bluesky refused the session (%s); renewing it", self.options.channel, exc)
        self._renew()
        return call()

    def _renew(self) -> None:
        self._step = "refreshing the session"
        try:
            # the SDK's own refresh (it fires SessionEvent.REFRESH); no public method forces one early
            self._client._refresh_and_set_session()
        except RequestErrorBase as exc:
            if _error_name(exc) not in _AUTH_REFUSED:
                raise
            log.info("%s: the refresh was refused too (%s); signing in", self.options.channel, exc)
            self._login()

    # -- posting ----------------------------------------------------------------------------------------

    def _create(self, post: Post, record: dict[str, Any], rkey: str) -> PostResult:
        self._step = "uploading the image"
        embed, note = self._embed(post)
        if embed is not None:
            record = {**record, "embed": embed}
        self._step = "creating the post"
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=self._repo(),
            collection=COLLECTION,
            rkey=rkey,
            record=models.AppBskyFeedPost.Record(**record),
        )
        try:
            created = self._client.com.atproto.repo.create_record(data)
        except RequestErrorBase as exc:
            existing = self._lookup(rkey) if _may_exist(exc) else None
            if existing is None:
                raise
            return self._found(existing, post, rkey)
        return PostResult(Outcome.SENT, _join("posted", note), remote_id=created.uri, url=self._url(rkey))

    def _repo(self) -> str:
        if self._did is None:
            raise LoginRequiredError
        return self._did

    def _url(self, rkey: str) -> str:
        return f"https://bsky.app/profile/{self._handle}/post/{rkey}"

    def _lookup(self, rkey: str) -> models.ComAtprotoRepoGetRecord.Response | None:
        """The record under ``rkey``, or None when there is none or the lookup failed."""
        params = models.ComAtprotoRepoGetRecord.Params(repo=self._repo(), collection=COLLECTION, rkey=rkey)
        try:
            return self._client.com.atproto.repo.get_record(params)
        except (AtProtocolError, httpx.HTTPError) as exc:
            log.info("%s: no record %s to be found (%s)", self.options.channel, rkey, exc)
            return None

    def _found(self, existing: models.ComAtprotoRepoGetRecord.Response, post: Post, rkey: str) -> PostResult:
        value = existing.value
        text = value.get("text") if isinstance(value, dict) else getattr(value, "text", None)
        if text != post.text:
            return PostResult(
                Outcome.FAILED,
                f"record key {rkey} already holds a different post ({str(text)[:60]!r}, {existing.uri}); "
                "the outbox key was reused, nothing was posted",
            )
        reply = f"already posted by an earlier attempt ({existing.uri})"
        return PostResult(Outcome.SENT, reply, remote_id=existing.uri, url=self._url(rkey))

    def _embed(self, post: Post) -> tuple[Any, str]:
        """The post's one embed (or None) and a note on an image left out."""
        blob, ratio, note = None, None, ""
        if post.image is not None:
            limit = MAX_THUMB_BYTES if post.card is not None else MAX_IMAGE_BYTES
            data, ratio, note = _read_image(post.image, limit)
            if data is not None:
                headers = {"Content-Type": post.image.mime_type}
                blob = self._client.com.atproto.repo.upload_blob(data, headers=headers).blob
        if post.card is not None:
            card = post.card
            external = models.AppBskyEmbedExternal.External(
                uri=card.url, title=card.title, description=card.description, thumb=blob
            )
            return models.AppBskyEmbedExternal.Main(external=external), note
        if blob is not None and post.image is not None:
            image = models.AppBskyEmbedImages.Image(alt=post.image.alt, image=blob, aspect_ratio=ratio)
            return models.AppBskyEmbedImages.Main(images=[image]), note
        return None, note

    # -- outcomes ---------------------------------------------------------------------------------------

    def _failure(self, exc: Exception) -> PostResult:
        """What an exception of the SDK (or of httpx beneath it) means for the post."""
        step = self._step
        if isinstance(exc, RateLimitExceededError):
            return PostResult(
                Outcome.RETRY, f"Bluesky rate limit while {step}: {exc}", retry_after=_wait(exc)
            )
        if isinstance(exc, RequestErrorBase) and exc.response is not None:
            return self._refusal(exc, exc.response.status_code, step)
        if isinstance(exc, (InvokeTimeoutError, httpx.TimeoutException)):
            waited = f"no answer from Bluesky within {self.options.timeout:g} s while {step}"
            return PostResult(
                Outcome.RETRY, waited + " (safe to retry: the record key finds an earlier post)"
            )
        if isinstance(exc, (NetworkError, httpx.TransportError)):
            cause = exc.__cause__ or exc
            where = f"could not reach Bluesky at {self.options.service} while {step}"
            return PostResult(Outcome.RETRY, f"{where}: {type(cause).__name__}: {cause}")
        if isinstance(exc, LoginRequiredError):
            return PostResult(Outcome.FAILED, f"Bluesky: not signed in while {step}", pause=True)
        return PostResult(Outcome.RETRY, f"unexpected answer from Bluesky while {step}: {exc}")

    def _refusal(self, exc: RequestErrorBase, status: int, step: str) -> PostResult:
        message = f"Bluesky answered {exc} while {step}"
        if status in (401, 403) or _error_name(exc) in _AUTH_REFUSED:
            hint = f" (check the app password of {self.options.handle}, then run channels test)"
            return PostResult(Outcome.FAILED, message + hint, pause=True)
        if status >= 500 or status == 409:
            return PostResult(Outcome.RETRY, message)
        return PostResult(Outcome.FAILED, message)


# -- the record -------------------------------------------------------------------------------------------


def _record(post: Post) -> dict[str, Any]:
    """The ``app.bsky.feed.post`` fields of ``post`` (the embed is added once the image is uploaded)."""
    langs = LANGS.get(post.language)
    if langs is None:
        raise _BadPost(f"language {post.language!r} of the Bluesky post is not one of {', '.join(LANGS)}")
    created_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"text": post.text, "created_at": created_at, "langs": langs, "facets": _facets(post) or None}


def _facets(post: Post) -> list[models.AppBskyRichtextFacet.Main]:
    data = post.text.encode()
    facets = []
    for n, facet in enumerate(post.facets, 1):
        where = f"facet {n} ({facet.kind} {facet.value!r}, bytes {facet.byte_start}-{facet.byte_end})"
        if not 0 <= facet.byte_start < facet.byte_end <= len(data):
            raise _BadPost(f"{where} lies outside the post's {len(data)} bytes of text (a rendering bug)")
        try:
            data[facet.byte_start : facet.byte_end].decode()
        except UnicodeDecodeError:
            raise _BadPost(f"{where} cuts a character in two (a rendering bug)") from None
        feature: models.AppBskyRichtextFacet.Link | models.AppBskyRichtextFacet.Tag
        if facet.kind == "link":
            feature = models.AppBskyRichtextFacet.Link(uri=facet.value)
        elif facet.kind == "tag":
            feature = models.AppBskyRichtextFacet.Tag(tag=facet.value)
        else:
            raise _BadPost(f"{where}: unknown kind {facet.kind!r} (link or tag)")
        index = models.AppBskyRichtextFacet.ByteSlice(byte_start=facet.byte_start, byte_end=facet.byte_end)
        facets.append(models.AppBskyRichtextFacet.Main(features=[feature], index=index))
    return facets


def _read_image(image: PostImage, limit: int) -> tuple[bytes | None, Any, str]:
    """(bytes, aspect ratio, note): the bytes None with a note when the image is left out."""
    try:
        data = Path(image.path).read_bytes()
    except OSError as exc:
        log.warning("image %s left out of the Bluesky post: %s", image.path, exc)
        return None, None, f"image left out: cannot read {image.path} ({exc.strerror})"
    if len(data) > limit:
        log.warning("image %s left out of the Bluesky post: %d bytes", image.path, len(data))
        return None, None, f"image left out: {len(data):,} bytes, Bluesky takes at most {limit:,}"
    try:
        with Image.open(image.path) as opened:
            width, height = opened.size
        ratio = models.AppBskyEmbedDefs.AspectRatio(width=width, height=height)
    except (OSError, UnidentifiedImageError, ValueError):
        ratio = None  # Bluesky then shows it in a square; the post is not worth failing over that
    return data, ratio, ""


# -- errors -----------------------------------------------------------------------------------------------


def _error_name(exc: RequestErrorBase) -> str | None:
    content = exc.response.content if exc.response is not None else None
    return content.error if isinstance(content, XrpcError) else None


def _may_exist(exc: RequestErrorBase) -> bool:
    """Whether a refused create may mean "that record key exists already": any answer but a rate limit
    or a refused credential (the reference PDS answers a duplicate key with a 500; a later version may
    name the error)."""
    if exc.response is None or isinstance(exc, RateLimitExceededError):
        return False
    return exc.response.status_code not in (401, 403) and _error_name(exc) not in _AUTH_REFUSED


def _wait(exc: RateLimitExceededError) -> float | None:
    """Seconds until Bluesky takes requests again: ``Retry-After``, else ``RateLimit-Reset``."""
    if exc.retry_after is not None:
        return float(exc.retry_after)
    if exc.reset_at is not None:
        return max(float((exc.reset_at - datetime.now(UTC)).total_seconds()), 0.0)
    return None


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
