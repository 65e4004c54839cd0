"""Publishing posts from the outbox with the real client libraries against local platform servers:
rate limits and server errors defer (the outbox owns the timing), a refused credential pauses only its
channel until ``channels test`` passes, a timeout is retried only where that is safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imk_outreach.config import Settings
from imk_outreach.services import channels, social_queue
from imk_outreach.services.social_delivery import deliver_posts
from tests.support.fake_mastodon import TOKEN, FakeMastodon, fake_mastodon
from tests.support.items import days_before, store_items
from tests.support.platformserver import Reply
from tests.support.social import write_social_campaign

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SOURCES = [{"name": "manual", "type": "rss", "url": "feed.xml", "language": "de", "tags": ["iot"]}]


@pytest.fixture
def mastodon() -> Any:
    with fake_mastodon() as fake:
        yield fake


def _settings(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon, timeout: float = 1.0
) -> Settings:
    monkeypatch.setenv("IMK_TEST_MASTODON_TOKEN", TOKEN)
    channels_config = [
        {
            "name": "masto",
            "type": "mastodon",
            "language": "both",
            "base_url": mastodon.base_url,
            "credentials": {"access_token": "${IMK_TEST_MASTODON_TOKEN}"},
            "timeout": timeout,
            "hashtags": {"iot": "IoT"},
        },
        {
            "name": "file-de",
            "type": "file",
            "rules": "x",
            "language": "de",
            "path": str(tmp_path / "de.jsonl"),
        },
    ]
    write_social_campaign(tmp_path, ["masto", "file-de"])
    return make_settings(SOURCES, channels=channels_config)  # type: ignore[no-any-return]


def _rows(settings: Settings, channel: str) -> list[social_queue.PostRow]:
    return [
        row for rows in social_queue.upcoming(settings).values() for row in rows if row.channel == channel
    ]


def test_posts_reach_mastodon_once_with_the_rendered_text(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon)
    store_items(settings, days_before(NOW, 2), NOW)
    social_queue.send_social(settings, "posts", NOW)
    report = deliver_posts(settings, now=NOW)
    assert (report.sent, report.failed) == (4, 0)
    texts = sorted(status["content"] for status in mastodon.statuses)
    assert len(texts) == 2 and "Meldung 1" in texts[0] and "#IoT" in texts[0]
    keys = [r.header("Idempotency-Key") for r in mastodon.server.requests_to("POST", r"/api/v1/statuses")]
    assert len(set(keys)) == 2 and all(keys)
    sent = social_queue.recent_posts(settings)
    assert {row.remote_url for row in sent if row.channel == "masto"} == {s["url"] for s in mastodon.statuses}


def test_a_rate_limit_defers_the_post_by_retry_after_and_nothing_is_lost(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon)
    store_items(settings, days_before(NOW, 1), NOW)
    social_queue.send_social(settings, "posts", NOW)
    mastodon.server.fail(
        "POST", r"/api/v1/statuses", Reply(429, {"error": "Too many requests"}, {"Retry-After": "600"})
    )
    report = deliver_posts(settings, now=NOW)
    assert (report.sent, report.retry) == (1, 1)  # the file channel went on
    (waiting,) = _rows(settings, "masto")
    assert waiting.state == "retry" and waiting.next_attempt_at >= NOW + timedelta(seconds=600)
    assert deliver_posts(settings, now=NOW + timedelta(seconds=300)).handled == 0  # not before its time
    assert deliver_posts(settings, now=NOW + timedelta(seconds=601)).sent == 1
    assert len(mastodon.statuses) == 1


def test_server_errors_retry_with_back_off_until_max_attempts(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon)
    store_items(settings, days_before(NOW, 1), NOW)
    social_queue.send_social(settings, "posts", NOW)
    mastodon.server.fail("POST", r"/api/v1/statuses", Reply(503, "<html>busy</html>"), times=20)
    moment = NOW
    for _ in range(8):
        deliver_posts(settings, now=moment)
        moment += timedelta(hours=7)
    rows = [r for r in social_queue.recent_posts(settings) if r.channel == "masto"]
    assert [r.state for r in rows] == ["failed"] and "gave up after 8 attempts" in (rows[0].error or "")


def test_a_timeout_on_mastodon_is_retried_with_the_same_key_and_posts_once(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon, timeout=0.5)
    store_items(settings, days_before(NOW, 1), NOW)
    social_queue.send_social(settings, "posts", NOW)
    mastodon.lag_next_status(3.0)  # created, but the answer comes too late
    assert deliver_posts(settings, now=NOW).retry == 1
    mastodon.release()
    assert deliver_posts(settings, now=NOW + timedelta(hours=1)).sent == 1
    assert len(mastodon.statuses) == 1


def test_a_revoked_token_pauses_only_its_channel_until_channels_test_passes(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon)
    store_items(settings, days_before(NOW, 2), NOW)
    social_queue.send_social(settings, "posts", NOW)
    mastodon.revoke()
    report = deliver_posts(settings, now=NOW)
    assert (
        report.paused == {"masto": "HTTP 401: The access token was revoked"}
        or "revoked" in report.paused["masto"]
    )
    assert report.sent == 2  # the file channel's two posts went out
    assert report.failed == 1  # the first Mastodon post, with the platform's message
    assert "masto" in channels.paused(settings)
    (waiting,) = _rows(settings, "masto")
    assert waiting.state == "queued"  # the second waits, untried
    check = channels.test_channel(settings, "masto", NOW)
    assert not check.ok and "revoked" in check.message
    assert deliver_posts(settings, now=NOW + timedelta(minutes=1)).handled == 0  # still paused
    mastodon.restore()
    check = channels.test_channel(settings, "masto", NOW)
    assert check.ok and "@cluster_imk" in check.message and check.was_paused
    assert channels.paused(settings) == {}
    assert deliver_posts(settings, now=NOW + timedelta(minutes=2)).sent == 1
    assert len(mastodon.statuses) == 1


def test_an_unset_credential_holds_the_channel_and_loses_nothing(
    make_settings: Any, tmp_path: Path, monkeypatch: Any, mastodon: FakeMastodon
) -> None:
    settings = _settings(make_settings, tmp_path, monkeypatch, mastodon)
    store_items(settings, days_before(NOW, 1), NOW)
    social_queue.send_social(settings, "posts", NOW)
    monkeypatch.delenv("IMK_TEST_MASTODON_TOKEN")
    from imk_outreach.config import load_settings

    unset = load_settings(settings.config_path)
    report = deliver_posts(unset, now=NOW)
    assert report.sent == 1 and any("IMK_TEST_MASTODON_TOKEN" in line for line in report.lines)
    (waiting,) = _rows(unset, "masto")
    assert (waiting.state, waiting.attempts) == ("queued", 0)
    monkeypatch.setenv("IMK_TEST_MASTODON_TOKEN", TOKEN)
    assert deliver_posts(load_settings(settings.config_path), now=NOW).sent == 1


def _x_settings(make_settings: Any, tmp_path: Path, monkeypatch: Any, server_url: str) -> Settings:
    from tests.support import fake_x

    secrets = {
        "consumer_key": fake_x.CONSUMER_KEY,
        "consumer_secret": fake_x.CONSUMER_SECRET,
        "access_token": fake_x.ACCESS_TOKEN,
        "access_token_secret": fake_x.ACCESS_TOKEN_SECRET,
    }
    for key, value in secrets.items():
        monkeypatch.setenv(f"IMK_TEST_X_{key.upper()}", value)
    channel = {
        "name": "x-de",
        "type": "x",
        "language": "de",
        "base_url": server_url,
        "timeout": 0.5,
        "credentials": {key: "${IMK_TEST_X_" + key.upper() + "}" for key in secrets},
    }
    write_social_campaign(tmp_path, ["x-de"])
    return make_settings(SOURCES, channels=[channel])  # type: ignore[no-any-return]


def test_a_timeout_on_x_leaves_the_post_unknown_for_staff_never_retried_blindly(
    make_settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from tests.support.fake_x import FakeX
    from tests.support.platformserver import PlatformServer

    with PlatformServer() as server:
        fake = FakeX(server)
        settings = _x_settings(make_settings, tmp_path, monkeypatch, server.url)
        store_items(settings, days_before(NOW, 2), NOW)
        social_queue.send_social(settings, "posts", NOW)
        server.stall("POST", r"/2/tweets", seconds=2.0)
        report = deliver_posts(settings, now=NOW)
        assert (report.unknown, report.sent) == (1, 1)
        (unknown,) = [r for r in _rows(settings, "x-de") if r.state == "unknown"]
        assert "outbox resolve" in (unknown.error or "")
        # nothing more is tried on its own, however late
        assert deliver_posts(settings, now=NOW + timedelta(days=3)).handled == 0
        assert len(fake.tweets) == 1
        social_queue.resolve(settings, unknown.id, "retry", by="anna", now=NOW + timedelta(days=3))
        assert deliver_posts(settings, now=NOW + timedelta(days=3)).sent == 1
        assert len(fake.tweets) == 2


def test_x_refusing_duplicate_content_means_the_post_is_there(
    make_settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from tests.support.fake_x import FakeX
    from tests.support.platformserver import PlatformServer

    with PlatformServer() as server:
        fake = FakeX(server)
        settings = _x_settings(make_settings, tmp_path, monkeypatch, server.url)
        store_items(settings, days_before(NOW, 1), NOW)
        report = social_queue.send_social(settings, "posts", NOW)
        from imk_outreach.publishers.x import XOptions, XPublisher

        publisher = XPublisher(
            XOptions(
                "x-de",
                *(fake_secret for fake_secret in _secrets()),
                api_base=server.url,
                upload_base=server.url,
            )
        )
        publisher.publish(report.posts[0].post, "earlier")  # posted before, e.g. by a run that crashed
        publisher.close()
        sent = deliver_posts(settings, now=NOW)
        assert (sent.sent, sent.failed) == (1, 0)
        assert len(fake.tweets) == 1
        (row,) = [r for r in social_queue.recent_posts(settings) if r.channel == "x-de"]
        assert row.state == "sent" and "duplicate" in (row.reply or "").lower()


def _secrets() -> tuple[str, str, str, str]:
    from tests.support import fake_x

    return (fake_x.CONSUMER_KEY, fake_x.CONSUMER_SECRET, fake_x.ACCESS_TOKEN, fake_x.ACCESS_TOKEN_SECRET)


def test_bluesky_signs_in_once_and_later_runs_resume_the_stored_session(
    make_settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from tests.support.fake_bluesky import HANDLE, PASSWORD, fake_bluesky

    with fake_bluesky() as fake:
        monkeypatch.setenv("IMK_TEST_BSKY_PASSWORD", PASSWORD)
        channel = {
            "name": "bsky",
            "type": "bluesky",
            "language": "de",
            "handle": HANDLE,
            "base_url": fake.url,
            "timeout": 1,
            "credentials": {"app_password": "${IMK_TEST_BSKY_PASSWORD}"},
        }
        write_social_campaign(tmp_path, ["bsky"])
        settings = make_settings(SOURCES, channels=[channel])
        store_items(settings, days_before(NOW, 2), NOW)
        social_queue.send_social(settings, "posts", NOW)
        assert deliver_posts(settings, now=NOW, limit=1).sent == 1  # one run, one process
        assert deliver_posts(settings, now=NOW).sent == 1  # the next run: the stored session
        assert channels.test_channel(settings, "bsky").ok
        assert fake.calls("com.atproto.server.createSession") == 1
        assert len(fake.posts) == 2
        # the link as a facet, the item's link card as an external embed
        assert all(
            post["facets"] and post["embed"]["$type"] == "app.bsky.embed.external" for post in fake.posts
        )


def test_linkedin_uses_the_configured_version_and_a_stale_one_pauses_with_a_hint(
    make_settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from tests.support.fake_linkedin import ORGANIZATION_ID, FakeLinkedIn
    from tests.support.fake_linkedin import TOKEN as LI_TOKEN

    with FakeLinkedIn(active_versions=("202510",)) as fake:
        monkeypatch.setenv("IMK_TEST_LI_TOKEN", LI_TOKEN)

        def configured(version: str) -> Settings:
            channel = {
                "name": "li",
                "type": "linkedin",
                "language": "both",
                "author": f"urn:li:organization:{ORGANIZATION_ID}",
                "api_version": version,
                "base_url": fake.url,
                "timeout": 1,
                "credentials": {"access_token": "${IMK_TEST_LI_TOKEN}"},
            }
            write_social_campaign(tmp_path, ["li"])
            return make_settings(SOURCES, channels=[channel])  # type: ignore[no-any-return]

        stale = configured("202301")
        store_items(stale, days_before(NOW, 2), NOW)
        social_queue.send_social(stale, "posts", NOW)
        report = deliver_posts(stale, now=NOW)
        assert report.failed == 1 and "api_version" in report.paused["li"]
        assert not channels.test_channel(stale, "li").ok
        current = configured("202510")
        assert channels.test_channel(current, "li").ok
        assert deliver_posts(current, now=NOW).sent == 1
        versions = {r.header("LinkedIn-Version") for r in fake.requests_to("POST", r"/rest/posts")}
        assert versions == {"202301", "202510"}
        assert len(fake.posts) == 1
