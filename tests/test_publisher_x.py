"""XPublisher (tweepy's real Client and OAuth 1.0a signer) against a local X API over TCP.

The fake (tests/support/fake_x.py) checks every request's OAuth signature, keeps the tweets and the
uploaded media with their alt texts, counts rate-limit windows and refuses duplicates like X.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imk_outreach.models import Post, PostImage
from imk_outreach.publishers import Outcome, PublishError, get_publisher_factory
from imk_outreach.publishers.x import XOptions, XPublisher
from tests.support import fake_x
from tests.support.fake_x import FakeX
from tests.support.platformserver import PlatformServer, Reply

TIMEOUT = 0.5  # seconds: every fault test stays well under 2 s
TWEETS = r"/2/tweets"


@dataclass
class XWorld:
    server: PlatformServer
    fake: FakeX
    options: XOptions

    def publisher(self, **changes: Any) -> XPublisher:
        return XPublisher(replace(self.options, **changes))


def options_for(server: PlatformServer, upload: PlatformServer | None = None) -> XOptions:
    return XOptions(
        channel="x-de",
        consumer_key=fake_x.CONSUMER_KEY,
        consumer_secret=fake_x.CONSUMER_SECRET,
        access_token=fake_x.ACCESS_TOKEN,
        access_token_secret=fake_x.ACCESS_TOKEN_SECRET,
        timeout=TIMEOUT,
        api_base=server.url,
        upload_base=(upload or server).url,
    )


@pytest.fixture
def world() -> Iterator[XWorld]:
    with PlatformServer() as server:
        yield XWorld(server, FakeX(server), options_for(server))


@pytest.fixture
def publisher(world: XWorld) -> Iterator[XPublisher]:
    pub = world.publisher()
    yield pub
    pub.close()


def make_post(text: str = "Neu im Cluster: BFI fördert 12 Serienprojekte https://imk.example.org/i/1",
              image: PostImage | None = None) -> Post:  # fmt: skip
    return Post(channel="x-de", platform="x", language="de", key="item-1", text=text, length=len(text),
                limit=280, link="https://imk.example.org/i/1", image=image)  # fmt: skip


def png(tmp_path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    path = tmp_path / "item.png"
    Image.new("RGB", size, (200, 30, 60)).save(path, format="PNG")
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_found_through_the_registry() -> None:
    factory: object = get_publisher_factory("x")
    assert factory is XPublisher


# -- success --------------------------------------------------------------------------------------------


def test_text_post_is_created_and_signed(world: XWorld, publisher: XPublisher) -> None:
    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.SENT, result.reply
    [tweet] = world.fake.tweets
    assert tweet.text == make_post().text and tweet.media_ids == []
    assert result.remote_id == tweet.id
    assert result.url == f"https://x.com/i/web/status/{tweet.id}"
    assert world.fake.auth_refusals == []
    [request] = world.server.requests_to("POST", TWEETS)
    assert f'oauth_consumer_key="{fake_x.CONSUMER_KEY}"' in (request.header("authorization") or "")


def test_image_is_uploaded_to_upload_base_with_alt_text(tmp_path: Path) -> None:
    path = png(tmp_path)
    alt = "BFI-Logo über einer Filmklappe"
    with PlatformServer() as api, PlatformServer() as upload:
        fake = FakeX(api, upload)
        pub = XPublisher(options_for(api, upload))
        try:
            result = pub.publish(make_post(image=PostImage(str(path), "image/png", alt)), "row-1")
        finally:
            pub.close()
        assert api.requests_to("POST", r"/2/media/.*") == []
        assert [r.path.rsplit("/", 1)[-1] for r in upload.requests] == [
            "initialize",
            "append",
            "finalize",
            "metadata",
        ]

    assert result.outcome is Outcome.SENT, result.reply
    [tweet] = fake.tweets
    [media_id] = tweet.media_ids
    assert tweet.alt_texts == [alt]
    assert fake.media[media_id].data == path.read_bytes()
    assert fake.media[media_id].media_type == "image/png"
    assert fake.auth_refusals == []


def test_long_alt_text_is_cut_to_x_limit(world: XWorld, publisher: XPublisher, tmp_path: Path) -> None:
    alt = "Sehr lange Bildbeschreibung " * 60
    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", alt)), "row-1")

    assert result.outcome is Outcome.SENT, result.reply
    [stored] = world.fake.tweets[0].alt_texts
    assert stored is not None and len(stored) <= 1000 and stored.endswith("…")
    assert alt.startswith(stored[:-1])


# -- the image fails ------------------------------------------------------------------------------------


def test_image_refused_posts_without_it_and_says_so(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    world.server.fail(
        "POST", r"/2/media/upload/initialize", Reply(400, fake_x.invalid_request("InvalidMedia"))
    )

    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.SENT
    assert world.fake.tweets[0].media_ids == []
    assert "image left out" in result.reply and "InvalidMedia" in result.reply


def test_unreadable_image_posts_without_it(world: XWorld, publisher: XPublisher, tmp_path: Path) -> None:
    image = PostImage(str(tmp_path / "gone.png"), "image/png", "Titel")

    result = publisher.publish(make_post(image=image), "row-1")

    assert result.outcome is Outcome.SENT
    assert "image left out" in result.reply and "gone.png" in result.reply
    assert world.server.requests_to("POST", r"/2/media/.*") == []


def test_not_an_image_is_refused_by_x_and_left_out(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"<html>not a picture</html>")

    result = publisher.publish(make_post(image=PostImage(str(path), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.SENT
    assert world.fake.tweets[0].media_ids == []
    assert "InvalidMedia" in result.reply


def test_image_upload_5xx_retries_the_whole_post(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    world.server.fail("POST", r"/2/media/upload/\d+/append", Reply(503, fake_x.UNAVAILABLE))

    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.RETRY
    assert "503" in result.reply and "image upload" in result.reply
    assert world.fake.tweets == []


def test_image_upload_timeout_retries_not_unknown(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    world.server.stall("POST", r"/2/media/upload/initialize", seconds=3.0)

    started = time.monotonic()
    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert time.monotonic() - started < 2.0
    assert result.outcome is Outcome.RETRY  # no tweet can exist yet
    assert world.fake.tweets == []


def test_image_upload_rate_limit_retries_after_reset(tmp_path: Path) -> None:
    with PlatformServer() as server:
        fake = FakeX(server, limits={"POST /2/media/upload/initialize": 0})
        pub = XPublisher(options_for(server))
        try:
            result = pub.publish(
                make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1"
            )
        finally:
            pub.close()
        reset = fake.window_reset("POST /2/media/upload/initialize")

    assert result.outcome is Outcome.RETRY
    assert (
        result.retry_after is not None
        and reset - time.time() - 2 <= result.retry_after <= reset - time.time() + 2
    )
    assert fake.tweets == []


def test_image_still_processing_retries_after_check_after(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    world.fake.processing_info = {"state": "pending", "check_after_secs": 7}

    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.RETRY and result.retry_after == 7
    assert world.fake.tweets == []


def test_upload_answer_without_media_id_posts_without_image(
    world: XWorld, publisher: XPublisher, tmp_path: Path
) -> None:
    world.server.fail(
        "POST", r"/2/media/upload/initialize", Reply(200, {"data": {"expires_after_secs": 86400}})
    )

    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.SENT and world.fake.tweets[0].media_ids == []
    assert "named no media id" in result.reply


# -- the tweet fails ------------------------------------------------------------------------------------


def test_rate_limit_retries_at_window_reset() -> None:
    with PlatformServer() as server:
        fake = FakeX(server, limits={"POST /2/tweets": 1})
        pub = XPublisher(options_for(server))
        try:
            first = pub.publish(make_post("Erster Beitrag"), "row-1")
            second = pub.publish(make_post("Zweiter Beitrag"), "row-2")
        finally:
            pub.close()
        remaining = fake.window_reset("POST /2/tweets") - time.time()

    assert first.outcome is Outcome.SENT
    assert second.outcome is Outcome.RETRY and "429" in second.reply
    assert second.retry_after is not None and remaining - 2 <= second.retry_after <= remaining + 2
    assert [t.text for t in fake.tweets] == ["Erster Beitrag"]


def test_rate_limit_takes_the_exhausted_24_hour_cap(world: XWorld, publisher: XPublisher) -> None:
    now = int(time.time())
    headers = {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": "99",
        "x-rate-limit-reset": str(now + 600),
        "x-user-limit-24hour-limit": "17",
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(now + 20_000),
    }
    world.server.fail("POST", TWEETS, Reply(429, fake_x.TOO_MANY, headers))

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and 19_990 <= result.retry_after <= 20_000


def test_rate_limit_with_retry_after_only(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail("POST", TWEETS, Reply(429, fake_x.TOO_MANY, {"Retry-After": "42"}))

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.RETRY and result.retry_after == 42


def test_rate_limit_reset_in_the_past_waits_at_least_a_second(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail(
        "POST", TWEETS, Reply(429, fake_x.TOO_MANY, {"x-rate-limit-reset": str(int(time.time()) - 50)})
    )

    assert publisher.publish(make_post(), "row-1").retry_after == 1


def test_server_error_retries(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail("POST", TWEETS, Reply(503, fake_x.UNAVAILABLE))

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.RETRY and result.retry_after is None
    assert "503 Service Unavailable" in result.reply
    assert publisher.publish(make_post(), "row-1").outcome is Outcome.SENT  # the fault was one answer


def test_stall_after_sending_is_unknown_within_the_timeout(world: XWorld, publisher: XPublisher) -> None:
    world.server.stall("POST", TWEETS, seconds=3.0)

    started = time.monotonic()
    result = publisher.publish(make_post(), "row-1")

    assert time.monotonic() - started < 2.0
    assert result.outcome is Outcome.UNKNOWN and not result.pause
    assert "may or may not be on X" in result.reply
    assert len(world.server.requests_to("POST", TWEETS)) == 1  # the request did go out


def test_connection_dropped_before_the_answer_is_unknown(world: XWorld, publisher: XPublisher) -> None:
    world.server.stall("POST", TWEETS, seconds=0.05)  # closes without answering, inside the timeout

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.UNKNOWN
    assert "connection lost" in result.reply


def test_connection_refused_retries() -> None:
    port = closed_port()
    pub = XPublisher(options_for_url(f"http://127.0.0.1:{port}"))
    try:
        started = time.monotonic()
        result = pub.publish(make_post(), "row-1")
    finally:
        pub.close()

    assert time.monotonic() - started < 2.0
    assert result.outcome is Outcome.RETRY and "could not connect" in result.reply


def options_for_url(url: str) -> XOptions:
    return XOptions("x-de", fake_x.CONSUMER_KEY, fake_x.CONSUMER_SECRET, fake_x.ACCESS_TOKEN,
                    fake_x.ACCESS_TOKEN_SECRET, timeout=TIMEOUT, api_base=url, upload_base=url)  # fmt: skip


def test_duplicate_counts_as_sent(world: XWorld, publisher: XPublisher) -> None:
    first = publisher.publish(make_post(), "row-1")
    again = publisher.publish(make_post(), "row-1")

    assert first.outcome is Outcome.SENT and again.outcome is Outcome.SENT
    assert "already has this post" in again.reply
    assert "You are not allowed to create a Tweet with duplicate content." in again.reply
    assert len(world.fake.tweets) == 1


def test_success_status_without_tweet_id_is_unknown(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail("POST", TWEETS, Reply(201, {"errors": [{"message": "odd"}]}))

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.UNKNOWN and "named no id" in result.reply


def test_revoked_token_fails_and_pauses(world: XWorld, publisher: XPublisher) -> None:
    world.fake.revoke()

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.FAILED and result.pause
    assert "401 Unauthorized" in result.reply and "channels test" in result.reply
    assert world.fake.tweets == []


def test_wrong_secret_fails_the_signature_and_pauses(world: XWorld) -> None:
    pub = world.publisher(consumer_secret="not-the-secret")
    try:
        result = pub.publish(make_post(), "row-1")
    finally:
        pub.close()

    assert result.outcome is Outcome.FAILED and result.pause
    assert world.fake.auth_refusals == ["signature does not match"]


def test_image_upload_refused_credentials_pause(world: XWorld, publisher: XPublisher, tmp_path: Path) -> None:
    world.fake.revoke()

    result = publisher.publish(make_post(image=PostImage(str(png(tmp_path)), "image/png", "Titel")), "row-1")

    assert result.outcome is Outcome.FAILED and result.pause
    assert world.server.requests_to("POST", TWEETS) == []


def test_missing_write_permission_fails_and_pauses(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail("POST", TWEETS, Reply(403, fake_x.NOT_PERMITTED))

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.FAILED and result.pause
    assert "You are not permitted to perform this action." in result.reply


def test_other_refusal_fails_without_pausing(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail(
        "POST", TWEETS, Reply(400, fake_x.invalid_request("Invalid 'text' parameter", {"text": ["x"]}))
    )

    result = publisher.publish(make_post(), "row-1")

    assert result.outcome is Outcome.FAILED and not result.pause
    assert "Invalid 'text' parameter" in result.reply


# -- verify ---------------------------------------------------------------------------------------------


def test_verify_names_the_account(publisher: XPublisher) -> None:
    assert publisher.verify() == f"@{fake_x.USERNAME} (id {fake_x.USER_ID})"


def test_verify_revoked_says_what_is_wrong(world: XWorld, publisher: XPublisher) -> None:
    world.fake.revoke()

    with pytest.raises(PublishError) as caught:
        publisher.verify()

    assert not caught.value.retryable
    assert caught.value.channel == "x-de"
    assert "401 Unauthorized" in caught.value.message and "renew them" in caught.value.message


def test_verify_without_write_permission_is_not_retryable(world: XWorld, publisher: XPublisher) -> None:
    world.server.fail("GET", r"/2/users/me", Reply(403, fake_x.NOT_PERMITTED))

    with pytest.raises(PublishError) as caught:
        publisher.verify()

    assert not caught.value.retryable
    assert "You are not permitted to perform this action." in caught.value.message
    assert "Read and write" in caught.value.message


def test_verify_unreachable_is_retryable() -> None:
    pub = XPublisher(options_for_url(f"http://127.0.0.1:{closed_port()}"))
    try:
        with pytest.raises(PublishError) as caught:
            pub.verify()
    finally:
        pub.close()

    assert caught.value.retryable and "could not connect" in caught.value.message
