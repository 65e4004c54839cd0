"""Publishing posts from the outbox with the real client libraries against local platform servers:
rate limits and server errors defer (the outbox owns the timing), a refused credential pauses only its
channel until ``channels test`` passes, a timeout is retried only where that is safe."""

from __future__ import annotations

import json
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
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    campaign = {
        "name": "posts",
        "kind": "social",
        "channels": ["masto", "file-de"],
        "trigger": "new_items",
        "select": {"sources": ["manual"]},
        "approval": "auto",
    }
    (tmp_path / "campaigns" / "posts.yaml").write_text(json.dumps(campaign), encoding="utf-8")
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
