"""Social posts through the outbox: queueing at slots within the daily cap, approval pinned to the
posts, idempotent queueing, post-now, delivery to a file channel, the new_items trigger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from imk_outreach.config import Settings
from imk_outreach.services import compose, social_queue
from imk_outreach.services.compose import EditionError
from imk_outreach.services.social_delivery import deliver_posts
from tests.support.items import days_before, store_items
from tests.support.social import file_channel

# A Monday, 08:00 in Berlin (07:00 UTC)
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SOURCES = [{"name": "manual", "type": "rss", "url": "feed.xml", "language": "de", "tags": ["iot"]}]


def _channel(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    return file_channel(tmp_path, name, **extra)


def _settings(
    make_settings: Any,
    tmp_path: Path,
    channels: list[dict[str, Any]],
    approval: str = "auto",
    **campaign: Any,
) -> Settings:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "name": "iot-posts",
        "kind": "social",
        "channels": [c["name"] for c in channels],
        "trigger": "new_items",
        "select": {"sources": ["manual"], "since": "30d"},
        "approval": approval,
        **campaign,
    }
    data = {key: value for key, value in data.items() if value is not None}
    (folder / "iot-posts.yaml").write_text(json.dumps(data), encoding="utf-8")
    return make_settings(SOURCES, channels=channels)  # type: ignore[no-any-return]


def test_posts_take_the_next_free_weekly_slots_in_local_time(make_settings: Any, tmp_path: Path) -> None:
    channel = _channel(tmp_path, "x-de", slots=["Tue 10:00", "Thu 15:00"])
    settings = _settings(make_settings, tmp_path, [channel])
    store_items(settings, days_before(NOW, 3), NOW)
    report = social_queue.send_social(settings, "iot-posts", NOW)
    assert report.queued == 3
    times = sorted(q.at for q in report.posts)
    # Tue 24 Nov 10:00 CET = 09:00 UTC, Thu 26 Nov 15:00 CET = 14:00 UTC, Tue 1 Dec 10:00 = 09:00 UTC
    assert times == [
        datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 14, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    ]
    # nothing is due yet: delivering now publishes nothing
    assert deliver_posts(settings, now=NOW).handled == 0
    # a new item later takes the next slot still free, after the three
    store_items(settings, [NOW - timedelta(hours=1)], NOW, prefix="late")
    later = social_queue.send_social(settings, "iot-posts", NOW + timedelta(minutes=5))
    assert [q.at for q in later.posts if q.added] == [datetime(2026, 12, 3, 14, 0, tzinfo=UTC)]


def test_slots_follow_daylight_saving_time(make_settings: Any, tmp_path: Path) -> None:
    summer = datetime(2026, 7, 6, 6, 0, tzinfo=UTC)  # a Monday in CEST
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de", slots=["Tue 10:00"])])
    store_items(settings, [summer - timedelta(days=1)], summer)
    report = social_queue.send_social(settings, "iot-posts", summer)
    assert [q.at for q in report.posts] == [datetime(2026, 7, 7, 8, 0, tzinfo=UTC)]


def test_without_slots_posts_go_at_once_and_the_daily_cap_moves_the_rest(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de", daily_cap=2)])
    store_items(settings, days_before(NOW, 5), NOW)
    report = social_queue.send_social(settings, "iot-posts", NOW)
    days = sorted(q.at for q in report.posts)
    assert days[:2] == [NOW, NOW]
    # the next day with room, from 09:00 local (08:00 UTC in winter), two a day
    assert days[2:] == [datetime(2026, 11, 24, 8, 0, tzinfo=UTC)] * 2 + [
        datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    ]
    sent = deliver_posts(settings, now=NOW)
    assert (sent.sent, sent.deferred) == (2, 0)
    lines = (tmp_path / "x-de.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    upcoming = social_queue.upcoming(settings)["x-de"]
    assert [row.next_attempt_at for row in upcoming] == days[2:]


def test_the_cap_holds_at_send_time_and_post_now_overrides_it(make_settings: Any, tmp_path: Path) -> None:
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de", daily_cap=1)])
    store_items(settings, days_before(NOW, 2), NOW)
    report = social_queue.send_social(settings, "iot-posts", NOW)
    waiting = max(report.posts, key=lambda q: q.at)
    assert deliver_posts(settings, now=NOW).sent == 1
    row = next(r for r in social_queue.upcoming(settings)["x-de"])
    assert row.next_attempt_at == waiting.at  # tomorrow
    social_queue.post_now(settings, row.id, NOW + timedelta(minutes=1))
    assert deliver_posts(settings, now=NOW + timedelta(minutes=2)).sent == 1
    assert len((tmp_path / "x-de.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    with pytest.raises(social_queue.PostError, match="only a waiting"):
        social_queue.post_now(settings, row.id, NOW)


def test_queueing_twice_adds_nothing_and_each_post_goes_once(make_settings: Any, tmp_path: Path) -> None:
    channels = [_channel(tmp_path, "x-de"), _channel(tmp_path, "masto", rules="mastodon", language="both")]
    settings = _settings(make_settings, tmp_path, channels)
    store_items(settings, days_before(NOW, 2), NOW)
    first = social_queue.send_social(settings, "iot-posts", NOW)
    assert first.queued == 4  # 2 items x 2 channels
    with pytest.raises(EditionError, match="nothing to post"):
        social_queue.send_social(settings, "iot-posts", NOW)
    assert deliver_posts(settings, now=NOW).sent == 4
    assert deliver_posts(settings, now=NOW).handled == 0
    edition = compose.get_edition(settings, first.edition.id)
    assert edition.state == "sent"
    x_lines = [json.loads(line) for line in (tmp_path / "x-de.jsonl").read_text().splitlines()]
    assert sorted(line["post_key"] for line in x_lines) == ["i1", "i2"]
    assert all(line["length"] <= 280 for line in x_lines)
    masto = [json.loads(line) for line in (tmp_path / "masto.jsonl").read_text().splitlines()]
    assert {line["language"] for line in masto} == {"both"}


def test_approval_is_pinned_to_the_posts(make_settings: Any, tmp_path: Path) -> None:
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de")], approval="required")
    store_items(settings, days_before(NOW, 1), NOW)
    with pytest.raises(EditionError, match="waits for approval"):
        social_queue.send_social(settings, "iot-posts", NOW)
    draft = compose.edition_id_for(settings, "iot-posts")
    compose.approve(settings, draft, by="anna", now=NOW)
    # the template changes after approval: the posts differ, so the approval is void
    templates = tmp_path / "templates" / "social"
    templates.mkdir(parents=True)
    (templates / "x.j2").write_text("Neu: {{ item.title[languages[0]] }} {{ item.link }}\n", encoding="utf-8")
    fresh = settings.model_copy()
    from imk_outreach.services.rendering import template_env

    template_env(fresh, fresh=True)
    with pytest.raises(EditionError, match="approval of edition .* is void"):
        social_queue.send_social(fresh, "iot-posts", NOW)
    compose.approve(fresh, draft, by="anna", now=NOW)
    assert social_queue.send_social(fresh, "iot-posts", NOW).queued == 1


def test_post_new_items_queues_auto_campaigns_and_leaves_drafts(make_settings: Any, tmp_path: Path) -> None:
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de")], approval="required")
    store_items(settings, days_before(NOW, 2), NOW)
    campaigns = compose.load_campaigns(settings)[0]
    outcomes = social_queue.post_new_items(settings, campaigns, NOW)
    assert [(o.campaign, o.queued, o.waiting) for o in outcomes] == [("iot-posts", 0, 2)]
    assert social_queue.upcoming(settings)["x-de"] == []


def test_a_post_in_flight_when_the_worker_died_is_never_posted_blindly(
    make_settings: Any, tmp_path: Path
) -> None:
    from imk_outreach.db import store
    from imk_outreach.services.database import engine_for

    x = {
        "name": "x-real",
        "type": "x",
        "language": "de",
        "credentials": {
            k: "${IMK_TEST_X_" + k.upper() + "}"
            for k in ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
        },
    }
    settings = _settings(make_settings, tmp_path, [_channel(tmp_path, "x-de"), x])
    store_items(settings, days_before(NOW, 1), NOW)
    social_queue.send_social(settings, "iot-posts", NOW)
    engine = engine_for(settings)
    claimed = []
    for _ in range(2):
        with engine.begin() as conn:
            claimed.append(store.claim_post(conn, "dead", NOW, NOW + timedelta(seconds=30)))
    for row in claimed:
        assert row is not None
        with engine.begin() as conn:
            store.mark_posting(conn, row.id, "dead", NOW)
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        deliver_posts(settings, now=NOW + timedelta(minutes=5), limit=0)
    states = {row.channel: row.state for rows in social_queue.upcoming(settings).values() for row in rows}
    assert states["x-real"] == "unknown"  # X has no idempotency key: a person decides
    assert states["x-de"] == "retry"  # the file channel is idempotent: retried by itself
    unknown = next(r for r in social_queue.upcoming(settings)["x-real"])
    resolved = social_queue.resolve(settings, unknown.id, "sent", by="anna", now=NOW + timedelta(minutes=6))
    assert resolved.state == "sent" and "resolved as sent by anna" in (resolved.reply or "")
    with pytest.raises(social_queue.PostError, match="only a post whose outcome is unknown"):
        social_queue.resolve(settings, unknown.id, "retry", by="anna")


def test_a_scheduled_social_campaign_makes_one_digest_post_per_channel(
    make_settings: Any, tmp_path: Path
) -> None:
    from imk_outreach.services import dispatch

    channels = [_channel(tmp_path, "x-de"), _channel(tmp_path, "masto", rules="mastodon", language="both")]
    settings = _settings(make_settings, tmp_path, channels, trigger=None, schedule={"cron": "0 10 * * fri"})
    store_items(settings, days_before(NOW, 3), NOW)
    report = dispatch.send(settings, "iot-posts", NOW)  # send works for both kinds
    assert report.queued == 2
    sent = deliver_posts(settings, now=NOW)
    assert sent.sent == 2
    (x_post,) = [json.loads(line) for line in (tmp_path / "x-de.jsonl").read_text().splitlines()]
    assert x_post["post_key"] == "digest"
    assert all(f"Meldung {n}" in x_post["text"] for n in (1, 2, 3))
    assert x_post["length"] <= 280
