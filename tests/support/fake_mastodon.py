"""A Mastodon instance for tests: the REST routes Mastodon.py uses to post, upload media and check a token.

It answers like Mastodon 4.3 (checked against mastodon/mastodon's controllers and services):

* ``POST /api/v1/statuses`` (form or JSON body, as Mastodon.py sends it): Bearer token required; the text
  counted in grapheme clusters with every URL as 23 characters (``StatusLengthValidator``), 422
  ``Validation failed: Text character limit of 500 exceeded`` beyond; ``media_ids[]`` must name the
  account's unattached, processed uploads. ``Idempotency-Key``: a second post with a key this account
  already used returns the first status (same id) and creates nothing, as ``PostStatusService`` does with
  its ``idempotency:status:<account>:<key>`` Redis entry (kept 3,600 s there; for ever here).
* ``POST /api/v2/media`` (and the older ``/api/v1/media``): multipart ``file`` plus ``description``; an
  image is processed at once (200, ``url`` set) unless :meth:`FakeMastodon.process_media_async` asks for
  the 202 + ``url: null`` answer of a server still processing; ``GET /api/v1/media/:id`` then answers 206
  until it is done, then 200.
* ``GET /api/v1/accounts/verify_credentials``: the account (with ``source``).
* ``GET /api/v1/instance`` and ``/api/v2/instance``: what Mastodon.py reads to pick the media endpoint.
* A refused token answers 401 with Doorkeeper's message (``The access token is invalid``; after
  :meth:`FakeMastodon.revoke`, ``The access token was revoked``) and its ``WWW-Authenticate`` header.

Faults that are not Mastodon-specific (429, 5xx, a stall before anything happened) come from
:class:`PlatformServer` itself; :meth:`FakeMastodon.lag_next_status` is the other kind of timeout: the
status is created, the answer comes too late.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

import regex
from PIL import Image

from tests.support.platformserver import PlatformServer, Reply, Request

__all__ = ["TOKEN", "FakeMastodon", "Upload", "fake_mastodon", "status_length"]

TOKEN = "mastodon-test-token-0123456789"
URL_LENGTH = 23  # Mastodon's characters_reserved_per_url
_URL = re.compile(r"https?://[^\s<>\"]+")
_GRAPHEME = regex.compile(r"\X")
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/heif", "image/avif"}
_MAX_DESCRIPTION = 1_500


def status_length(text: str) -> int:
    """Mastodon's count: grapheme clusters, every URL as 23 characters."""
    return len(_GRAPHEME.findall(_URL.sub("x" * URL_LENGTH, text)))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": message}, headers or {})


def _content_html(text: str) -> str:
    """Mastodon's plain-text formatter, roughly: paragraphs, <br /> and linked URLs."""

    def linked(line: str) -> str:
        parts = _URL.split(line)
        urls = _URL.findall(line)
        out = [html.escape(parts[0])]
        for url, rest in zip(urls, parts[1:], strict=True):
            href = html.escape(url)
            out.append(f'<a href="{href}" target="_blank" rel="nofollow noopener" translate="no">{href}</a>')
            out.append(html.escape(rest))
        return "".join(out)

    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join("<p>" + "<br />".join(linked(line) for line in p.split("\n")) + "</p>" for p in paragraphs)


@dataclass
class Upload:
    """One uploaded media file as the fake stored it."""

    id: str
    data: bytes
    file_name: str
    mime_type: str
    description: str | None
    width: int
    height: int
    processing: bool = False  # uploaded, not yet processed: url null, not attachable
    polls_left: int = 0  # GET /api/v1/media/:id answers 206 this many more times while processing
    status_id: str | None = None


class FakeMastodon:
    """One account (``@cluster_imk``) on an instance served by ``server``; see the module docstring."""

    def __init__(
        self,
        server: PlatformServer,
        *,
        token: str = TOKEN,
        username: str = "cluster_imk",
        version: str = "4.3.2",
        max_characters: int = 500,
    ) -> None:
        self.server = server
        self.token = token
        self.username = username
        self.version = version
        self.max_characters = max_characters
        self.account_id = "109876543210987654"
        self.statuses: list[dict[str, Any]] = []
        self.uploads: dict[str, Upload] = {}
        self._idempotency: dict[str, str] = {}
        self._token_error = "The access token is invalid"
        self._token_valid = True
        self._lag: list[float] = []
        self._async_media: list[int] = []
        self._released = threading.Event()
        self._ids = itertools.count(113_412_345_678_900_001)
        self._lock = threading.Lock()
        server.route("POST", r"/api/v1/statuses", self._post_status)
        server.route("POST", r"/api/v[12]/media", self._post_media)
        server.route("GET", r"/api/v1/media/(\d+)", self._get_media)
        server.route("GET", r"/api/v1/accounts/verify_credentials", self._verify_credentials)
        server.route("GET", r"/api/v1/instance/?", self._instance_v1)
        server.route("GET", r"/api/v2/instance/?", self._instance_v2)

    # -- test controls ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.server.url

    def revoke(self, message: str = "The access token was revoked") -> None:
        """The token stops working, as after the user revoked the app in the web interface."""
        self._token_valid = False
        self._token_error = message

    def restore(self) -> None:
        """The token works again (staff issued a new one and updated the variable)."""
        self._token_valid = True
        self._token_error = "The access token is invalid"

    def lag_next_status(self, seconds: float) -> None:
        """The next new status is created (and its Idempotency-Key recorded), but the answer is held
        ``seconds`` before it goes out: the client times out although the post exists."""
        self._lag.append(seconds)

    def process_media_async(self, polls: int = 1) -> None:
        """The next v2 upload answers 202 with ``url: null``; ``GET /api/v1/media/:id`` then answers 206
        (still processing) ``polls`` times, then 200 with the ``url``."""
        self._async_media.append(polls)

    def release(self) -> None:
        """Let every held answer go (end of test)."""
        self._released.set()

    def status(self, status_id: str) -> dict[str, Any]:
        return next(s for s in self.statuses if s["id"] == status_id)

    # -- authentication ---------------------------------------------------------------------------------

    def _refused(self, request: Request) -> Reply | None:
        auth = request.header("Authorization") or ""
        if auth == f"Bearer {self.token}" and self._token_valid:
            return None
        message = self._token_error if auth == f"Bearer {self.token}" else "The access token is invalid"
        challenge = f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{message}"'
        return _error(401, message, {"WWW-Authenticate": challenge})

    # -- statuses ---------------------------------------------------------------------------------------

    def _post_status(self, request: Request) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        params = _params(request)
        key = request.header("Idempotency-Key")
        with self._lock:
            if key and key in self._idempotency:
                return Reply(200, self.status(self._idempotency[key]))
            reply = self._create_status(params)
            if reply.status != 200:
                return reply
            if key:
                self._idempotency[key] = reply.body["id"]
            lag = self._lag.pop(0) if self._lag else 0.0
        if lag:
            self._released.wait(lag)
        return reply

    def _create_status(self, params: dict[str, Any]) -> Reply:
        text = str(params.get("status") or "")
        media_ids = [str(m) for m in _as_list(params.get("media_ids"))]
        if not text.strip() and not media_ids:
            return _error(422, "Validation failed: Text can't be blank")
        if status_length(text) > self.max_characters:
            return _error(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
        if len(media_ids) > 4:
            return _error(422, "You can't attach more than 4 files.")
        media = [self.uploads.get(m) for m in media_ids]
        missing = [
            m for m, upload in zip(media_ids, media, strict=True) if upload is None or upload.status_id
        ]
        if missing:
            return _error(422, f"Media {', '.join(missing)} not found or already attached to another post")
        uploads = [u for u in media if u is not None]
        if any(u.processing for u in uploads):
            return _error(
                422, "Cannot attach files that have not finished processing. Try again in a moment!"
            )
        status_id = str(next(self._ids))
        for upload in uploads:
            upload.status_id = status_id
        status = self._status_json(status_id, text, params, uploads)
        self.statuses.append(status)
        return Reply(200, status)

    def _status_json(
        self, status_id: str, text: str, params: dict[str, Any], uploads: list[Upload]
    ) -> dict[str, Any]:
        base = self.server.url
        return {
            "id": status_id,
            "created_at": _now(),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": params.get("sensitive") in ("1", "true", True),
            "spoiler_text": params.get("spoiler_text") or "",
            "visibility": params.get("visibility") or "public",
            "language": params.get("language"),
            "uri": f"{base}/users/{self.username}/statuses/{status_id}",
            "url": f"{base}/@{self.username}/{status_id}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "pinned": False,
            "content": _content_html(text),
            "text": text,  # only in the fake: the source text, for assertions
            "filtered": [],
            "reblog": None,
            "application": {"name": "imk-outreach", "website": None},
            "account": self._account_json(),
            "media_attachments": [self._media_json(u) for u in uploads],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }

    # -- media ------------------------------------------------------------------------------------------

    def _post_media(self, request: Request) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        fields, files = _multipart(request)
        if "file" not in files:
            return _error(422, "Validation failed: File can't be blank")
        file_name, mime_type, data = files["file"]
        description = fields.get("description")
        if description is not None and len(description) > _MAX_DESCRIPTION:
            return _error(
                422, f"Validation failed: Description is too long (maximum is {_MAX_DESCRIPTION} characters)"
            )
        if mime_type not in _IMAGE_TYPES:
            return _error(422, "Validation failed: File content type is invalid")
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except OSError:
            return _error(422, "Validation failed: File could not be processed")
        with self._lock:
            # only v2 processes in the background; v1 always answered when done
            polls = (
                self._async_media.pop(0) if self._async_media and request.path == "/api/v2/media" else None
            )
            upload = Upload(str(next(self._ids)), data, file_name, mime_type, description, width, height)
            if polls is not None:
                upload.processing, upload.polls_left = True, polls
            self.uploads[upload.id] = upload
        return Reply(202 if upload.processing else 200, self._media_json(upload))

    def _get_media(self, request: Request) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        upload = self.uploads.get(request.path.rsplit("/", 1)[1])
        if upload is None or upload.status_id:
            return _error(404, "Record not found")
        with self._lock:
            if upload.processing and upload.polls_left:
                upload.polls_left -= 1
                return Reply(206, self._media_json(upload))
            upload.processing = False
        return Reply(200, self._media_json(upload))

    def _media_json(self, upload: Upload) -> dict[str, Any]:
        base = f"{self.server.url}/system/media_attachments/files/{upload.id}"
        ready = not upload.processing
        return {
            "id": upload.id,
            "type": "gifv" if upload.mime_type == "image/gif" else "image",
            "url": f"{base}/original/{upload.file_name}" if ready else None,
            "preview_url": f"{base}/small/{upload.file_name}",
            "remote_url": None,
            "preview_remote_url": None,
            "text_url": None,
            "meta": {
                "original": {
                    "width": upload.width,
                    "height": upload.height,
                    "size": f"{upload.width}x{upload.height}",
                }
            },
            "description": upload.description,
            "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}",
        }

    # -- account and instance ---------------------------------------------------------------------------

    def _verify_credentials(self, request: Request) -> Reply:
        refused = self._refused(request)
        if refused is not None:
            return refused
        account = self._account_json()
        account["source"] = {
            "privacy": "public",
            "sensitive": False,
            "language": "de",
            "note": "",
            "fields": [],
            "follow_requests_count": 0,
        }
        return Reply(200, account)

    def _account_json(self) -> dict[str, Any]:
        base = self.server.url
        return {
            "id": self.account_id,
            "username": self.username,
            "acct": self.username,
            "display_name": "IMK Cluster",
            "locked": False,
            "bot": True,
            "discoverable": True,
            "group": False,
            "created_at": "2022-11-07T00:00:00.000Z",
            "note": "<p>News from the cluster</p>",
            "url": f"{base}/@{self.username}",
            "uri": f"{base}/users/{self.username}",
            "avatar": f"{base}/avatars/original/missing.png",
            "avatar_static": f"{base}/avatars/original/missing.png",
            "header": f"{base}/headers/original/missing.png",
            "header_static": f"{base}/headers/original/missing.png",
            "followers_count": 1200,
            "following_count": 40,
            "statuses_count": len(self.statuses),
            "last_status_at": None,
            "emojis": [],
            "fields": [],
        }

    def _configuration(self) -> dict[str, Any]:
        return {
            "statuses": {
                "max_characters": self.max_characters,
                "max_media_attachments": 4,
                "characters_reserved_per_url": URL_LENGTH,
            },
            "media_attachments": {
                "supported_mime_types": sorted(_IMAGE_TYPES),
                "image_size_limit": 16_777_216,
                "image_matrix_limit": 33_177_600,
            },
        }

    def _instance_v1(self, request: Request) -> Reply:
        host = self.server.url.split("://", 1)[1]
        return Reply(
            200,
            {
                "uri": host,
                "title": "Social Example",
                "short_description": "A test instance",
                "description": "",
                "email": "admin@social.example",
                "version": self.version,
                "urls": {"streaming_api": f"ws://{host}"},
                "stats": {"user_count": 1, "status_count": len(self.statuses), "domain_count": 1},
                "thumbnail": None,
                "languages": ["de", "en"],
                "registrations": False,
                "approval_required": False,
                "invites_enabled": False,
                "configuration": self._configuration(),
                "contact_account": None,
                "rules": [],
            },
        )

    def _instance_v2(self, request: Request) -> Reply:
        host = self.server.url.split("://", 1)[1]
        configuration = {"urls": {"streaming": f"ws://{host}"}, **self._configuration()}
        return Reply(
            200,
            {
                "domain": host,
                "title": "Social Example",
                "version": self.version,
                "source_url": "https://github.com/mastodon/mastodon",
                "description": "A test instance",
                "usage": {"users": {"active_month": 1}},
                "thumbnail": {"url": f"{self.server.url}/thumbnail.png"},
                "languages": ["de", "en"],
                "configuration": configuration,
                "registrations": {"enabled": False, "approval_required": False, "message": None},
                "contact": {"email": "admin@social.example", "account": None},
                "rules": [],
                "api_versions": {"mastodon": 2},
            },
        )


# -- request bodies ------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _params(request: Request) -> dict[str, Any]:
    """A form (``media_ids[]=1&media_ids[]=2``) or JSON body as one dict; list fields without ``[]``."""
    content_type = request.header("Content-Type") or ""
    if content_type.startswith("application/json"):
        body = json.loads(request.body or b"{}")
        return dict(body) if isinstance(body, dict) else {}
    params: dict[str, Any] = {}
    for name, values in parse_qs(request.body.decode(), keep_blank_values=True).items():
        if name.endswith("[]"):
            params[name[:-2]] = values
        else:
            params[name] = values[-1]
    return params


def _multipart(request: Request) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """(fields, files) of a multipart/form-data body; a file is (file name, content type, bytes)."""
    content_type = request.header("Content-Type") or ""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body
    )
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        file_name = part.get_filename()
        if file_name is not None:
            files[str(name)] = (file_name, part.get_content_type(), data)
        else:
            fields[str(name)] = data.decode()
    return fields, files


@contextmanager
def fake_mastodon(**kwargs: Any) -> Iterator[FakeMastodon]:
    """A started :class:`PlatformServer` with a :class:`FakeMastodon` on it; held answers are released
    and the server stopped at the end."""
    with PlatformServer() as server:
        fake = FakeMastodon(server, **kwargs)
        try:
            yield fake
        finally:
            fake.release()
