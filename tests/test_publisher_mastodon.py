"""MastodonPublisher: the real Mastodon.py client against a local server that answers like Mastodon."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from imk_outreach.models import Post, PostImage
from imk_outreach.publishers.base import Outcome, PublishError, get_publisher_factory
from imk_outreach.publishers.mastodon import MastodonOptions, MastodonPublisher
from tests.support.fake_mastodon import TOKEN, FakeMastodon, fake_mastodon, status_length
from tests.support.platformserver import Reply

CHANNEL = "mastodon-main"
STATUSES = r"/api/v1/statuses"
TEXT = "Neue Förderrunde für Games-Startups im Cluster https://cluster.example/news/foerderrunde-2025 #Games"


@pytest.fixture
def fake() -> Iterator[FakeMastodon]:
    with fake_mastodon() as server:
        yield server


def make_publisher(
    base_url: str, token: str = TOKEN, timeout: float = 1.0, **extra: str
) -> MastodonPublisher:
    return MastodonPublisher(MastodonOptions(CHANNEL, base_url, token, timeout=timeout, **extra))


@pytest.fixture
def publisher(fake: FakeMastodon) -> Iterator[MastodonPublisher]:
    pub = make_publisher(fake.base_url)
    yield pub
    pub.close()


def make_post(text: str = TEXT, language: str = "de", image: PostImage | None = None) -> Post:
    return Post(CHANNEL, "mastodon", language, "item-1", text, status_length(text), 500, image=image)


def make_image(tmp_path: Path, alt: str = "Förderrunde für Games-Startups") -> PostImage:
    path = tmp_path / "teaser.png"
    Image.new("RGB", (64, 32), (200, 40, 40)).save(path)
    return PostImage(str(path), "image/png", alt)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- success ---------------------------------------------------------------------------------------------


def test_text_post_is_published_with_key_language_and_visibility(fake: FakeMastodon) -> None:
    pub = make_publisher(fake.base_url, visibility="unlisted")
    result = pub.publish(make_post(), "outbox-17")
    pub.close()

    assert result.outcome is Outcome.SENT
    (status,) = fake.statuses
    assert (result.remote_id, result.url) == (status["id"], status["url"])
    assert (status["text"], status["language"], status["visibility"]) == (TEXT, "de", "unlisted")
    (request,) = fake.server.requests_to("POST", STATUSES)
    assert request.header("Idempotency-Key") == "outbox-17"
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("User-Agent") == "imk-outreach"


def test_bilingual_post_leaves_the_language_to_the_account(
    fake: FakeMastodon, publisher: MastodonPublisher
) -> None:
    result = publisher.publish(make_post("Neu / New: https://cluster.example/x", language="both"), "k-both")

    assert result.outcome is Outcome.SENT
    assert fake.statuses[0]["language"] is None
    assert b"language" not in fake.server.requests_to("POST", STATUSES)[0].body


def test_urls_count_as_23_characters(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    url = "https://cluster.example/news/" + "a" * 200
    text = "x" * 470 + " " + url
    assert len(text) > 500 >= status_length(text)

    assert publisher.publish(make_post(text), "k-url").outcome is Outcome.SENT


def test_image_is_uploaded_with_its_alt_text_and_attached(
    fake: FakeMastodon, publisher: MastodonPublisher, tmp_path: Path
) -> None:
    image = make_image(tmp_path)
    result = publisher.publish(make_post(image=image), "k-img")

    assert result.outcome is Outcome.SENT
    (upload,) = fake.uploads.values()
    assert upload.description == image.alt
    assert upload.data == Path(image.path).read_bytes()
    assert (upload.mime_type, upload.width, upload.height) == ("image/png", 64, 32)
    attachment = fake.status(str(result.remote_id))["media_attachments"][0]
    assert (attachment["id"], attachment["description"]) == (upload.id, image.alt)
    assert fake.server.requests_to("POST", r"/api/v2/media")  # the current endpoint, chosen by version


def test_image_processed_in_the_background_is_waited_for(
    fake: FakeMastodon, publisher: MastodonPublisher, tmp_path: Path
) -> None:
    fake.process_media_async(polls=1)

    result = publisher.publish(make_post(image=make_image(tmp_path)), "k-async")

    assert result.outcome is Outcome.SENT
    assert len(fake.server.requests_to("GET", r"/api/v1/media/\d+")) == 2  # 206, then 200
    assert fake.statuses[0]["media_attachments"][0]["url"] is not None


def test_image_still_processing_retries_and_the_retry_reuses_the_upload(
    fake: FakeMastodon, tmp_path: Path
) -> None:
    fake.process_media_async(polls=1_000)
    pub = make_publisher(fake.base_url, timeout=0.5)
    post = make_post(image=make_image(tmp_path))

    first = pub.publish(post, "k-slow")
    (upload,) = fake.uploads.values()
    upload.polls_left = 0  # the server has finished meanwhile
    second = pub.publish(post, "k-slow")
    pub.close()

    assert (first.outcome, first.retry_after) == (Outcome.RETRY, 30.0)
    assert "still processing" in first.reply
    assert second.outcome is Outcome.SENT
    assert len(fake.server.requests_to("POST", r"/api/v[12]/media")) == 1
    (status,) = fake.statuses
    assert status["media_attachments"][0]["id"] == upload.id


def test_unreadable_image_file_fails(
    fake: FakeMastodon, publisher: MastodonPublisher, tmp_path: Path
) -> None:
    image = PostImage(str(tmp_path / "gone.png"), "image/png", "alt")

    result = publisher.publish(make_post(image=image), "k-gone")

    assert result.outcome is Outcome.FAILED
    assert "gone.png" in result.reply
    assert not fake.statuses


# -- idempotency -----------------------------------------------------------------------------------------


def test_answer_lost_after_posting_then_retry_gives_one_status(fake: FakeMastodon) -> None:
    fake.lag_next_status(5.0)  # created at once, answered far beyond the client's timeout
    pub = make_publisher(fake.base_url, timeout=0.4)

    started = time.monotonic()
    lost = pub.publish(make_post(), "outbox-42")
    elapsed = time.monotonic() - started
    retried = pub.publish(make_post(), "outbox-42")
    pub.close()

    assert lost.outcome is Outcome.RETRY and "no answer" in lost.reply
    assert elapsed < 1.5
    assert retried.outcome is Outcome.SENT
    (status,) = fake.statuses
    assert retried.remote_id == status["id"]
    keys = [r.header("Idempotency-Key") for r in fake.server.requests_to("POST", STATUSES)]
    assert keys == ["outbox-42", "outbox-42"]


def test_stall_before_anything_happened_then_retry_gives_one_status(fake: FakeMastodon) -> None:
    fake.server.stall("POST", STATUSES, seconds=5.0)
    pub = make_publisher(fake.base_url, timeout=0.4)

    lost = pub.publish(make_post(), "outbox-43")
    retried = pub.publish(make_post(), "outbox-43")
    pub.close()

    assert (lost.outcome, retried.outcome) == (Outcome.RETRY, Outcome.SENT)
    assert [s["id"] for s in fake.statuses] == [retried.remote_id]


def test_another_key_makes_another_status(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    first = publisher.publish(make_post(), "k-1")
    again = publisher.publish(make_post(), "k-1")
    other = publisher.publish(make_post(), "k-2")

    assert first.remote_id == again.remote_id != other.remote_id
    assert len(fake.statuses) == 2


# -- refusals --------------------------------------------------------------------------------------------


def test_rate_limit_reset_becomes_retry_after_without_sleeping(
    fake: FakeMastodon, publisher: MastodonPublisher
) -> None:
    period = 120
    reset = (datetime.now(UTC) + timedelta(seconds=period)).isoformat(timespec="microseconds")
    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    fake.server.fail("POST", STATUSES, Reply(429, {"error": "Too many requests"}, headers))

    started = time.monotonic()
    result = publisher.publish(make_post(), "k-429")

    assert time.monotonic() - started < 1.0  # Mastodon.py's "wait" mode would sleep until the reset
    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and period - 1 <= result.retry_after <= period + 1
    assert "Too many requests" in result.reply
    assert not fake.statuses


def test_retry_after_header_wins(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.server.fail("POST", STATUSES, Reply(429, {"error": "Too many requests"}, {"Retry-After": "42"}))

    result = publisher.publish(make_post(), "k-429b")

    assert (result.outcome, result.retry_after) == (Outcome.RETRY, 42.0)


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors_retry(fake: FakeMastodon, publisher: MastodonPublisher, code: int) -> None:
    message = "There was a temporary problem serving your request, please try again"
    fake.server.fail("POST", STATUSES, Reply(code, {"error": message}))

    result = publisher.publish(make_post(), "k-5xx")

    assert result.outcome is Outcome.RETRY and not result.pause
    assert result.reply == f"HTTP {code}: {message}"


def test_retry_after_on_a_server_error_is_kept(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.server.fail("POST", STATUSES, Reply(503, "<html>Service Unavailable</html>", {"Retry-After": "90"}))

    result = publisher.publish(make_post(), "k-503")

    assert (result.outcome, result.retry_after) == (Outcome.RETRY, 90.0)
    assert result.reply == "HTTP 503: Service Unavailable"


def test_revoked_token_fails_and_pauses_the_channel(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.revoke()

    result = publisher.publish(make_post(), "k-401")

    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert result.reply == "HTTP 401: The access token was revoked"
    assert not fake.statuses


def test_wrong_token_fails_and_pauses(fake: FakeMastodon) -> None:
    pub = make_publisher(fake.base_url, token="not-the-token")

    result = pub.publish(make_post(), "k-401b")
    pub.close()

    assert (result.outcome, result.pause, result.reply) == (
        Outcome.FAILED,
        True,
        "HTTP 401: The access token is invalid",
    )


def test_missing_scope_fails_and_pauses(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.server.fail("POST", STATUSES, Reply(403, {"error": "This action is outside the authorized scopes"}))

    result = publisher.publish(make_post(), "k-403")

    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "outside the authorized scopes" in result.reply


def test_too_long_text_fails_without_pause(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    result = publisher.publish(make_post("ä" * 501), "k-422")

    assert (result.outcome, result.pause) == (Outcome.FAILED, False)
    assert result.reply == "HTTP 422: Validation failed: Text character limit of 500 exceeded"


def test_connection_refused_retries() -> None:
    pub = make_publisher(f"http://127.0.0.1:{free_port()}")

    result = pub.publish(make_post(), "k-refused")
    pub.close()

    assert result.outcome is Outcome.RETRY
    assert result.reply.startswith("could not connect to http://127.0.0.1:")


# -- verify, options, registry ---------------------------------------------------------------------------


def test_verify_names_the_account(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    host = fake.base_url.split("://", 1)[1]
    assert publisher.verify() == f"@{fake.username} on {host} (id {fake.account_id})"


def test_verify_with_a_revoked_token_says_so(fake: FakeMastodon, publisher: MastodonPublisher) -> None:
    fake.revoke()

    with pytest.raises(PublishError) as caught:
        publisher.verify()

    assert not caught.value.retryable
    assert str(caught.value) == f"{CHANNEL}: HTTP 401: The access token was revoked (retrying will not help)"


def test_verify_without_a_server_is_retryable() -> None:
    pub = make_publisher(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(PublishError) as caught:
        pub.verify()
    pub.close()

    assert caught.value.retryable
    assert "could not connect" in caught.value.message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"visibility": "everyone"}, "visibility 'everyone' is not one of public, unlisted, private, direct"),
        ({"access_token": " "}, "no access token"),
        ({"base_url": ""}, "no instance URL (base_url)"),
    ],
)
def test_unusable_options_are_refused(extra: dict[str, str], expected: str) -> None:
    options = MastodonOptions(CHANNEL, "https://social.example", TOKEN)

    with pytest.raises(PublishError, match=re.escape(expected)) as caught:
        MastodonPublisher(dataclasses.replace(options, **extra))
    assert not caught.value.retryable


def test_registry_finds_the_publisher() -> None:
    factory: object = get_publisher_factory("mastodon")
    assert factory is MastodonPublisher
