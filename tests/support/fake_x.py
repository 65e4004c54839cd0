"""A local X API v2 for tests: tweets, the authenticated user and the v2 chunked media upload.

:class:`FakeX` registers its routes on a :class:`~tests.support.platformserver.PlatformServer` (media
routes optionally on a second one, to show that uploads go to ``upload_base``) and answers like X:

* ``POST /2/tweets`` -> ``201 {"data": {"id", "text", "edit_history_tweet_ids"}}``; the same text twice
  -> X's ``403`` duplicate-content body; unknown media ids -> X's ``400`` invalid-request body.
* ``GET /2/users/me`` -> ``{"data": {"id", "name", "username"}}``.
* ``POST /2/media/upload/initialize`` (JSON), ``/2/media/upload/{id}/append`` (multipart ``media`` +
  ``segment_index``), ``/2/media/upload/{id}/finalize``, ``POST /2/media/metadata`` (alt text).

Every request must carry an OAuth 1.0a ``Authorization`` header for the configured consumer key and
access token whose HMAC-SHA1 signature checks out against the configured secrets and the address the
request actually reached (nonces are single-use); otherwise, or after :meth:`FakeX.revoke`, the answer
is X's ``401`` body. Every answer has X's ``x-rate-limit-limit/remaining/reset`` headers; an endpoint
whose window is used up (``limits=``) answers ``429`` until the window (15 minutes) ends.
"""

from __future__ import annotations

import io
import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from oauthlib.oauth1.rfc5849 import signature, utils
from PIL import Image

from tests.support.platformserver import PlatformServer, Reply, Request

CONSUMER_KEY = "imk-consumer-key"
CONSUMER_SECRET = "imk-consumer-secret"
ACCESS_TOKEN = "1460000000000000001-imkaccesstoken"
ACCESS_TOKEN_SECRET = "imk-access-token-secret"
USER_ID = "1460000000000000001"
USERNAME = "cluster_imk"
WINDOW_SECONDS = 900  # X's rate-limit window: 15 minutes
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/pjpeg", "image/tiff")
MAX_IMAGE_BYTES = 5 * 1024 * 1024

UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
DUPLICATE = {
    "detail": "You are not allowed to create a Tweet with duplicate content.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
NOT_PERMITTED = {
    "detail": "You are not permitted to perform this action.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
TOO_MANY = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}
UNAVAILABLE = {
    "title": "Service Unavailable",
    "detail": "Service Unavailable",
    "type": "about:blank",
    "status": 503,
}
DEFAULT_LIMITS = {
    "POST /2/tweets": 100,
    "GET /2/users/me": 75,
    "POST /2/media/upload/initialize": 500,
    "POST /2/media/upload/:id/append": 500,
    "POST /2/media/upload/:id/finalize": 500,
    "POST /2/media/metadata": 500,
}


def invalid_request(message: str, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """X's 400 body for a request whose parameters it refuses."""
    error: dict[str, Any] = {"message": message}
    if parameters:
        error["parameters"] = dict(parameters)
    return {
        "errors": [error],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }


@dataclass
class Tweet:
    id: str
    text: str
    media_ids: list[str]
    alt_texts: list[str | None]


@dataclass
class Media:
    id: str
    media_type: str
    total_bytes: int
    category: str
    segments: dict[int, bytes] = field(default_factory=dict)
    finalized: bool = False
    alt_text: str | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.segments[index] for index in sorted(self.segments))


@dataclass
class _Window:
    limit: int
    remaining: int
    reset: int


class FakeX:
    """X's API for one account. ``limits``: requests per 15-minute window by ``"METHOD /route"``
    (media ids as ``:id``), e.g. ``{"POST /2/tweets": 1}``."""

    def __init__(
        self,
        server: PlatformServer,
        media_server: PlatformServer | None = None,
        *,
        limits: Mapping[str, int] | None = None,
        consumer_key: str = CONSUMER_KEY,
        consumer_secret: str = CONSUMER_SECRET,
        access_token: str = ACCESS_TOKEN,
        access_token_secret: str = ACCESS_TOKEN_SECRET,
    ) -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token, self.access_token_secret = access_token, access_token_secret
        self.tweets: list[Tweet] = []
        self.media: dict[str, Media] = {}
        self.auth_refusals: list[str] = []  # why requests got 401 (bad header, signature, nonce)
        self.revoked = False
        self.processing_info: dict[str, Any] | None = None  # FINALIZE's processing_info, if set
        self._limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._windows: dict[str, _Window] = {}
        self._nonces: set[str] = set()
        self._ids = itertools.count(1_860_000_000_000_000_001)
        self._lock = threading.Lock()
        media_server = media_server or server
        self._route(server, "POST", "/2/tweets", self._create_tweet)
        self._route(server, "GET", "/2/users/me", self._me)
        self._route(media_server, "POST", "/2/media/upload/initialize", self._initialize)
        self._route(media_server, "POST", "/2/media/upload/:id/append", self._append)
        self._route(media_server, "POST", "/2/media/upload/:id/finalize", self._finalize)
        self._route(media_server, "POST", "/2/media/metadata", self._metadata)

    # -- controls -------------------------------------------------------------------------------------

    def revoke(self) -> None:
        """The account revoked the app: every request answers 401 from now on."""
        self.revoked = True

    def window_reset(self, endpoint: str) -> int:
        """Epoch second at which ``endpoint``'s current rate-limit window ends."""
        with self._lock:
            return self._windows[endpoint].reset

    # -- plumbing -------------------------------------------------------------------------------------

    def _route(
        self, server: PlatformServer, method: str, endpoint: str, handler: Callable[[Request, str], Reply]
    ) -> None:
        pattern = re.escape(endpoint).replace(":id", r"(?P<id>\d+)")
        compiled = re.compile(pattern)
        key = f"{method} {endpoint}"

        def serve(request: Request) -> Reply:
            refusal = self._authenticate(request)
            if refusal is not None:
                with self._lock:
                    self.auth_refusals.append(refusal)
                return Reply(401, UNAUTHORIZED, self._headers(key))
            if not self._take(key):
                return Reply(429, TOO_MANY, self._headers(key))
            match = compiled.fullmatch(request.path)
            reply = handler(request, match.group("id") if match and "id" in match.groupdict() else "")
            return Reply(reply.status, reply.body, {**self._headers(key), **dict(reply.headers)})

        server.route(method, pattern, serve)

    def _take(self, key: str) -> bool:
        now = int(time.time())
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.reset <= now:
                limit = self._limits.get(key, 500)
                window = self._windows[key] = _Window(limit, limit, now + WINDOW_SECONDS)
            if window.remaining <= 0:
                return False
            window.remaining -= 1
            return True

    def _headers(self, key: str) -> dict[str, str]:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                limit = self._limits.get(key, 500)
                window = _Window(limit, limit, int(time.time()) + WINDOW_SECONDS)
            return {
                "x-rate-limit-limit": str(window.limit),
                "x-rate-limit-remaining": str(window.remaining),
                "x-rate-limit-reset": str(window.reset),
                "api-version": "2.143",
            }

    def _authenticate(self, request: Request) -> str | None:
        """None when the request is signed for this account, else why not."""
        if self.revoked:
            return "revoked"
        header = request.header("authorization") or ""
        try:
            params = dict(utils.parse_authorization_header(header))
        except ValueError:
            return f"no OAuth 1.0a Authorization header: {header[:40]!r}"
        if utils.unescape(params.get("oauth_consumer_key", "")) != self.consumer_key:
            return f"unknown consumer key {params.get('oauth_consumer_key')!r}"
        if utils.unescape(params.get("oauth_token", "")) != self.access_token:
            return f"unknown access token {params.get('oauth_token')!r}"
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return f"signature method {params.get('oauth_signature_method')!r}"
        if not self._signature_matches(request, header, utils.unescape(params.get("oauth_signature", ""))):
            return "signature does not match"
        nonce = params.get("oauth_nonce", "")
        with self._lock:
            if not nonce or nonce in self._nonces:
                return f"nonce {nonce!r} used before"
            self._nonces.add(nonce)
        return None

    def _signature_matches(self, request: Request, header: str, sent: str) -> bool:
        query = urlencode([(k, v) for k, values in request.query.items() for v in values])
        form = (request.header("content-type") or "").startswith("application/x-www-form-urlencoded")
        collected = signature.collect_parameters(
            uri_query=query, body=request.body.decode() if form else None, headers={"Authorization": header}
        )
        uri = signature.base_string_uri(f"http://{request.header('host')}{request.path}")
        base = signature.signature_base_string(request.method, uri, signature.normalize_parameters(collected))
        secrets = SimpleNamespace(
            client_secret=self.consumer_secret, resource_owner_secret=self.access_token_secret
        )
        return bool(signature.sign_hmac_sha1_with_client(base, secrets) == sent)

    def _new_id(self) -> str:
        with self._lock:
            return str(next(self._ids))

    # -- tweets and the user --------------------------------------------------------------------------

    def _create_tweet(self, request: Request, _: str) -> Reply:
        body = request.json() or {}
        text = body.get("text", "")
        media_ids = [str(m) for m in (body.get("media") or {}).get("media_ids", [])]
        with self._lock:
            unknown = [m for m in media_ids if m not in self.media or not self.media[m].finalized]
            if unknown:
                return Reply(
                    400, invalid_request("Your media IDs are invalid.", {"media.media_ids": unknown})
                )
            if not text and not media_ids:
                return Reply(400, invalid_request("text or media is required", {"text": [""]}))
            if any(tweet.text == text for tweet in self.tweets):
                return Reply(403, DUPLICATE)
            tweet_id = str(next(self._ids))
            alt_texts = [self.media[m].alt_text for m in media_ids]
            self.tweets.append(Tweet(tweet_id, text, media_ids, alt_texts))
        return Reply(201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}})

    def _me(self, request: Request, _: str) -> Reply:
        return Reply(200, {"data": {"id": USER_ID, "name": "Cluster IMK", "username": USERNAME}})

    # -- media ----------------------------------------------------------------------------------------

    def _initialize(self, request: Request, _: str) -> Reply:
        body = request.json() or {}
        media_type, total = body.get("media_type"), body.get("total_bytes")
        category = body.get("media_category", "tweet_image")
        if media_type not in IMAGE_TYPES or not isinstance(total, int) or total <= 0:
            return Reply(
                400, invalid_request(f"unsupported media_type {media_type!r} or total_bytes {total!r}")
            )
        if total > MAX_IMAGE_BYTES:
            return Reply(400, invalid_request("File size exceeds 5242880 bytes."))
        media_id = self._new_id()
        with self._lock:
            self.media[media_id] = Media(media_id, media_type, total, category)
        return Reply(
            200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "expires_after_secs": 86400}}
        )

    def _append(self, request: Request, media_id: str) -> Reply:
        fields = _multipart(request)
        media = self.media.get(media_id)
        if media is None or media.finalized:
            return Reply(400, invalid_request(f"unknown or finished upload {media_id}"))
        index = int(fields.get("segment_index", b"-1") or -1)
        if not 0 <= index <= 999 or "media" not in fields:
            return Reply(400, invalid_request("segment_index 0-999 and media are required"))
        with self._lock:
            media.segments[index] = fields["media"]
        return Reply(200, {"data": {"expires_at": int(time.time()) + 86400}})

    def _finalize(self, request: Request, media_id: str) -> Reply:
        media = self.media.get(media_id)
        if media is None:
            return Reply(400, invalid_request(f"unknown upload {media_id}"))
        data = media.data
        if len(data) != media.total_bytes:
            return Reply(400, invalid_request(f"expected {media.total_bytes} bytes, got {len(data)}"))
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception:
            return Reply(400, invalid_request("InvalidMedia: the file is not an image X can read"))
        media.finalized = True
        answer: dict[str, Any] = {"id": media_id, "media_key": f"3_{media_id}", "size": len(data)}
        answer["expires_after_secs"] = 86400
        if self.processing_info is not None:
            answer["processing_info"] = self.processing_info
        return Reply(200, {"data": answer})

    def _metadata(self, request: Request, _: str) -> Reply:
        body = request.json() or {}
        media_id = str(body.get("id", ""))
        text = ((body.get("metadata") or {}).get("alt_text") or {}).get("text")
        with self._lock:
            media = self.media.get(media_id)
            if media is None or not isinstance(text, str) or len(text) > 1000:
                return Reply(
                    400, invalid_request("unknown media id or alt_text over 1000", {"id": [media_id]})
                )
            media.alt_text = text
        return Reply(200, {"data": {"id": media_id, "associated_metadata": {"alt_text": {"text": text}}}})


def _multipart(request: Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data body by name."""
    content_type = request.header("content-type") or ""
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
    )
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
    return fields
