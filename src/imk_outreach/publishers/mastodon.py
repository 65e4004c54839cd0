"""Posts to one Mastodon account through Mastodon.py (``status_post``, ``media_post``).

The client is built so that it never waits on its own: ``ratelimit_method="throw"`` (a 429 raises
instead of sleeping until the reset), ``version_check_mode="none"`` (construction makes no request),
``request_timeout`` from the options, and ``media_post`` without ``synchronous`` (Mastodon.py would poll
every 5 s with no upper bound). The only pause is a short, bounded poll while a newer server processes
an uploaded image in the background (answer 202, ``url: null``): at most ``timeout`` seconds in all.

Every ``status_post`` carries the outbox row's key as its ``Idempotency-Key``. Mastodon keeps that key
per account (``PostStatusService``: Redis, 3,600 s after the status was created) and answers a repeated
post with the status it already created, so an attempt whose answer never came is simply repeated:

* success: SENT with the status id and its web address.
* 429 (Mastodon sends ``X-RateLimit-Reset`` as an ISO 8601 time, some servers ``Retry-After``): RETRY
  with ``retry_after`` measured against the server's ``Date``, so a wrong local clock does not matter.
* 5xx, connection refused, a read timeout after the request went out: RETRY. The Idempotency-Key makes
  the repeat safe: a repeat while the first request still runs gets 503 (Mastodon holds a lock per key),
  one after it returns the first status. Only a repeat more than an hour after the lost answer could post
  a second copy.
* 401/403 (token revoked or invalid, missing scope, account disabled): FAILED, ``pause`` set, with the
  server's message. Other 4xx (422 ``Validation failed: ...``): FAILED.

An image uploaded for a post that then had to be retried is reused by the next attempt (same key, same
process), so retries do not spend the instance's media quota (30 uploads per 30 minutes).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonRatelimitError,
)
from urllib3.exceptions import NewConnectionError

from imk_outreach.models import Post
from imk_outreach.publishers.base import Outcome, PostResult, PublishError

__all__ = ["VISIBILITIES", "MastodonOptions", "MastodonPublisher"]

log = logging.getLogger(__name__)

VISIBILITIES = ("public", "unlisted", "private", "direct")
_UPLOAD_REUSE = 6 * 3600.0  # seconds an unattached upload is reused (Mastodon deletes them after a day)
_EPOCH_MIN = 1_000_000_000  # a rate-limit header number above this is a Unix time, below it seconds


@dataclass(frozen=True)
class MastodonOptions:
    """One Mastodon account; the service layer builds it from the channel's settings.

    ``base_url`` is the instance (``https://social.example``; a bare host name means https).
    ``access_token`` is a user token with the ``write:statuses`` and ``write:media`` scopes (``read:accounts``
    for :meth:`MastodonPublisher.verify`). ``timeout`` bounds each request, in seconds. ``visibility`` is
    one of :data:`VISIBILITIES`.
    """

    channel: str
    base_url: str
    access_token: str
    timeout: float = 20.0
    visibility: str = "public"
    user_agent: str = "imk-outreach"


@dataclass
class _Upload:
    media_id: str
    ready: bool
    at: float  # time.monotonic() of the upload


class MastodonPublisher:
    """Publishes posts on one Mastodon account (:class:`~imk_outreach.publishers.base.SocialPublisher`).

    :raises PublishError: the options cannot work (no instance URL or token, unknown visibility).
    """

    def __init__(self, options: MastodonOptions) -> None:
        _check(options)
        self._options = options
        self._client = Mastodon(
            api_base_url=options.base_url,
            access_token=options.access_token,
            request_timeout=options.timeout,
            ratelimit_method="throw",
            version_check_mode="none",
            user_agent=options.user_agent,
        )
        self._base = str(self._client.api_base_url)
        self._host = urlsplit(self._base).netloc
        self._last: Any = None  # the last HTTP response: Mastodon.py's errors carry no headers
        self._client.session.hooks["response"].append(self._remember)
        self._uploads: dict[str, _Upload] = {}

    # -- SocialPublisher ----------------------------------------------------------------------------------

    def publish(self, post: Post, key: str) -> PostResult:
        """Post ``post`` (with its image and alt text) under the Idempotency-Key ``key``."""
        self._last = None
        try:
            media_ids = self._media_ids(post, key)
            if isinstance(media_ids, PostResult):
                return media_ids
            status = self._client.status_post(
                post.text,
                media_ids=media_ids,
                visibility=self._options.visibility,
                language=None if post.language == "both" else post.language,
                idempotency_key=key,
            )
        except MastodonError as exc:
            result = self._result(exc)
        except OSError as exc:  # the image's local copy
            result = PostResult(
                Outcome.FAILED, f"cannot read the image {exc.filename}: {exc.strerror or exc}"
            )
        else:
            result = self._posted(status)
        if result.outcome is not Outcome.RETRY:
            self._uploads.pop(key, None)
        log.info("mastodon %s: post %s: %s %s", self._options.channel, key, result.outcome, result.reply)
        return result

    def _posted(self, status: Any) -> PostResult:
        status_id = status.get("id") if isinstance(status, dict) else None
        if status_id is None:  # not a status: ask again, the Idempotency-Key returns the real one
            return PostResult(Outcome.RETRY, f"{self._host} answered without a status id: {status!r:.200}")
        return PostResult(Outcome.SENT, f"status {status_id} posted", str(status_id), status.get("url"))

    def verify(self) -> str:
        """``@acct on <instance> (id ...)`` of the token's account.

        :raises PublishError: the instance refused the token or could not be reached.
        """
        self._last = None
        try:
            account = self._client.account_verify_credentials()
        except MastodonError as exc:
            result = self._result(exc)
            retryable = result.outcome is Outcome.RETRY
            raise PublishError(self._options.channel, result.reply, retryable=retryable) from exc
        return f"@{account['acct']} on {self._host} (id {account['id']})"

    def close(self) -> None:
        self._client.session.close()

    # -- media --------------------------------------------------------------------------------------------

    def _media_ids(self, post: Post, key: str) -> list[str] | None | PostResult:
        """The uploaded image's id, None without an image, or RETRY while the server still processes it."""
        if post.image is None:
            return None
        now = time.monotonic()
        self._uploads = {k: u for k, u in self._uploads.items() if now - u.at <= _UPLOAD_REUSE}
        upload = self._uploads.get(key)
        if upload is None:
            image = post.image
            media = self._client.media_post(
                Path(image.path).read_bytes(),
                mime_type=image.mime_type,
                description=image.alt or None,
                file_name=Path(image.path).name,
            )
            upload = _Upload(str(media["id"]), media.get("url") is not None, time.monotonic())
            self._uploads[key] = upload
        if not upload.ready:
            upload.ready = self._wait_processed(upload.media_id)
        if not upload.ready:
            reply = f"{self._host} is still processing the image (media {upload.media_id})"
            return PostResult(Outcome.RETRY, reply, retry_after=30.0)
        return [upload.media_id]

    def _wait_processed(self, media_id: str) -> bool:
        """Poll ``GET /api/v1/media/:id`` until it has a ``url``, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + self._options.timeout
        delay = 0.2
        while time.monotonic() + delay <= deadline:
            time.sleep(delay)
            if self._client.media(media_id).get("url") is not None:
                return True
            delay = min(delay * 2, 2.0)
        return False

    # -- outcomes -----------------------------------------------------------------------------------------

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last = response

    def _result(self, exc: MastodonError) -> PostResult:
        if isinstance(exc, MastodonRatelimitError):
            seconds = _retry_after(self._last)
            wait = f"; retry in {seconds:.0f} s" if seconds is not None else ""
            return PostResult(
                Outcome.RETRY, f"HTTP 429: {self._server_message() or exc}{wait}", retry_after=seconds
            )
        if isinstance(exc, MastodonNetworkError):
            return PostResult(Outcome.RETRY, self._network_reply(exc))
        if not isinstance(exc, MastodonAPIError):  # bad argument, unreadable file, ...
            return PostResult(Outcome.FAILED, str(exc))
        code = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        if code is None:  # an answer that is not JSON: the server is not itself
            return PostResult(Outcome.RETRY, f"{self._host} answered something unreadable: {exc}")
        reply = f"HTTP {code}: {_message(exc)}"
        if code >= 500 or code == 429:
            return PostResult(Outcome.RETRY, reply, retry_after=_retry_after(self._last))
        return PostResult(Outcome.FAILED, reply, pause=code in (401, 403))

    def _server_message(self) -> str | None:
        try:
            body = self._last.json() if self._last is not None else None
        except ValueError:
            return None
        return str(body["error"]) if isinstance(body, dict) and body.get("error") else None

    def _network_reply(self, exc: MastodonNetworkError) -> str:
        error = exc.__cause__ or exc.__context__
        if isinstance(error, requests.ConnectTimeout) or _refused(error):
            return f"could not connect to {self._base}: {_reason(error)}"
        if isinstance(error, requests.Timeout):
            return (
                f"no answer from {self._base} within {self._options.timeout:g} s; the post may exist, "
                "a retry is safe (same Idempotency-Key)"
            )
        return f"connection to {self._base} lost: {_reason(error)}; a retry is safe (same Idempotency-Key)"


# -- helpers ---------------------------------------------------------------------------------------------


def _check(options: MastodonOptions) -> None:
    problems = []
    if not options.base_url.strip():
        problems.append("no instance URL (base_url)")
    if not options.access_token.strip():
        problems.append("no access token")
    if options.visibility not in VISIBILITIES:
        problems.append(f"visibility {options.visibility!r} is not one of {', '.join(VISIBILITIES)}")
    if options.timeout <= 0:
        problems.append(f"timeout must be more than 0 seconds, not {options.timeout:g}")
    if problems:
        raise PublishError(options.channel, "; ".join(problems), retryable=False)


def _message(exc: MastodonAPIError) -> str:
    """The server's own ``error`` text (Mastodon.py: args = (text, code, reason, error))."""
    args = exc.args
    if len(args) > 3 and args[3]:
        return str(args[3])
    return str(args[2]) if len(args) > 2 and args[2] else str(exc)


def _refused(error: BaseException | None) -> bool:
    """The connection was never made (refused, no route, name not resolved): nothing was sent."""
    if not isinstance(error, requests.ConnectionError) or not error.args:
        return False
    return isinstance(getattr(error.args[0], "reason", None), NewConnectionError)


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return str(reason or error)


def _retry_after(response: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` or ``X-RateLimit-Reset``, at least 1; None without them."""
    if response is None:
        return None
    headers = response.headers
    now = _http_date(headers.get("Date")) or time.time()
    seconds = _until(headers.get("Retry-After"), now)
    if seconds is None:
        seconds = _until(headers.get("X-RateLimit-Reset"), now)
    return None if seconds is None else float(max(1, math.ceil(seconds)))


def _until(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` to ``value``: a number of seconds (or a Unix time, as GoToSocial sends), an
    ISO 8601 time (Mastodon's ``X-RateLimit-Reset``; UTC when it has no offset) or an HTTP date."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number - now if number > _EPOCH_MIN else number
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        instant = _http_date(value)
        return None if instant is None else instant - now
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() - now


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
