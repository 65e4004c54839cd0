"""Posts on X (Twitter) through tweepy's v2 :class:`tweepy.Client`, OAuth 1.0a user context.

One :class:`XPublisher` per channel (one account). :meth:`XPublisher.publish` uploads the post's image
(with its alt text), then creates the tweet; the outcome follows the rules every social publisher shares:

* ``201`` with ``{"data": {"id": ...}}``: SENT, ``remote_id`` the tweet id, ``url`` its web address.
* ``403`` "You are not allowed to create a Tweet with duplicate content.": SENT as well (the post is on
  X already, put there by an earlier attempt whose answer was lost); ``reply`` says so.
* ``401``, or ``403`` for any other reason (revoked token, wrong keys, an app without write permission):
  FAILED with ``pause=True`` and X's own message. Other ``4xx``: FAILED.
* ``429`` and ``5xx``: RETRY; ``retry_after`` from the rate-limit reset headers or ``Retry-After``.
  tweepy's own waiting is off (``wait_on_rate_limit=False``): the outbox owns the timing.
* No answer: RETRY when the request never went out (connection refused, connect timeout, DNS);
  UNKNOWN when it did (read timeout, connection dropped before the answer). X has no idempotency key,
  so a blind retry could post twice; ``key`` is only logged.

The image: X's v2 chunked upload (``/2/media/upload/initialize``, ``/{id}/append``, ``/{id}/finalize``),
then the alt text (``/2/media/metadata``), then the media id goes with the tweet. A transient failure of
any of these steps (429, 5xx, no answer: nothing is on X yet) makes the whole post RETRY; a credential
refusal pauses the channel like one of the tweet; any other refusal (a 4xx for the image, the file
missing from the media store) posts the text without the image and says so in ``reply``.

Two choices, read off tweepy 4.17's source:

* Where requests go. ``BaseClient.request`` joins a hard-coded ``https://api.twitter.com`` to the route
  and calls ``self.session.request(...)``. The client gets a :class:`_RoutedSession` in place of its
  ``requests.Session``: it swaps that prefix for ``XOptions.api_base`` and adds ``XOptions.timeout`` to
  every call (the Client has no timeout of its own). The swap happens before requests prepares the
  request, so requests-oauthlib signs the address actually called. (A transport adapter would rewrite
  the URL after signing; a Client subclass would copy tweepy's whole ``request`` method.)
* Media upload. tweepy has none for v2: ``Client`` lacks it, and ``API.media_upload`` /
  ``create_media_metadata`` call v1.1 on upload.twitter.com, which X deprecated in 2025 in favour of
  the v2 endpoints (tweepy issue #2217, still open). The upload here calls the v2 endpoints through the
  same session and tweepy's own OAuth 1.0a signer, and raises tweepy's exceptions for error statuses,
  so one set of rules judges every answer. ``XOptions.upload_base`` is where they live (the API host).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import tweepy
from tweepy.auth import OAuth1UserHandler
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, SSLError

from imk_outreach.models import Post, PostImage
from imk_outreach.publishers.base import Outcome, PostResult, PublishError

__all__ = ["XOptions", "XPublisher"]

log = logging.getLogger(__name__)

TWEEPY_HOST = "https://api.twitter.com"  # what tweepy's BaseClient.request puts before every route
CHUNK_BYTES = 1024 * 1024  # one APPEND segment (X takes up to 5 MB; images are at most 5 MB)
ALT_TEXT_LIMIT = 1000  # characters X keeps of an alt text
_AUTH_STATUSES = (401, 403)
# (remaining, reset) header pairs, the tightest first: the 24-hour caps outlast the 15-minute window
_LIMIT_HEADERS = (
    ("x-user-limit-24hour-remaining", "x-user-limit-24hour-reset"),
    ("x-app-limit-24hour-remaining", "x-app-limit-24hour-reset"),
    ("x-rate-limit-remaining", "x-rate-limit-reset"),
)


@dataclass(frozen=True)
class XOptions:
    """One X account; the service layer builds it from the channel's config (secrets from ``${ENV}``).

    The four keys are the app's consumer key/secret and the account's access token/secret (OAuth 1.0a
    user context, "Read and write" app permission). ``timeout`` (seconds) bounds the connect and each
    read of every request. ``api_base``/``upload_base``: where the API and the v2 media endpoints are
    (tests point both at a local fake).
    """

    channel: str
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str
    timeout: float = 20.0
    api_base: str = "https://api.twitter.com"
    upload_base: str = "https://api.twitter.com"


class _RoutedSession:
    """Stands in for tweepy's ``requests.Session``: every call goes to ``api_base`` with the timeout."""

    def __init__(self, api_base: str, timeout: float) -> None:
        self._base = api_base.rstrip("/")
        self._timeout = timeout
        self.session = requests.Session()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if url.startswith(TWEEPY_HOST):
            url = self._base + url[len(TWEEPY_HOST) :]
        kwargs.setdefault("timeout", self._timeout)
        return self.session.request(method, url, **kwargs)

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class _Attachment:
    """What became of the image: its media id, or why it is left out, or a result that stops the post."""

    media_id: str | None = None
    note: str = ""
    stop: PostResult | None = None


class XPublisher:
    """Publishes posts on one X account (see the module docstring for the outcome of each answer)."""

    def __init__(self, options: XOptions) -> None:
        self.options = options
        self._session = _RoutedSession(options.api_base, options.timeout)
        self._client = tweepy.Client(
            consumer_key=options.consumer_key,
            consumer_secret=options.consumer_secret,
            access_token=options.access_token,
            access_token_secret=options.access_token_secret,
            return_type=dict,
            wait_on_rate_limit=False,
        )
        self._client.session = self._session

    # -- SocialPublisher ------------------------------------------------------------------------------

    def publish(self, post: Post, key: str) -> PostResult:
        """Upload the image (if any), then create the tweet; never raises for X's answers.

        :param key: the outbox row's key; X has no idempotency key, so it only appears in the log.
        """
        attachment = self._attach(post.image, key) if post.image is not None else _Attachment()
        if attachment.stop is not None:
            return attachment.stop
        media_ids = [attachment.media_id] if attachment.media_id else None
        try:
            answer = self._client.create_tweet(text=post.text, media_ids=media_ids, user_auth=True)
        except tweepy.HTTPException as exc:
            return self._refused(exc, key)
        except requests.RequestException as exc:
            return self._no_answer(exc, key, sent_may_exist=True)
        tweet_id = (answer.get("data") or {}).get("id") if isinstance(answer, dict) else None
        if not tweet_id:  # a 2xx without a tweet: the post may exist
            return PostResult(Outcome.UNKNOWN, f"X accepted the tweet but named no id: {str(answer)[:300]}")
        reply = f"created tweet {tweet_id}" + (f"; {attachment.note}" if attachment.note else "")
        return PostResult(
            Outcome.SENT, reply, remote_id=tweet_id, url=f"https://x.com/i/web/status/{tweet_id}"
        )

    def verify(self) -> str:
        """``@handle (id 123)`` of the account the access token belongs to.

        :raises PublishError: X refused the credentials (not retryable) or did not answer (retryable).
        """
        try:
            answer = self._client.get_me(user_auth=True)
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            if status in _AUTH_STATUSES:
                message = f"X refused the credentials ({_platform_message(exc)}); {_credentials_hint(status)}"
                raise PublishError(self.options.channel, message, retryable=False) from exc
            retryable = status == 429 or status >= 500
            message = f"X answered {_platform_message(exc)}"
            raise PublishError(self.options.channel, message, retryable=retryable) from exc
        except requests.RequestException as exc:
            message = f"X did not answer at {self.options.api_base}: {_describe(exc)}"
            raise PublishError(self.options.channel, message, retryable=True) from exc
        user = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(user, dict) or "username" not in user:
            message = f"X answered /2/users/me without a user: {str(answer)[:300]}"
            raise PublishError(self.options.channel, message, retryable=True)
        return f"@{user['username']} (id {user.get('id')})"

    def close(self) -> None:
        self._session.close()

    # -- the image ------------------------------------------------------------------------------------

    def _attach(self, image: PostImage, key: str) -> _Attachment:
        try:
            data = Path(image.path).read_bytes()
        except OSError as exc:
            log.warning("x %s %s: image %s not readable, posting without it: %s", self.options.channel, key,
                        image.path, exc)  # fmt: skip
            return _Attachment(note=f"image left out: cannot read {image.path} ({exc.strerror or exc})")
        try:
            media_id = self._upload(data, image)
            self._media_post("/2/media/metadata", json=_alt_text_body(media_id, image.alt))
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            if status in _AUTH_STATUSES or status == 429 or status >= 500:
                return _Attachment(stop=self._refused(exc, key, step="image upload"))
            log.warning("x %s %s: X refused the image, posting without it: %s", self.options.channel, key,
                        _platform_message(exc))  # fmt: skip
            return _Attachment(note=f"image left out: X refused it ({_platform_message(exc)})")
        except _NotReady as exc:
            return _Attachment(stop=exc.result)
        except _Unusable as exc:
            return _Attachment(note=f"image left out: {exc}")
        except requests.RequestException as exc:
            # nothing is on X before the tweet is created, so even a lost answer is safe to retry
            return _Attachment(stop=self._no_answer(exc, key, sent_may_exist=False, step="image upload"))
        return _Attachment(media_id=media_id)

    def _upload(self, data: bytes, image: PostImage) -> str:
        """Chunked v2 upload; the media id once X has it whole."""
        init = {"media_type": image.mime_type, "total_bytes": len(data), "media_category": "tweet_image"}
        media_id = _media_id(self._media_post("/2/media/upload/initialize", json=init))
        for index, chunk in enumerate(_chunks(data)):
            files = {"media": ("media", chunk, "application/octet-stream")}
            self._media_post(
                f"/2/media/upload/{media_id}/append", data={"segment_index": str(index)}, files=files
            )
        final = self._media_post(f"/2/media/upload/{media_id}/finalize").get("data")
        _check_processing(final if isinstance(final, dict) else {})
        return media_id

    def _media_post(self, route: str, **kwargs: Any) -> dict[str, Any]:
        """POST to a media endpoint, signed like tweepy's own calls; tweepy's exception for an error."""
        auth = OAuth1UserHandler(
            self.options.consumer_key,
            self.options.consumer_secret,
            self.options.access_token,
            self.options.access_token_secret,
        ).apply_auth()
        url = self.options.upload_base.rstrip("/") + route
        headers = {"User-Agent": self._client.user_agent}
        with self._session.request("POST", url, auth=auth, headers=headers, **kwargs) as response:
            _raise_for_status(response)
            return response.json() if response.content else {}

    # -- outcomes -------------------------------------------------------------------------------------

    def _refused(self, exc: tweepy.HTTPException, key: str, step: str = "tweet") -> PostResult:
        """X answered with an error status."""
        status = exc.response.status_code
        message = _platform_message(exc)
        if step == "tweet" and status == 403 and _is_duplicate(exc):
            return PostResult(Outcome.SENT, f"X already has this post ({message})")
        if status in _AUTH_STATUSES:
            log.error(
                "x %s %s: %s refused, pausing the channel: %s", self.options.channel, key, step, message
            )
            reply = f"X refused the {step} ({message}); {_credentials_hint(status)}"
            return PostResult(Outcome.FAILED, reply, pause=True)
        if status == 429 or status >= 500:
            retry_after = _retry_after(exc.response.headers, time.time()) if status == 429 else None
            log.info("x %s %s: %s deferred: %s", self.options.channel, key, step, message)
            return PostResult(Outcome.RETRY, f"X deferred the {step} ({message})", retry_after=retry_after)
        return PostResult(Outcome.FAILED, f"X refused the {step} ({message})")

    def _no_answer(
        self, exc: requests.RequestException, key: str, *, sent_may_exist: bool, step: str = "tweet"
    ) -> PostResult:
        what = _describe(exc)
        if _never_sent(exc) or not sent_may_exist:
            log.info("x %s %s: %s not answered, will retry: %s", self.options.channel, key, step, what)
            return PostResult(Outcome.RETRY, f"X not reached for the {step}: {what}")
        log.warning("x %s %s: tweet sent, no answer: %s", self.options.channel, key, what)
        reply = (
            f"the tweet went out but X did not answer ({what}); it may or may not be on X: check the account"
        )
        return PostResult(Outcome.UNKNOWN, reply)


class _NotReady(Exception):
    """FINALIZE says X is still processing the media: try the whole post again later."""

    def __init__(self, result: PostResult) -> None:
        super().__init__(result.reply)
        self.result = result


class _Unusable(Exception):
    """FINALIZE says X could not process the media: post without it."""


def _media_id(answer: Mapping[str, Any]) -> str:
    media_id = (answer.get("data") or {}).get("id") if isinstance(answer, dict) else None
    if not media_id:
        raise _Unusable(f"X named no media id for it: {str(answer)[:200]}")
    return str(media_id)


def _check_processing(final: Mapping[str, Any]) -> None:
    info = final.get("processing_info")
    if not info or info.get("state") == "succeeded":
        return
    if info.get("state") == "failed":
        error = info.get("error") or {}
        raise _Unusable(f"X could not process it ({error.get('message') or error.get('name') or 'failed'})")
    wait = max(1.0, float(info.get("check_after_secs") or 5))
    raise _NotReady(PostResult(Outcome.RETRY, "X is still processing the image", retry_after=wait))


def _raise_for_status(response: requests.Response) -> None:
    """The exception tweepy's ``BaseClient.request`` raises for this status (none for 2xx)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    errors: dict[int, type[tweepy.HTTPException]] = {
        400: tweepy.BadRequest,
        401: tweepy.Unauthorized,
        403: tweepy.Forbidden,
        404: tweepy.NotFound,
        429: tweepy.TooManyRequests,
    }
    error = errors.get(status, tweepy.TwitterServerError if status >= 500 else tweepy.HTTPException)
    raise error(response)


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


def _alt_text_body(media_id: str, alt: str) -> dict[str, Any]:
    text = alt if len(alt) <= ALT_TEXT_LIMIT else alt[: ALT_TEXT_LIMIT - 1].rstrip() + "…"
    return {"id": media_id, "metadata": {"alt_text": {"text": text}}}


def _platform_message(exc: tweepy.HTTPException) -> str:
    """``403 Forbidden: You are not permitted to perform this action.``: status and X's own words."""
    response = exc.response
    head = f"{response.status_code} {response.reason}".strip()
    messages = [str(m) for m in exc.api_messages if str(m) and str(m) != response.reason]
    return f"{head}: {'; '.join(messages)}" if messages else head


def _is_duplicate(exc: tweepy.HTTPException) -> bool:
    return any("duplicate" in str(message).lower() for message in exc.api_messages)


def _credentials_hint(status: int) -> str:
    if status == 401:
        return "the keys or the access token are wrong or were revoked: renew them, then run `channels test`"
    return (
        "the app may lack 'Read and write' permission (regenerate the access token after changing it) "
        "or X bars this account or app: fix that, then run `channels test`"
    )


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until X lifts the limit that was hit: the reset of the tightest exhausted limit, else
    ``x-rate-limit-reset``, else ``Retry-After``; at least 1."""
    resets = [
        _number(headers.get(reset)) for remaining, reset in _LIMIT_HEADERS if headers.get(remaining) == "0"
    ]
    reset = next((r for r in resets if r is not None), None) or _number(headers.get("x-rate-limit-reset"))
    if reset is not None:
        return max(1.0, reset - now)
    after = _number(headers.get("retry-after"))
    return max(1.0, after) if after is not None else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached X: no connection was made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError | SSLError)


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the timeout"
    if _never_sent(exc):
        return "could not connect (refused or unreachable)"
    return f"connection lost ({type(exc).__name__})"
