"""LinkedIn: posts through the versioned REST API (``POST /rest/posts``) with httpx.

Every ``/rest`` call carries ``LinkedIn-Version`` (the channel's ``api_version``, YYYYMM; LinkedIn retires
each version after about a year, and then answers every call with 426 ``NONEXISTENT_VERSION``) and
``X-Restli-Protocol-Version: 2.0.0``. The commentary is LinkedIn's "little" text: its reserved characters
``\\ | { } @ [ ] ( ) < > # * _ ~`` are escaped with a backslash (unescaped, LinkedIn silently cuts the
post at the first one) and ``#Tag`` becomes the hashtag template ``{hashtag|\\#|Tag}``, so it stays a
hashtag.

An image is uploaded first (``POST /rest/images?action=initializeUpload``, then ``PUT`` of the bytes to
the returned ``uploadUrl``); its ``urn:li:image:...`` becomes the article's ``thumbnail`` (a post with a
link card) or ``content.media`` with the alt text (a post without one).

How an answer maps to an outcome:

* 201 Created: SENT; the new post's URN is the ``x-restli-id`` header.
* 422 ``DUPLICATE_POST`` ("Content is a duplicate of urn:li:share:..."): the post exists, SENT with
  that URN and LinkedIn's message.
* 429: RETRY after ``Retry-After`` when given. LinkedIn rarely sends it: its quotas are per day and
  reset at midnight UTC, so a "... DAY limit ..." refusal waits until then; any other 429 (LinkedIn's
  infrastructure protection) waits :data:`DEFAULT_RETRY_AFTER` (60 s).
* 5xx, connection refused, any failure before the post request went out (image upload included): RETRY.
* A timeout or lost connection after the post request went out: UNKNOWN (LinkedIn has no idempotency
  key, so a blind retry could post twice).
* 401 (expired or revoked token), 403 (``ACCESS_DENIED``: no ``w_organization_social`` /
  ``w_member_social``, or not an admin of the page) and 426 (stale ``LinkedIn-Version``): FAILED with
  ``pause``; the channel waits until ``channels test`` passes.
* Other 4xx (400, 422 ...): FAILED.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from imk_outreach.models import Post, PostImage
from imk_outreach.publishers.base import Outcome, PostResult, PublishError

__all__ = ["DEFAULT_RETRY_AFTER", "LinkedInOptions", "LinkedInPublisher", "escape_commentary"]

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0  # seconds, for a 429 without Retry-After that is not a daily quota
RESTLI_PROTOCOL = "2.0.0"
FEED_URL = "https://www.linkedin.com/feed/update/"
_AUTHOR = re.compile(r"urn:li:(organization|person):(\S+)")
_RESERVED = re.compile(r"[\\|{}@\[\]()<>#*_~]")
# a hashtag starts a word (not "C#", not "page#part" or "/#top" in a URL) and has a letter in it
_HASHTAG = re.compile(r"(?<![\w#&/])#(\w*[^\W\d_]\w*)")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_DUPLICATE_OF = re.compile(r"duplicate of (urn:li:\w+:\d+)")
_MAX_REPLY = 500

Stage = Literal["prepare", "post"]


@dataclass(frozen=True)
class LinkedInOptions:
    """One LinkedIn channel; the service layer builds it from the channel's config.

    ``author``: ``urn:li:organization:<id>`` (a company page; the token's member must be one of its
    admins and the token needs ``w_organization_social``) or ``urn:li:person:<id>`` (the member
    themselves, ``w_member_social``). ``api_version``: the ``LinkedIn-Version`` header, YYYYMM.
    ``timeout``: seconds for connecting and for each read.
    """

    channel: str
    access_token: str
    author: str
    api_version: str
    base_url: str = "https://api.linkedin.com"
    timeout: float = 20.0


def escape_commentary(text: str) -> str:
    """``text`` as LinkedIn "little" text: reserved characters escaped, ``#Tag`` as a hashtag template
    (not inside a URL: ``https://example.org/a#part`` stays a URL)."""
    parts: list[str] = []
    pos = 0
    for url in _URL.finditer(text):
        parts.append(_with_hashtags(text[pos : url.start()]))
        parts.append(_escape(url.group(0)))
        pos = url.end()
    parts.append(_with_hashtags(text[pos:]))
    return "".join(parts)


def _with_hashtags(text: str) -> str:
    parts: list[str] = []
    pos = 0
    for match in _HASHTAG.finditer(text):
        parts.append(_escape(text[pos : match.start()]))
        parts.append("{hashtag|\\#|" + _escape(match.group(1)) + "}")
        pos = match.end()
    parts.append(_escape(text[pos:]))
    return "".join(parts)


def _escape(text: str) -> str:
    return _RESERVED.sub(lambda m: "\\" + m.group(0), text)


class _Stop(Exception):
    """Ends a publish early with ``result`` (a refusal or a lost connection on the way)."""

    def __init__(self, result: PostResult) -> None:
        super().__init__(result.reply)
        self.result = result


class LinkedInPublisher:
    """Publishes on one LinkedIn page or member feed. One thread at a time (the SocialPublisher rule)."""

    def __init__(self, options: LinkedInOptions) -> None:
        match = _AUTHOR.fullmatch(options.author)
        if match is None:
            raise PublishError(
                options.channel,
                f"author {options.author!r} is not urn:li:organization:<id> or urn:li:person:<id>",
                retryable=False,
            )
        self.options = options
        self._kind, self._author_id = match.group(1), match.group(2)
        self._base = options.base_url.rstrip("/")
        self._api_host = urlsplit(self._base).hostname or ""
        self._client = httpx.Client(timeout=httpx.Timeout(options.timeout), follow_redirects=False)

    # -- publishing -------------------------------------------------------------------------------------

    def publish(self, post: Post, key: str) -> PostResult:
        """Publish ``post`` (``key`` is only logged: LinkedIn has no idempotency key)."""
        try:
            image = self._upload(post.image) if post.image is not None else None
            response = self._send("POST", "/rest/posts", "post", json=self._body(post, image))
        except _Stop as stop:
            log.info("linkedin %s: post %s: %s", self.options.channel, key, stop.result.reply)
            return stop.result
        return self._posted(response)

    def _body(self, post: Post, image: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "author": self.options.author,
            "commentary": escape_commentary(post.text),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if post.card is not None:
            article: dict[str, str] = {
                "source": post.card.url,
                "title": post.card.title,
                "description": post.card.description,
            }
            if image is not None:
                article["thumbnail"] = image
            body["content"] = {"article": article}
        elif image is not None and post.image is not None:
            body["content"] = {"media": {"id": image, "altText": post.image.alt}}
        return body

    def _posted(self, response: httpx.Response) -> PostResult:
        if response.status_code in (200, 201):
            urn = response.headers.get("x-restli-id")
            if not urn:
                return PostResult(Outcome.SENT, f"{_status(response)} (LinkedIn sent no x-restli-id)")
            return PostResult(Outcome.SENT, f"{_status(response)} {urn}", remote_id=urn, url=FEED_URL + urn)
        duplicate = self._duplicate(response)
        return duplicate if duplicate is not None else self._refusal(response)

    def _duplicate(self, response: httpx.Response) -> PostResult | None:
        """LinkedIn refuses a post it already has: 422 ``DUPLICATE_POST``, "Content is a duplicate of
        urn:li:share:..." (e.g. the earlier attempt went through but its answer was lost)."""
        if response.status_code != 422:
            return None
        message = _message(response)
        match = _DUPLICATE_OF.search(message)
        if match is None and "DUPLICATE_POST" not in response.text:
            return None
        urn = match.group(1) if match else None
        return PostResult(Outcome.SENT, message, remote_id=urn, url=FEED_URL + urn if urn else None)

    # -- images -----------------------------------------------------------------------------------------

    def _upload(self, image: PostImage) -> str:
        """Upload ``image``; its ``urn:li:image:...``. Nothing is posted yet, so every failure is RETRY
        (or FAILED), never UNKNOWN."""
        request = {"initializeUploadRequest": {"owner": self.options.author}}
        answer = self._send("POST", "/rest/images?action=initializeUpload", "prepare", json=request)
        if answer.status_code != 200:
            raise _Stop(self._refusal(answer))
        upload_url, urn = _upload_target(answer)
        if upload_url is None or urn is None:
            raise _Stop(
                PostResult(Outcome.RETRY, f"LinkedIn: unexpected image upload answer: {_text(answer)}")
            )
        data = _read_image(image)
        headers = {"Content-Type": image.mime_type}
        if self._is_linkedin(upload_url):  # the token goes to LinkedIn's own hosts only
            headers["Authorization"] = f"Bearer {self.options.access_token}"
        uploaded = self._transport("PUT", upload_url, "prepare", content=data, headers=headers)
        if uploaded.status_code not in (200, 201):
            raise _Stop(self._refusal(uploaded, what="image upload"))
        return urn

    def _is_linkedin(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return host == self._api_host or host == "linkedin.com" or host.endswith(".linkedin.com")

    # -- verify -----------------------------------------------------------------------------------------

    def verify(self) -> str:
        """Who the token posts as, after a check that it may post there with this ``api_version``
        (an image upload is initialised for the author and never used).

        :raises PublishError: the token, the version or the permission is refused, or LinkedIn cannot
            be reached; the message is LinkedIn's own, with what to do.
        """
        if self._kind == "person":
            who = self._member()  # first: a token of another member is the clearer message
            self._checked("POST", "/rest/images?action=initializeUpload", json=self._probe())
            return who
        self._checked("POST", "/rest/images?action=initializeUpload", json=self._probe())
        return self._organisation()

    def _probe(self) -> dict[str, Any]:
        return {"initializeUploadRequest": {"owner": self.options.author}}

    def _organisation(self) -> str:
        """The page's name. Reading it needs an admin permission posting does not: without it the
        probe's answer (the token may post there) suffices."""
        try:
            answer = self._send("GET", f"/rest/organizations/{self._author_id}", "prepare")
        except _Stop as stop:
            raise self._verify_error(stop.result) from None
        if answer.status_code == 403:
            return f"organisation {self.options.author} (its name is not readable with this token)"
        if answer.status_code != 200:
            raise self._verify_error(self._refusal(answer))
        name = _json(answer).get("localizedName") or "(no name)"
        return f"organisation {name} ({self.options.author})"

    def _member(self) -> str:
        info = _json(self._checked("GET", "/v2/userinfo", versioned=False))
        sub, name = str(info.get("sub") or ""), info.get("name") or "(no name)"
        if sub != self._author_id:
            raise PublishError(
                self.options.channel,
                f"the access token belongs to member {name} (urn:li:person:{sub}), not to the channel's "
                f"author {self.options.author}; set author to urn:li:person:{sub} or use that member's token",
                retryable=False,
            )
        return f"member {name} ({self.options.author})"

    def _checked(self, method: str, path: str, *, versioned: bool = True, json: Any = None) -> httpx.Response:
        """A verify call that must answer 200; else PublishError."""
        try:
            answer = self._send(method, path, "prepare", versioned=versioned, json=json)
        except _Stop as stop:
            raise self._verify_error(stop.result) from None
        if answer.status_code != 200:
            raise self._verify_error(self._refusal(answer))
        return answer

    def _verify_error(self, result: PostResult) -> PublishError:
        return PublishError(self.options.channel, result.reply, retryable=result.outcome is Outcome.RETRY)

    def close(self) -> None:
        self._client.close()

    # -- HTTP -------------------------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, stage: Stage, *, versioned: bool = True, json: Any = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.options.access_token}"}
        if versioned:
            headers["LinkedIn-Version"] = self.options.api_version
            headers["X-Restli-Protocol-Version"] = RESTLI_PROTOCOL
        return self._transport(method, self._base + path, stage, headers=headers, json=json)

    def _transport(self, method: str, url: str, stage: Stage, **kwargs: Any) -> httpx.Response:
        """One request; a transport failure raises :class:`_Stop` with RETRY, or UNKNOWN when the post
        request itself went out and no answer came."""
        try:
            return self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError) as exc:
            reason = f"LinkedIn could not be reached ({_reason(exc)}); nothing was sent"
            raise _Stop(PostResult(Outcome.RETRY, reason)) from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            reason = (
                f"no request to LinkedIn could be made ({_reason(exc)}); check the channel's base_url and "
                "access_token, then run `channels test`"
            )
            raise _Stop(PostResult(Outcome.FAILED, reason, pause=True)) from None
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            reason = f"the request to LinkedIn broke off while being sent ({_reason(exc)})"
            raise _Stop(PostResult(Outcome.RETRY, reason)) from None
        except httpx.TransportError as exc:  # read timeout, reset, closed without an answer
            if stage == "prepare":
                reason = f"no answer from LinkedIn ({_reason(exc)}); the post was not sent yet"
                raise _Stop(PostResult(Outcome.RETRY, reason)) from None
            reason = (
                f"no answer from LinkedIn after the post was sent ({_reason(exc)}): it may or may not "
                "exist; check the page, then settle it with `outbox resolve`"
            )
            raise _Stop(PostResult(Outcome.UNKNOWN, reason)) from None

    def _refusal(self, response: httpx.Response, what: str = "") -> PostResult:
        """What a non-success answer means (see the module docstring)."""
        status = response.status_code
        text = f"LinkedIn{' ' + what if what else ''}: {_status(response)}: {_message(response)}"
        if status == 429:
            return PostResult(Outcome.RETRY, text, retry_after=_rate_limit_wait(response))
        if status >= 500:
            return PostResult(Outcome.RETRY, text, retry_after=_retry_after(response))
        if status == 401:
            hint = "create a new access token for this channel, then run `channels test`"
            return PostResult(Outcome.FAILED, f"{text} ({hint})", pause=True)
        if status == 403:
            hint = (
                f"the token may not post as {self.options.author}: it needs w_organization_social (a page; "
                "its member an admin of it) or w_member_social (a member)"
            )
            return PostResult(Outcome.FAILED, f"{text} ({hint})", pause=True)
        if status == 426:
            hint = (
                f"LinkedIn-Version {self.options.api_version} is no longer active: set api_version of "
                f"channel {self.options.channel} in config.yaml to a current version (YYYYMM, see LinkedIn's "
                "versioning page), then run `channels test`"
            )
            return PostResult(Outcome.FAILED, f"{text} ({hint})", pause=True)
        return PostResult(Outcome.FAILED, text)


# -- answers ----------------------------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(response: httpx.Response) -> str:
    return response.text[:_MAX_REPLY] or "(empty)"


def _message(response: httpx.Response) -> str:
    """LinkedIn's error: ``CODE: message`` from its JSON body, else the body's text."""
    body = _json(response)
    message = str(body.get("message") or "")
    code = str(body.get("code") or "")
    if not message:
        return code or _text(response)
    return (f"{code}: {message}" if code else message)[:_MAX_REPLY]


def _status(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _upload_target(response: httpx.Response) -> tuple[str | None, str | None]:
    value = _json(response).get("value")
    if not isinstance(value, dict):
        return None, None
    url, urn = value.get("uploadUrl"), value.get("image")
    return (url if isinstance(url, str) else None), (urn if isinstance(urn, str) else None)


def _read_image(image: PostImage) -> bytes:
    try:
        return Path(image.path).read_bytes()
    except OSError as exc:
        reason = f"the post's image {image.path} cannot be read: {exc.strerror or exc}"
        raise _Stop(PostResult(Outcome.FAILED, reason)) from None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), None without one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _rate_limit_wait(response: httpx.Response) -> float:
    """Seconds to wait after a 429: ``Retry-After``; else, for a daily quota ("... DAY limit ..."), until
    LinkedIn resets it at midnight UTC; else :data:`DEFAULT_RETRY_AFTER`."""
    given = _retry_after(response)
    if given is not None:
        return given
    if "day limit" in _message(response).lower():
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return (midnight - now).total_seconds()
    return DEFAULT_RETRY_AFTER
