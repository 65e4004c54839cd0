"""The Publisher protocol, what one send returns, and the registry of publishers.

Built-ins register exactly like third parties: by name in the entry-point group ``imk_outreach.publishers``
(``name = "module:attr"``; the built-in table below is the same mapping, so a source checkout that was never
installed still finds them). A factory builds a publisher from that publisher's own options object
(``SmtpSender(SmtpOptions(...))``); the service layer builds the options from the settings.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib import import_module
from importlib.metadata import entry_points
from typing import Protocol, cast

from imk_outreach.errors import ImkError
from imk_outreach.models import Post

__all__ = [
    "ENTRY_POINT_GROUP",
    "Outcome",
    "PostResult",
    "PublishError",
    "Publisher",
    "SocialPublisher",
    "PublisherFactory",
    "SendResult",
    "get_publisher_factory",
    "known_types",
    "register",
]

ENTRY_POINT_GROUP = "imk_outreach.publishers"

_BUILTIN = {
    "smtp": "imk_outreach.publishers.smtp:SmtpSender",
    "x": "imk_outreach.publishers.x:XPublisher",
    "mastodon": "imk_outreach.publishers.mastodon:MastodonPublisher",
    "bluesky": "imk_outreach.publishers.bluesky:BlueskyPublisher",
    "linkedin": "imk_outreach.publishers.linkedin:LinkedInPublisher",
    "file": "imk_outreach.publishers.file:FilePublisher",
}


class Outcome(StrEnum):
    """What became of one message; the outbox row's next state follows from it."""

    SENT = "sent"  # accepted by the server / platform
    RETRY = "retry"  # transient: try again later (back-off is the service's business)
    FAILED = "failed"  # permanent: retrying cannot help; the reason is in ``SendResult.reply``
    # social posts only: the request went out and no answer came (timeout); the post may exist, so it is
    # not retried blindly but shown to a person (``outbox resolve``)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send.

    ``code`` is the protocol's status code (SMTP reply code) where there was one, None when there was no
    answer (connection refused, lost, timed out). ``reply`` is the server's answer or, without one, what
    happened, fit to be stored on the outbox row. ``bounced`` is True only for a permanent failure that
    says the mailbox does not exist (SMTP enhanced status 5.1.x): the service marks the subscriber
    bounced.
    """

    outcome: Outcome
    code: int | None
    reply: str
    bounced: bool = False


@dataclass(frozen=True)
class PostResult:
    """The outcome of publishing one social post.

    ``reply`` is the platform's own message (or, without an answer, what happened), fit to show staff.
    ``remote_id``/``url``: the platform's id of the new post and its web address, where known.
    ``retry_after``: seconds the platform asked to wait (``Retry-After``, rate-limit reset headers); the
    outbox schedules the next attempt, the client library never sleeps. ``pause``: the credentials were
    refused (revoked, wrong, stale API version): the service pauses the whole channel until
    ``channels test`` passes again.
    """

    outcome: Outcome
    reply: str
    remote_id: str | None = None
    url: str | None = None
    retry_after: float | None = None
    pause: bool = False


class SocialPublisher(Protocol):
    """Publishes posts on one social channel (one account). Used from one thread at a time."""

    def publish(self, post: Post, key: str) -> PostResult:
        """Publish ``post``; never raises for a problem of the post or the platform.

        :param key: stable per outbox row (the same on every attempt): the idempotency key where the
            platform has one (Mastodon ``Idempotency-Key``), else for the publisher's own bookkeeping.
        """
        ...

    def verify(self) -> str:
        """Check the credentials against the platform: who they authenticate as (one line, e.g.
        ``@cluster_imk (id 1234)``).

        :raises PublishError: the platform refused them or cannot be reached; the message says what is
            wrong in the platform's words.
        """
        ...

    def close(self) -> None:
        """Release connections; the publisher is not used afterwards."""
        ...


class PublishError(ImkError):
    """A publisher cannot send at all (bad credentials, broken configuration, server refusing service).

    Unlike a :class:`SendResult` it concerns every message, not one recipient: the service stops the run
    and reports. ``retryable`` says whether trying again later can help (server overloaded: yes; wrong
    password, invalid DKIM key: no, a human has to fix something first).
    """

    def __init__(self, channel: str, message: str, *, retryable: bool) -> None:
        self.channel = channel
        self.message = message
        self.retryable = retryable
        hint = "a later retry may help" if retryable else "retrying will not help"
        super().__init__(f"{channel}: {message} ({hint})")


class Publisher(Protocol):
    """Sends ready-made messages on one channel. Implementations are thread-safe: several delivery
    threads call :meth:`send` at once."""

    def send(self, envelope_from: str, recipient: str, data: bytes) -> SendResult:
        """Send one message to one recipient.

        :param envelope_from: the bounce address (SMTP ``MAIL FROM``); channels without one ignore it.
        :param recipient: the recipient's address or handle.
        :param data: the complete message, exactly as it is to go out.
        :returns: SENT, RETRY or FAILED for this message; never raises for a per-message problem.
        :raises PublishError: nothing can be sent at all (authentication failed, unusable configuration).
        """
        ...

    def close(self) -> None:
        """Release every connection; the publisher is not used afterwards."""
        ...


PublisherFactory = Callable[..., Publisher | SocialPublisher]

_registered: dict[str, PublisherFactory] = {}
_lock = threading.Lock()


def register(type_name: str, factory: PublisherFactory) -> None:
    """Register ``factory`` under ``type_name`` at run time (wins over an entry point of that name).

    Installed plugins need not call this: their entry point in ``imk_outreach.publishers`` suffices.
    """
    with _lock:
        _registered[type_name] = factory


@functools.cache
def _entry_points() -> dict[str, str]:
    """type name -> "module:attr"; scanning installed distributions is slow, so it happens once."""
    targets = dict(_BUILTIN)
    targets.update({ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return targets


def known_types() -> list[str]:
    """Every publisher type: built-ins, entry points and run-time registrations."""
    with _lock:
        return sorted(set(_entry_points()) | set(_registered))


def get_publisher_factory(type_name: str) -> PublisherFactory:
    """The factory registered as ``type_name`` (imported on first use, then cached).

    :raises KeyError: no publisher of that name; the message lists the known ones.
    """
    with _lock:
        factory = _registered.get(type_name)
    if factory is not None:
        return factory
    target = _entry_points().get(type_name)
    if target is None:
        raise KeyError(f"no publisher {type_name!r}; known: {', '.join(known_types())}")
    module_name, _, attr = target.partition(":")
    loaded = cast(PublisherFactory, getattr(import_module(module_name), attr))
    with _lock:
        return _registered.setdefault(type_name, loaded)
