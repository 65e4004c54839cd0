"""Publishers: deliver rendered messages on one channel each (email over SMTP, social platforms).

Each publisher is a plugin behind :class:`~imk_outreach.publishers.base.Publisher`, found by name through
:func:`~imk_outreach.publishers.base.get_publisher_factory` (entry-point group ``imk_outreach.publishers``).
"""

from __future__ import annotations

from imk_outreach.publishers.base import (
    Outcome,
    PostResult,
    Publisher,
    PublisherFactory,
    PublishError,
    SendResult,
    SocialPublisher,
    get_publisher_factory,
    known_types,
    register,
)

__all__ = [
    "Outcome",
    "PostResult",
    "PublishError",
    "Publisher",
    "PublisherFactory",
    "SendResult",
    "SocialPublisher",
    "get_publisher_factory",
    "known_types",
    "register",
]
