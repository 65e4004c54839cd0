"""The social commands as staff use them: channels in config.yaml, check, preview, posts, channels
test, post-now, outbox resolve; every mistake gets one line naming what to fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from imk_outreach.config import load_settings
from imk_outreach.errors import ConfigErrors
from imk_outreach.services import social_queue
from tests.support.items import days_before, store_items
from tests.support.social import file_channel, write_social_campaign
from tests.support.subscribers import run_cli

SOURCES = [{"name": "manual", "type": "rss", "url": "feed.xml", "language": "de", "tags": ["iot"]}]
X_CREDENTIALS = {
    key: "${IMK_T_X_" + key.upper() + "}"
    for key in ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
}


def _write(tmp_path: Path, channels: list[dict[str, Any]], campaign: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"database_url": f"sqlite:///{tmp_path / 'x.db'}", "sources": SOURCES, "channels": channels}
        ),
        encoding="utf-8",
    )
    if campaign is not None:
        (tmp_path / "campaigns").mkdir(exist_ok=True)
        (tmp_path / "campaigns" / f"{campaign['name']}.yaml").write_text(
            json.dumps(campaign), encoding="utf-8"
        )
    return path


def _errors(path: Path) -> str:
    with pytest.raises(ConfigErrors) as caught:
        load_settings(path)
    return str(caught.value)


def test_a_credential_written_as_a_value_is_refused_naming_the_key_and_variable(tmp_path: Path) -> None:
    channel = {
        "name": "x-de",
        "type": "x",
        "language": "de",
        "credentials": {**X_CREDENTIALS, "access_token": "abc123"},
    }
    text = _errors(_write(tmp_path, [channel]))
    assert "channels[0].credentials.access_token" in text
    assert "${IMK_X_DE_ACCESS_TOKEN}" in text
    assert "abc123" not in text  # the secret is not repeated in the error


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ({"name": "x-de", "type": "x", "language": "de"}, "needs credentials"),
        (
            {"name": "m", "type": "mastodon", "language": "de", "credentials": {"access_token": "${T}"}},
            "needs base_url",
        ),
        (
            {
                "name": "l",
                "type": "linkedin",
                "credentials": {"access_token": "${T}"},
                "author": "urn:li:organization:1",
            },
            "needs api_version",
        ),
        (
            {
                "name": "l",
                "type": "linkedin",
                "credentials": {"access_token": "${T}"},
                "author": "urn:li:organization:1",
                "api_version": "2024-11",
            },
            "YYYYMM",
        ),
        ({"name": "f", "type": "file", "path": "p.jsonl", "slots": ["Tus 10:00"]}, "unknown weekday 'Tus'"),
        ({"name": "f", "type": "file", "path": "p.jsonl", "slots": ["Tue 25:00"]}, "no such time of day"),
        (
            {"name": "f", "type": "file", "path": "p.jsonl", "language": "fr"},
            "language 'fr' is not one of de, en, both",
        ),
        ({"name": "f", "type": "telegram", "path": "p.jsonl"}, "channels[0].type"),
        ({"name": "f", "type": "file", "path": "p.jsonl", "daily_cap": 0}, "daily_cap"),
    ],
)
def test_channel_mistakes_name_the_key(tmp_path: Path, channel: dict[str, Any], expected: str) -> None:
    assert expected in _errors(_write(tmp_path, [channel]))


def test_two_channels_of_one_name_are_refused(tmp_path: Path) -> None:
    assert "used twice" in _errors(_write(tmp_path, [file_channel(tmp_path), file_channel(tmp_path)]))


def test_check_fails_when_a_channel_variable_is_not_set(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    for key in X_CREDENTIALS.values():
        monkeypatch.delenv(key[2:-1], raising=False)
    settings = load_settings(
        _write(tmp_path, [{"name": "x-de", "type": "x", "language": "de", "credentials": X_CREDENTIALS}])
    )
    code, out, err = run_cli(settings, capsys, "check")
    assert code == 1
    assert "IMK_T_X_CONSUMER_KEY" in out + err and "channel x-de cannot post" in out + err
    for key in X_CREDENTIALS.values():
        monkeypatch.setenv(key[2:-1], "set")
    assert run_cli(settings, capsys, "check")[0] == 0


def test_check_fails_on_a_template_whose_fixed_text_is_too_long(tmp_path: Path, capsys: Any) -> None:
    settings = load_settings(_write(tmp_path, [file_channel(tmp_path)]))
    write_social_campaign(tmp_path, ["x-de"], name="p", template="social/long.j2")
    (tmp_path / "templates" / "social").mkdir(parents=True)
    (tmp_path / "templates" / "social" / "long.j2").write_text(
        "Werbung " * 40 + "{{ item.link }}\n", encoding="utf-8"
    )
    code, out, err = run_cli(settings, capsys, "check")
    assert code == 1
    assert "social/long.j2" in out + err and "x" in out + err and "280" in out + err


def test_preview_posts_status_and_post_now_as_staff_see_them(tmp_path: Path, capsys: Any) -> None:
    settings = load_settings(_write(tmp_path, [file_channel(tmp_path, slots=["Tue 10:00"])]))
    write_social_campaign(tmp_path, ["x-de"], name="p")
    now = datetime.now(UTC)
    store_items(settings, days_before(now, 2), now)
    code, out, _ = run_cli(settings, capsys, "preview", "p")
    assert code == 0
    assert out.count("/280 (x: weighted, URLs 23)") == 2
    assert "Meldung 1" in out and "Upcoming posts: none" in out
    report = social_queue.send_social(settings, "p", now)
    assert report.queued == 2
    code, out, _ = run_cli(settings, capsys, "posts")
    assert code == 0 and "x-de: 2 waiting" in out
    first = min(q.at for q in report.posts)
    assert first > now and first - now <= timedelta(days=7)
    listed = json.loads(run_cli(settings, capsys, "posts", "--json")[1])
    ids = [row["id"] for row in listed["x-de"]]
    assert run_cli(settings, capsys, "post-now", str(ids[1]))[0] == 0
    code, out, _ = run_cli(settings, capsys, "deliver")
    assert "posts: sent 1" in out
    code, _, err = run_cli(settings, capsys, "post-now", "999")
    assert code == 1 and "no social post 999" in err
    code, _, err = run_cli(settings, capsys, "outbox", "resolve", str(ids[0]), "sent")
    assert code == 1 and "only a post whose outcome is unknown" in err
    with pytest.raises(SystemExit) as usage:
        run_cli(settings, capsys, "outbox", "resolve", str(ids[0]), "maybe")
    assert usage.value.code == 2


def test_channels_test_names_what_is_wrong(tmp_path: Path, capsys: Any) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be", encoding="utf-8")
    channels = [
        file_channel(tmp_path),
        {**file_channel(tmp_path, "broken"), "path": str(blocked / "p.jsonl")},
    ]
    settings = load_settings(_write(tmp_path, channels))
    code, out, _ = run_cli(settings, capsys, "channels", "test", "x-de")
    assert code == 0 and "x-de: ok" in out
    code, out, _ = run_cli(settings, capsys, "channels", "test", "broken")
    assert code == 1 and "broken:" in out and str(blocked) in out
    code, _, err = run_cli(settings, capsys, "channels", "test", "nope")
    assert code == 1 and "no channel 'nope'" in err and "x-de, broken" in err
    code, out, _ = run_cli(settings, capsys, "channels")
    assert code == 0 and "x-de (file, de): at once" in out


def test_send_shows_the_posts_asks_and_queues_a_social_campaign(tmp_path: Path, capsys: Any) -> None:
    settings = load_settings(_write(tmp_path, [file_channel(tmp_path)]))
    write_social_campaign(tmp_path, ["x-de"], name="p")
    now = datetime.now(UTC)
    store_items(settings, days_before(now, 2), now)
    code, out, _ = run_cli(settings, capsys, "send", "p", "--dry-run")
    assert code == 0 and "Send p: 2 posts" in out and "Dry run" in out
    assert social_queue.upcoming(settings)["x-de"] == []
    code, _, err = run_cli(settings, capsys, "send", "p", "--test-to", "a@example.org")
    assert code == 2 and "social campaign" in err
    code, out, _ = run_cli(settings, capsys, "send", "p", "--yes")
    assert code == 0 and "2 posts queued" in out
    assert len(social_queue.upcoming(settings)["x-de"]) == 2


def test_deliver_says_when_a_channel_cannot_post_and_exits_1(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("IMK_T_MASTO", raising=False)
    channel = {
        "name": "m",
        "type": "mastodon",
        "language": "de",
        "base_url": "http://127.0.0.1:9",
        "credentials": {"access_token": "${IMK_T_MASTO}"},
    }
    settings = load_settings(_write(tmp_path, [channel]))
    write_social_campaign(tmp_path, ["m"], name="p")
    now = datetime.now(UTC)
    store_items(settings, days_before(now, 1), now)
    social_queue.send_social(settings, "p", now)
    code, out, _ = run_cli(settings, capsys, "deliver")
    assert code == 1 and "IMK_T_MASTO" in out and "its posts wait" in out
    (row,) = social_queue.upcoming(settings)["m"]
    assert (row.state, row.attempts) == ("queued", 0)


def test_a_failed_post_can_be_given_another_try(tmp_path: Path, capsys: Any) -> None:
    from imk_outreach.db import store
    from imk_outreach.services.database import engine_for

    settings = load_settings(_write(tmp_path, [file_channel(tmp_path)]))
    write_social_campaign(tmp_path, ["x-de"], name="p")
    now = datetime.now(UTC)
    store_items(settings, days_before(now, 1), now)
    social_queue.send_social(settings, "p", now)
    (row,) = social_queue.upcoming(settings)["x-de"]
    with engine_for(settings).begin() as conn:
        store.settle_post(conn, row.id, "failed", now, error="HTTP 401: revoked")
    code, out, err = run_cli(settings, capsys, "outbox", "resolve", str(row.id), "retry", "--by", "anna")
    assert code == 0 and "retry" in out, err
    assert run_cli(settings, capsys, "deliver")[0] == 0
    assert len((tmp_path / "x-de.jsonl").read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (
            {"name": "x", "type": "x", "credentials": X_CREDENTIALS, "handle": "h"},
            "handle is not a key of x channels",
        ),
        (
            {
                "name": "m",
                "type": "mastodon",
                "base_url": "https://m.example",
                "credentials": {"access_token": "${T}"},
                "rules": "x",
            },
            "rules is only for file channels",
        ),
    ],
)
def test_keys_of_another_type_are_refused(tmp_path: Path, channel: dict[str, Any], expected: str) -> None:
    assert expected in _errors(_write(tmp_path, [channel]))


def test_an_unquoted_linkedin_version_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database_url: sqlite:///{tmp_path / 'x.db'}\nsources: [{{name: a, type: rss, url: a.xml}}]\n"
        "channels:\n  - {name: li, type: linkedin, author: 'urn:li:organization:1', api_version: 202511,\n"
        "     credentials: {access_token: '${IMK_T_LI}'}}\n",
        encoding="utf-8",
    )
    assert load_settings(path).channels[0].api_version == "202511"


def test_a_wrong_template_of_one_platform_is_one_clear_error(tmp_path: Path, capsys: Any) -> None:
    settings = load_settings(_write(tmp_path, [file_channel(tmp_path)]))
    write_social_campaign(tmp_path, ["x-de"], name="p", template={"x": "social/nope.j2"})
    code, out, err = run_cli(settings, capsys, "check")
    lines = [line for line in (out + err).splitlines() if "template" in line]
    assert code == 1 and len(lines) == 1 and "x: template 'social/nope.j2' not found" in lines[0]
