"""The LinkedIn publisher with httpx against a local LinkedIn (tests/support/fake_linkedin.py) over TCP."""

from __future__ import annotations

import dataclasses
import io
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from PIL import Image

from imk_outreach.models import LinkCard, Post, PostImage
from imk_outreach.publishers import Outcome, PublishError
from imk_outreach.publishers.linkedin import (
    DEFAULT_RETRY_AFTER,
    LinkedInOptions,
    LinkedInPublisher,
    escape_commentary,
)
from tests.support.fake_linkedin import (
    MEMBER_ID,
    MEMBER_NAME,
    ORGANIZATION_ID,
    ORGANIZATION_NAME,
    TOKEN,
    FakeLinkedIn,
    parse_little,
)
from tests.support.platformserver import Reply

VERSION = "202506"
ORGANIZATION = f"urn:li:organization:{ORGANIZATION_ID}"
MEMBER = f"urn:li:person:{MEMBER_ID}"
POSTS = r"/rest/posts"
IMAGES = r"/rest/images"
TIMEOUT = 0.5


@pytest.fixture
def linkedin() -> Iterator[FakeLinkedIn]:
    server = FakeLinkedIn()
    server.start()
    yield server
    server.stop()


def options(server: FakeLinkedIn, **changes: object) -> LinkedInOptions:
    base = LinkedInOptions(
        channel="linkedin-de",
        access_token=TOKEN,
        author=ORGANIZATION,
        api_version=VERSION,
        base_url=server.url,
        timeout=TIMEOUT,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def publisher(linkedin: FakeLinkedIn) -> Iterator[LinkedInPublisher]:
    client = LinkedInPublisher(options(linkedin))
    yield client
    client.close()


def make_post(
    text: str = "Neu im Cluster: Drehstart in Babelsberg https://example.org/n/1", **changes: object
) -> Post:
    values: dict[str, object] = {
        "channel": "linkedin-de",
        "platform": "linkedin",
        "language": "de",
        "key": "item-1",
        "text": text,
        "length": len(text),
        "limit": 3000,
        "link": "https://example.org/n/1",
    }
    values.update(changes)
    return Post(**values)  # type: ignore[arg-type]


def png(path: Path) -> PostImage:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 40)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return PostImage(str(path), "image/png", "Drehstart in Babelsberg")


CARD = LinkCard("https://example.org/n/1", "Drehstart in Babelsberg", "Die Kameras laufen wieder")


# -- success -------------------------------------------------------------------------------------------


def test_a_text_post_is_published(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    post = make_post()
    result = publisher.publish(post, "outbox-1")
    assert result.outcome is Outcome.SENT
    [stored] = linkedin.posts.values()
    assert result.remote_id == stored.urn and stored.urn.startswith("urn:li:share:")
    assert result.url == f"https://www.linkedin.com/feed/update/{stored.urn}"
    assert stored.text == post.text and not stored.truncated
    assert stored.body == {
        "author": ORGANIZATION,
        "commentary": post.text,  # nothing in it to escape
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    assert not linkedin.requests_to("POST", IMAGES)


def test_a_card_with_an_image_becomes_an_article_with_the_uploaded_thumbnail(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher, tmp_path: Path
) -> None:
    image = png(tmp_path / "drehstart.png")
    result = publisher.publish(make_post(card=CARD, image=image), "outbox-2")
    assert result.outcome is Outcome.SENT, result.reply
    [stored] = linkedin.posts.values()
    article = stored.body["content"]["article"]
    [uploaded] = linkedin.images.values()
    assert article == {
        "source": CARD.url,
        "title": CARD.title,
        "description": CARD.description,
        "thumbnail": uploaded.urn,
    }
    assert uploaded.data == Path(image.path).read_bytes()  # the PUT carried the bytes
    assert uploaded.content_type == "image/png"
    assert uploaded.owner == ORGANIZATION
    [put] = linkedin.requests_to("PUT", r"/dms-uploads/.*")
    assert put.header("Authorization") == f"Bearer {TOKEN}"


def test_an_image_without_a_card_is_media_with_alt_text(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher, tmp_path: Path
) -> None:
    image = png(tmp_path / "bild.png")
    assert publisher.publish(make_post(image=image), "outbox-3").outcome is Outcome.SENT
    [stored] = linkedin.posts.values()
    [uploaded] = linkedin.images.values()
    assert stored.body["content"] == {"media": {"id": uploaded.urn, "altText": "Drehstart in Babelsberg"}}


def test_a_card_without_an_image_has_no_thumbnail(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    assert publisher.publish(make_post(card=CARD), "outbox-4").outcome is Outcome.SENT
    [stored] = linkedin.posts.values()
    assert "thumbnail" not in stored.body["content"]["article"]
    assert not linkedin.images


def test_reserved_characters_arrive_as_written(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    text = (
        "KI & C# (Beta) [Teil 1] {neu} @Babelsberg a_b *fett* ~ca. <Film> | Pfad\\x "
        "#FinTech #KI_Labor #2026 https://example.org/a_(b)#abschnitt"
    )
    assert publisher.publish(make_post(text), "outbox-5").outcome is Outcome.SENT
    [stored] = linkedin.posts.values()
    assert not stored.truncated
    assert stored.text == text
    assert stored.hashtags == ["FinTech", "KI_Labor"]  # "#2026" and "C#" are no hashtags


def test_the_fake_cuts_unescaped_commentary_like_linkedin() -> None:
    """Without the escaping the test above would fail: LinkedIn (and the fake) cut the text."""
    cut = parse_little("Premiere (Berlin) am Freitag")
    assert (cut.text, cut.truncated) == ("Premiere ", True)
    assert (
        parse_little(escape_commentary("Premiere (Berlin) am Freitag")).text == "Premiere (Berlin) am Freitag"
    )


def test_hashtags_become_linkedin_hashtag_templates() -> None:
    assert escape_commentary("Neu: #FinTech und C#") == "Neu: {hashtag|\\#|FinTech} und C\\#"


def test_every_call_carries_exactly_the_configured_version(tmp_path: Path) -> None:
    server = FakeLinkedIn(active_versions={"202411"})  # not the fake's default: nothing hard-coded
    server.start()
    try:
        client = LinkedInPublisher(options(server, api_version="202411"))
        assert client.verify()
        result = client.publish(make_post(card=CARD, image=png(tmp_path / "a.png")), "outbox-6")
        client.close()
    finally:
        server.stop()
    assert result.outcome is Outcome.SENT, result.reply
    rest = [r for r in server.requests if r.path.startswith("/rest/")]
    assert {r.path for r in rest} == {POSTS, IMAGES, f"/rest/organizations/{ORGANIZATION_ID}"}
    assert {r.header("LinkedIn-Version") for r in rest} == {"202411"}
    assert {r.header("X-Restli-Protocol-Version") for r in rest} == {"2.0.0"}
    assert {r.header("Authorization") for r in rest} == {f"Bearer {TOKEN}"}


# -- refusals and faults ---------------------------------------------------------------------------------


def test_429_with_retry_after_is_retry_after_that_long(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    body = {
        "status": 429,
        "serviceErrorCode": 101,
        "code": "TOO_MANY_REQUESTS",
        "message": "Too many requests",
    }
    linkedin.fail("POST", POSTS, Reply(429, body, {"Retry-After": "120"}))
    result = publisher.publish(make_post(), "outbox-7")
    assert (result.outcome, result.retry_after, result.pause) == (Outcome.RETRY, 120.0, False)
    assert "TOO_MANY_REQUESTS" in result.reply
    assert not linkedin.posts
    assert publisher.publish(make_post(), "outbox-7").outcome is Outcome.SENT  # later it goes through


def test_a_daily_quota_429_waits_until_midnight_utc(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    message = "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."
    body = {"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS", "message": message}
    linkedin.fail("POST", POSTS, Reply(429, body))
    with time_machine.travel(datetime(2026, 3, 10, 22, 0, tzinfo=UTC), tick=True):
        result = publisher.publish(make_post(), "outbox-8")
    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and 7190 < result.retry_after <= 7200


def test_another_429_without_retry_after_waits_the_default(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    linkedin.fail("POST", POSTS, Reply(429, {"status": 429, "message": "Too many requests"}))
    result = publisher.publish(make_post(), "outbox-9")
    assert (result.outcome, result.retry_after) == (Outcome.RETRY, DEFAULT_RETRY_AFTER)


@pytest.mark.parametrize(("status", "headers", "wait"), [(500, {}, None), (503, {"Retry-After": "30"}, 30.0)])
def test_5xx_is_retry(
    linkedin: FakeLinkedIn,
    publisher: LinkedInPublisher,
    status: int,
    headers: dict[str, str],
    wait: float | None,
) -> None:
    linkedin.fail(
        "POST", POSTS, Reply(status, {"message": "Internal Server Error", "status": status}, headers)
    )
    result = publisher.publish(make_post(), "outbox-10")
    assert (result.outcome, result.retry_after, result.pause) == (Outcome.RETRY, wait, False)
    assert str(status) in result.reply


def test_no_answer_after_the_post_went_out_is_unknown(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    linkedin.stall("POST", POSTS, seconds=3.0)
    started = time.monotonic()
    result = publisher.publish(make_post(), "outbox-11")
    assert time.monotonic() - started < 2.0  # the configured timeout, not LinkedIn's patience
    assert result.outcome is Outcome.UNKNOWN
    assert "outbox resolve" in result.reply
    assert len(linkedin.requests_to("POST", POSTS)) == 1  # it did go out


def test_no_answer_to_the_image_upload_is_retry(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher, tmp_path: Path
) -> None:
    linkedin.stall("PUT", r"/dms-uploads/.*", seconds=3.0)
    result = publisher.publish(make_post(image=png(tmp_path / "a.png")), "outbox-12")
    assert result.outcome is Outcome.RETRY  # nothing was posted yet
    assert not linkedin.requests_to("POST", POSTS)


def test_connection_refused_is_retry(linkedin: FakeLinkedIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LinkedInPublisher(options(linkedin, base_url=f"http://127.0.0.1:{port}"))
    result = client.publish(make_post(), "outbox-13")
    client.close()
    assert (result.outcome, result.pause) == (Outcome.RETRY, False)
    assert "nothing was sent" in result.reply


def test_a_revoked_token_fails_and_pauses_with_linkedins_message(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    linkedin.revoke()
    result = publisher.publish(make_post(), "outbox-14")
    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "REVOKED_ACCESS_TOKEN: The token used in the request has been revoked by the user" in result.reply
    assert "401" in result.reply and "channels test" in result.reply


def test_a_missing_permission_fails_and_pauses(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    linkedin.scopes.discard("w_organization_social")
    result = publisher.publish(make_post(), "outbox-15")
    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "ACCESS_DENIED" in result.reply and "w_organization_social" in result.reply


def test_a_stale_version_fails_and_pauses_with_the_config_hint(linkedin: FakeLinkedIn) -> None:
    client = LinkedInPublisher(options(linkedin, api_version="202301"))
    result = client.publish(make_post(), "outbox-16")
    client.close()
    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "NONEXISTENT_VERSION: Requested version 20230101 is not active" in result.reply
    assert "set api_version of channel linkedin-de in config.yaml" in result.reply
    assert "YYYYMM" in result.reply
    assert not linkedin.posts


def test_an_invalid_post_fails_without_pausing(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    result = publisher.publish(make_post("x" * 3001), "outbox-17")
    assert (result.outcome, result.pause) == (Outcome.FAILED, False)
    assert "422" in result.reply and "/commentary" in result.reply


def test_a_duplicate_refusal_means_the_post_exists(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    first = publisher.publish(make_post(), "outbox-18")
    again = publisher.publish(make_post(), "outbox-18")  # e.g. after a lost answer was resolved as retry
    assert again.outcome is Outcome.SENT
    assert again.remote_id == first.remote_id and again.url == first.url
    assert "Content is a duplicate of" in again.reply
    assert len(linkedin.posts) == 1


def test_an_unreadable_image_fails_naming_it(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher, tmp_path: Path
) -> None:
    missing = PostImage(str(tmp_path / "weg.png"), "image/png", "weg")
    result = publisher.publish(make_post(image=missing), "outbox-19")
    assert (result.outcome, result.pause) == (Outcome.FAILED, False)
    assert str(tmp_path / "weg.png") in result.reply
    assert not linkedin.posts


# -- verify ----------------------------------------------------------------------------------------------


def test_verify_names_the_organisation(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    assert publisher.verify() == f"organisation {ORGANIZATION_NAME} ({ORGANIZATION})"
    assert linkedin.requests_to("GET", rf"/rest/organizations/{ORGANIZATION_ID}")
    [probe] = linkedin.requests_to("POST", IMAGES)  # may it post there: one upload initialised, none used
    assert probe.json() == {"initializeUploadRequest": {"owner": ORGANIZATION}}


def test_verify_without_reading_the_page_still_checks_posting(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    linkedin.scopes.discard("r_organization_admin")  # posting works, reading the page does not
    assert publisher.verify() == f"organisation {ORGANIZATION} (its name is not readable with this token)"
    assert linkedin.requests_to("POST", IMAGES)


def test_verify_names_the_member(linkedin: FakeLinkedIn) -> None:
    client = LinkedInPublisher(options(linkedin, author=MEMBER))
    try:
        assert client.verify() == f"member {MEMBER_NAME} ({MEMBER})"
    finally:
        client.close()
    [userinfo] = linkedin.requests_to("GET", r"/v2/userinfo")
    assert userinfo.header("Authorization") == f"Bearer {TOKEN}"


def test_verify_refuses_a_token_of_another_member(linkedin: FakeLinkedIn) -> None:
    client = LinkedInPublisher(options(linkedin, author="urn:li:person:someoneElse"))
    with pytest.raises(
        PublishError, match=f"belongs to member {MEMBER_NAME} \\(urn:li:person:{MEMBER_ID}\\)"
    ):
        client.verify()
    client.close()


def test_verify_reports_a_revoked_token(linkedin: FakeLinkedIn, publisher: LinkedInPublisher) -> None:
    linkedin.revoke()
    with pytest.raises(PublishError, match="revoked by the user") as raised:
        publisher.verify()
    assert not raised.value.retryable
    assert raised.value.channel == "linkedin-de"


def test_verify_reports_a_stale_version_with_the_hint(linkedin: FakeLinkedIn) -> None:
    client = LinkedInPublisher(options(linkedin, api_version="202301"))
    with pytest.raises(PublishError, match="set api_version of channel linkedin-de in config.yaml"):
        client.verify()
    client.close()


def test_verify_reports_a_missing_posting_permission(
    linkedin: FakeLinkedIn, publisher: LinkedInPublisher
) -> None:
    linkedin.scopes.discard("w_organization_social")  # the page can still be read, not posted to
    with pytest.raises(PublishError, match="ACCESS_DENIED"):
        publisher.verify()


def test_verify_of_an_unreachable_linkedin_may_pass_later(linkedin: FakeLinkedIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LinkedInPublisher(options(linkedin, base_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(PublishError, match="could not be reached") as raised:
        client.verify()
    client.close()
    assert raised.value.retryable


def test_an_author_that_is_no_urn_is_refused(linkedin: FakeLinkedIn) -> None:
    with pytest.raises(PublishError, match="urn:li:organization:<id> or urn:li:person:<id>"):
        LinkedInPublisher(options(linkedin, author="Cluster IMK"))
