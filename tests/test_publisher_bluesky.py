"""BlueskyPublisher: the real atproto SDK against a local server that answers like a Bluesky PDS."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from atproto import Session
from PIL import Image

from imk_outreach.models import Facet, LinkCard, Post, PostImage
from imk_outreach.publishers.base import Outcome, PublishError, get_publisher_factory
from imk_outreach.publishers.bluesky import BlueskyOptions, BlueskyPublisher, record_key
from tests.support.fake_bluesky import DID, HANDLE, PASSWORD, FakeBluesky, cid_for, fake_bluesky, rate_limited
from tests.support.platformserver import Reply

CHANNEL = "bluesky-main"
CREATE = r"/xrpc/com\.atproto\.repo\.createRecord"
SESSION = r"/xrpc/com\.atproto\.server\.createSession"
URL = "https://cluster.example/news/foerderrunde-2025"
TEXT = f"Neue Förderrunde für Games-Startups 🎮 im Cluster {URL} #Games #KI"
NOW = datetime(2026, 5, 4, 10, 0, 0, tzinfo=UTC)
TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")


@pytest.fixture
def fake() -> Iterator[FakeBluesky]:
    with fake_bluesky() as server:
        yield server


@pytest.fixture
def make_publisher(fake: FakeBluesky) -> Iterator[Callable[..., BlueskyPublisher]]:
    made: list[BlueskyPublisher] = []

    def make(**changes: Any) -> BlueskyPublisher:
        options = BlueskyOptions(CHANNEL, HANDLE, PASSWORD, service=fake.url, timeout=0.5)
        made.append(BlueskyPublisher(dataclasses.replace(options, **changes)))
        return made[-1]

    yield make
    for pub in made:
        pub.close()


@pytest.fixture
def publisher(make_publisher: Callable[..., BlueskyPublisher]) -> BlueskyPublisher:
    return make_publisher()


def facets_of(text: str) -> tuple[Facet, ...]:
    """Links and hashtags of ``text`` with their UTF-8 byte ranges, as render/social.py makes them."""
    data = text.encode()
    found = []
    for match in re.finditer(rb"https?://\S+|#(\w+)", data):
        value = match.group(1).decode() if match.group(1) else match.group().decode()
        found.append(Facet(match.start(), match.end(), "tag" if match.group(1) else "link", value))
    return tuple(found)


def make_post(
    text: str = TEXT,
    *,
    language: str = "de",
    card: bool = True,
    image: PostImage | None = None,
    facets: tuple[Facet, ...] | None = None,
) -> Post:
    link_card = LinkCard(URL, "Förderrunde 2025", "Bis zu 50.000 Euro für Prototypen") if card else None
    return Post(
        CHANNEL, "bluesky", language, "item-1", text, len(text), 300, link=URL,
        facets=facets_of(text) if facets is None else facets, card=link_card, image=image,
    )  # fmt: skip


def make_image(tmp_path: Path, size: tuple[int, int] = (64, 32), noise: bool = False) -> PostImage:
    path = tmp_path / "teaser.png"
    if noise:  # random pixels do not compress: a big file
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path)
    else:
        Image.new("RGB", size, (200, 40, 40)).save(path)
    return PostImage(str(path), "image/png", "Förderrunde für Games-Startups")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def only_record(fake: FakeBluesky) -> dict[str, object]:
    (record,) = fake.records.values()
    return record


# -- success ---------------------------------------------------------------------------------------------


def test_post_has_text_facets_languages_and_link_card_with_thumb(
    fake: FakeBluesky, publisher: BlueskyPublisher, tmp_path: Path
) -> None:
    image = make_image(tmp_path)
    result = publisher.publish(make_post(image=image), "outbox-17")

    assert result.outcome is Outcome.SENT, result.reply
    rkey = record_key("outbox-17")
    record = only_record(fake)
    assert result.remote_id == record["uri"] == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert result.url == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"
    post = record["value"]
    assert isinstance(post, dict)
    assert (post["text"], post["langs"]) == (TEXT, ["de"])
    assert datetime.fromisoformat(post["createdAt"]).tzinfo is not None
    data = TEXT.encode()
    spans = [
        (data[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in post["facets"]
    ]
    assert spans == [
        (URL, {"$type": "app.bsky.richtext.facet#link", "uri": URL}),
        ("#Games", {"$type": "app.bsky.richtext.facet#tag", "tag": "Games"}),
        ("#KI", {"$type": "app.bsky.richtext.facet#tag", "tag": "KI"}),
    ]
    external = post["embed"]["external"]
    assert post["embed"]["$type"] == "app.bsky.embed.external"
    assert (external["uri"], external["title"], external["description"]) == (
        URL, "Förderrunde 2025", "Bis zu 50.000 Euro für Prototypen",
    )  # fmt: skip
    image_bytes = Path(image.path).read_bytes()
    thumb = external["thumb"]
    assert thumb["ref"]["$link"] == cid_for(image_bytes, 0x55)
    assert (thumb["mimeType"], thumb["size"]) == ("image/png", len(image_bytes))
    assert fake.blobs[thumb["ref"]["$link"]] == ("image/png", image_bytes)


def test_image_without_card_is_an_image_embed_with_alt_text(
    fake: FakeBluesky, publisher: BlueskyPublisher, tmp_path: Path
) -> None:
    image = make_image(tmp_path, (90, 60))
    result = publisher.publish(make_post(card=False, image=image), "k-img")

    assert result.outcome is Outcome.SENT, result.reply
    embed = fake.posts[0]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    (shown,) = embed["images"]
    assert shown["alt"] == image.alt
    assert (shown["aspectRatio"]["width"], shown["aspectRatio"]["height"]) == (90, 60)
    assert fake.blobs[shown["image"]["ref"]["$link"]][1] == Path(image.path).read_bytes()


def test_bilingual_post_names_both_languages_and_needs_no_embed(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    text = f"Neu / New: {URL}"
    result = publisher.publish(make_post(text, language="both", card=False), "k-both")

    assert result.outcome is Outcome.SENT, result.reply
    post = fake.posts[0]
    assert post["langs"] == ["de", "en"]
    assert "embed" not in post
    assert fake.calls("com.atproto.repo.uploadBlob") == 0


def test_image_too_big_for_a_thumb_is_left_out_and_said(
    fake: FakeBluesky, publisher: BlueskyPublisher, tmp_path: Path
) -> None:
    image = make_image(tmp_path, (600, 600), noise=True)
    assert Path(image.path).stat().st_size > 1_000_000

    result = publisher.publish(make_post(image=image), "k-big")

    assert result.outcome is Outcome.SENT, result.reply
    assert "image left out" in result.reply and "1,000,000" in result.reply
    assert "thumb" not in fake.posts[0]["embed"]["external"]
    assert fake.calls("com.atproto.repo.uploadBlob") == 0


def test_record_key_is_a_valid_tid_the_same_for_every_attempt() -> None:
    keys = [record_key(f"edition-3/bluesky-main/item-{n}") for n in range(200)]

    assert all(TID.fullmatch(k) for k in keys)
    assert len(set(keys)) == len(keys)
    assert record_key("edition-3/bluesky-main/item-7") == keys[7]
    value = 0
    for char in keys[0]:
        value = value * 32 + "234567abcdefghijklmnopqrstuvwxyz".index(char)
    created = datetime.fromtimestamp((value >> 10) / 1_000_000, UTC)
    assert datetime(2023, 1, 1, tzinfo=UTC) <= created < datetime(2024, 3, 1, tzinfo=UTC)
    # pinned: a changed derivation would make a retry after an upgrade post a second copy
    assert record_key("outbox-17") == "3kdkmbb65vea7"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"service": "bsky.social"}, "is not an http(s) URL"),
        ({"timeout": 0.0}, "must be more than 0 seconds"),
    ],
    ids=["service", "timeout"],
)
def test_unusable_options_are_refused_at_once(changes: dict[str, Any], expected: str) -> None:
    options = dataclasses.replace(BlueskyOptions(CHANNEL, HANDLE, PASSWORD), **changes)

    with pytest.raises(PublishError) as caught:
        BlueskyPublisher(options)

    assert expected in caught.value.message and caught.value.retryable is False


def test_publisher_is_registered() -> None:
    assert get_publisher_factory("bluesky") is BlueskyPublisher


# -- the session -----------------------------------------------------------------------------------------


def test_three_posts_use_one_session(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    saved: list[str] = []
    pub = make_publisher(on_session=saved.append)

    results = [pub.publish(make_post(f"Meldung {n}: {URL}"), f"k-{n}") for n in range(3)]

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert fake.calls("com.atproto.server.createSession") == 1
    assert fake.calls("com.atproto.server.refreshSession") == 0
    assert fake.calls("com.atproto.repo.createRecord") == 3
    (session,) = saved
    assert (Session.decode(session).handle, Session.decode(session).did) == (HANDLE, DID)


def test_expired_access_token_is_refreshed_not_a_new_sign_in(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    saved: list[str] = []
    with time_machine.travel(NOW, tick=True) as clock:
        pub = make_publisher(on_session=saved.append)
        assert pub.publish(make_post("Erste Meldung"), "k-1").outcome is Outcome.SENT
        clock.shift(timedelta(hours=2))  # the 2-hour access token ran out

        result = pub.publish(make_post("Zweite Meldung"), "k-2")

    assert result.outcome is Outcome.SENT, result.reply
    assert fake.calls("com.atproto.server.createSession") == 1
    assert fake.calls("com.atproto.server.refreshSession") == 1
    assert len(saved) == 2 and saved[0] != saved[1]  # the refreshed session is handed on to be saved
    tokens = {r.header("Authorization") for r in fake.server.requests_to("POST", CREATE)}
    assert len(tokens) == 2


def test_token_the_server_refuses_before_its_exp_is_refreshed_and_the_post_repeated(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    assert publisher.publish(make_post("Erste Meldung"), "k-1").outcome is Outcome.SENT
    fake.invalidate_access_tokens()  # our clock behind the server's

    result = publisher.publish(make_post("Zweite Meldung"), "k-2")

    assert result.outcome is Outcome.SENT, result.reply
    assert fake.calls("com.atproto.server.createSession") == 1
    assert fake.calls("com.atproto.server.refreshSession") == 1
    assert fake.calls("com.atproto.repo.createRecord") == 3  # the refused one, then again
    assert len(fake.posts) == 2


def test_saved_session_is_resumed_without_signing_in(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    saved: list[str] = []
    first = make_publisher(on_session=saved.append)
    assert first.verify() == f"@{HANDLE} ({DID})"

    later = make_publisher(session=saved[-1])
    result = later.publish(make_post(), "k-resumed")

    assert result.outcome is Outcome.SENT, result.reply
    assert fake.calls("com.atproto.server.createSession") == 1  # the first publisher's only


def test_saved_session_whose_refresh_token_was_used_falls_back_to_the_password(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    saved: list[str] = []
    first = make_publisher(on_session=saved.append)
    first.verify()
    fake.invalidate_access_tokens()
    first.verify()  # refreshed: the refresh token in saved[0] is spent
    assert fake.calls("com.atproto.server.refreshSession") == 1

    result = make_publisher(session=saved[0]).publish(make_post(), "k-stale")

    assert result.outcome is Outcome.SENT, result.reply
    assert fake.calls("com.atproto.server.createSession") == 2
    assert fake.calls("com.atproto.server.refreshSession") == 2  # the refused one


def test_saved_session_of_another_account_or_broken_is_not_used(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    saved: list[str] = []
    make_publisher(on_session=saved.append).verify()
    other = saved[-1].replace(HANDLE, "someone-else.bsky.social")

    assert make_publisher(session=other).verify() == f"@{HANDLE} ({DID})"
    assert make_publisher(session="not a session").verify() == f"@{HANDLE} ({DID})"
    assert fake.calls("com.atproto.server.createSession") == 3


def test_failing_session_store_does_not_fail_the_post(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    def broken(session: str) -> None:
        raise OSError("disk full")

    result = make_publisher(on_session=broken).publish(make_post(), "k-store")

    assert result.outcome is Outcome.SENT, result.reply


# -- rate limits, server errors, timeouts ---------------------------------------------------------------


def test_rate_limit_defers_by_retry_after(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    fake.server.fail("POST", CREATE, rate_limited(reset_in=300, retry_after=90))

    result = publisher.publish(make_post(), "k-429")

    assert (result.outcome, result.retry_after, result.pause) == (Outcome.RETRY, 90.0, False)
    assert "RateLimitExceeded" in result.reply
    assert fake.posts == []
    assert fake.calls("com.atproto.repo.createRecord") == 1  # the SDK did not retry by itself


def test_rate_limit_without_retry_after_defers_until_the_reset(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    with time_machine.travel(NOW, tick=False):
        fake.server.fail("POST", SESSION, rate_limited(reset_in=240))  # sign-ins: 30 per 5 minutes

        result = publisher.publish(make_post(), "k-429-reset")

    assert (result.outcome, result.retry_after, result.pause) == (Outcome.RETRY, 240.0, False)
    assert "signing in" in result.reply


@pytest.mark.parametrize(
    "reply",
    [
        Reply(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        Reply(503, {"error": "InternalServerError", "message": "Service Unavailable"}),
    ],
    ids=["502-html", "503-json"],
)
def test_server_error_is_retried_later(fake: FakeBluesky, publisher: BlueskyPublisher, reply: Reply) -> None:
    fake.server.fail("POST", CREATE, reply)

    result = publisher.publish(make_post(), "k-5xx")

    assert result.outcome is Outcome.RETRY
    assert str(reply.status) in result.reply
    assert fake.posts == []
    assert publisher.publish(make_post(), "k-5xx").outcome is Outcome.SENT
    assert len(fake.posts) == 1


def test_timeout_after_the_post_was_created_is_retried_and_finds_it(
    fake: FakeBluesky, publisher: BlueskyPublisher, tmp_path: Path
) -> None:
    fake.lag_next_create(3.0)
    started = time.monotonic()

    first = publisher.publish(make_post(image=make_image(tmp_path)), "k-lag")

    assert time.monotonic() - started < 2.0
    assert first.outcome is Outcome.RETRY
    assert "no answer from Bluesky within 0.5 s" in first.reply
    assert len(fake.posts) == 1  # it was created all the same

    second = publisher.publish(make_post(image=make_image(tmp_path)), "k-lag")

    assert second.outcome is Outcome.SENT, second.reply
    assert "already posted" in second.reply
    assert second.remote_id == only_record(fake)["uri"]
    assert second.url == f"https://bsky.app/profile/{HANDLE}/post/{record_key('k-lag')}"
    assert len(fake.posts) == 1


def test_stall_before_the_post_was_created_is_retried_and_posts_once(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    fake.server.stall("POST", CREATE, seconds=2.0)
    started = time.monotonic()

    first = publisher.publish(make_post(), "k-stall")

    assert time.monotonic() - started < 2.0
    assert first.outcome is Outcome.RETRY
    assert fake.posts == []
    second = publisher.publish(make_post(), "k-stall")
    assert (second.outcome, second.reply) == (Outcome.SENT, "posted")
    assert len(fake.posts) == 1


def test_connection_refused_is_retried(make_publisher: Callable[..., BlueskyPublisher]) -> None:
    pub = make_publisher(service=f"http://127.0.0.1:{free_port()}")

    result = pub.publish(make_post(), "k-down")

    assert result.outcome is Outcome.RETRY
    assert "could not reach Bluesky" in result.reply and "ConnectError" in result.reply


def test_key_reused_for_another_post_is_refused_not_overwritten(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    assert publisher.publish(make_post("Erste Meldung"), "k-same").outcome is Outcome.SENT

    result = publisher.publish(make_post("Eine ganz andere Meldung"), "k-same")

    assert result.outcome is Outcome.FAILED
    assert "already holds a different post" in result.reply and "'Erste Meldung'" in result.reply
    assert fake.posts[0]["text"] == "Erste Meldung" and len(fake.posts) == 1


# -- refused posts and credentials ----------------------------------------------------------------------


def test_text_over_300_graphemes_fails_with_the_platforms_message(
    fake: FakeBluesky, publisher: BlueskyPublisher
) -> None:
    text = "Lang " + "ä" * 300

    result = publisher.publish(make_post(text, card=False), "k-long")

    assert (result.outcome, result.pause) == (Outcome.FAILED, False)
    assert "InvalidRequest" in result.reply and "300 graphemes" in result.reply
    assert fake.posts == []


@pytest.mark.parametrize(
    ("text", "facet", "expected"),
    [
        ("Kurz #KI", Facet(5, 40, "tag", "KI"), "lies outside the post's 8 bytes of text"),
        ("Grüße #KI", Facet(3, 8, "tag", "KI"), "cuts a character in two"),
        ("Kurz #KI", Facet(5, 8, "mention", "KI"), "unknown kind 'mention'"),
    ],
    ids=["outside", "split-character", "kind"],
)
def test_bad_facet_fails_before_anything_is_sent(
    fake: FakeBluesky, publisher: BlueskyPublisher, text: str, facet: Facet, expected: str
) -> None:
    result = publisher.publish(make_post(text, facets=(facet,)), "k-facet")

    assert (result.outcome, result.pause) == (Outcome.FAILED, False)
    assert result.reply.startswith("facet 1 (")
    assert expected in result.reply
    assert fake.server.requests == []


def test_revoked_app_password_fails_the_post_and_pauses_the_channel(
    fake: FakeBluesky, make_publisher: Callable[..., BlueskyPublisher]
) -> None:
    with time_machine.travel(NOW, tick=True) as clock:
        pub = make_publisher()
        assert pub.publish(make_post("Erste Meldung"), "k-1").outcome is Outcome.SENT
        fake.revoke_app_password()
        clock.shift(timedelta(hours=2))  # the access token still worked until now

        result = pub.publish(make_post("Zweite Meldung"), "k-2")

    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "Invalid identifier or password" in result.reply and HANDLE in result.reply
    assert (
        fake.calls("com.atproto.server.createSession") == 2
    )  # the refused sign-in after the refused refresh
    assert len(fake.posts) == 1


def test_revoked_session_and_password_fail_at_once(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    assert publisher.publish(make_post("Erste Meldung"), "k-1").outcome is Outcome.SENT
    fake.revoke_app_password()
    fake.invalidate_access_tokens()

    result = publisher.publish(make_post("Zweite Meldung"), "k-2")

    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "Invalid identifier or password" in result.reply


def test_wrong_password_fails_and_pauses(make_publisher: Callable[..., BlueskyPublisher]) -> None:
    result = make_publisher(app_password="wxyz-wxyz-wxyz-wxyz").publish(make_post(), "k-wrong")

    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert "AuthenticationRequired: Invalid identifier or password" in result.reply


# -- verify ----------------------------------------------------------------------------------------------


def test_verify_names_the_account(fake: FakeBluesky, publisher: BlueskyPublisher) -> None:
    assert publisher.verify() == f"@{HANDLE} ({DID})"
    assert fake.calls("com.atproto.server.getSession") == 1


@pytest.mark.parametrize(
    ("changes", "expected", "retryable"),
    [
        ({"app_password": "wxyz-wxyz-wxyz-wxyz"}, "Invalid identifier or password", False),
        ({"handle": "nobody.bsky.social"}, "Invalid identifier or password", False),
        ({"service": "down"}, "could not reach Bluesky", True),
    ],
    ids=["password", "handle", "unreachable"],
)
def test_verify_says_what_is_wrong(
    make_publisher: Callable[..., BlueskyPublisher], changes: dict[str, str], expected: str, retryable: bool
) -> None:
    if changes.get("service") == "down":
        changes = {"service": f"http://127.0.0.1:{free_port()}"}

    with pytest.raises(PublishError) as caught:
        make_publisher(**changes).verify()

    assert expected in caught.value.message
    assert caught.value.retryable is retryable
    assert caught.value.channel == CHANNEL
    assert "\n" not in str(caught.value)
