"""One duration parser for config keys, campaign keys and command-line flags."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest

from imk_outreach import cli
from imk_outreach.campaigns import CampaignContext, load_campaign
from imk_outreach.config import load_settings
from imk_outreach.durations import parse_duration, seconds_argument, to_seconds, to_timedelta
from imk_outreach.errors import ConfigErrors

SOURCES = "sources:\n  - {name: iot, type: rss, url: feeds/iot.xml}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text + SOURCES, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20s", 20.0), ("1.5h", 5400.0), ("1h30m", 5400.0), ("2", 2.0), ("0.25", 0.25), ("1 M", 60.0)],
)
def test_to_seconds(text: str, expected: float) -> None:
    assert to_seconds(text) == expected


def test_numbers_are_seconds_only_where_asked() -> None:
    assert to_timedelta(20) == timedelta(seconds=20)
    assert to_timedelta(2.5) == timedelta(seconds=2.5)
    with pytest.raises(ValueError, match=r"'7' is not a duration \(use e.g. 30m, 2h, 7d, 1w\)"):
        to_timedelta("7", seconds_if_plain=False)
    with pytest.raises(ValueError, match="expected a duration"):
        to_timedelta(True)
    assert parse_duration("1.5d") == timedelta(hours=36)


@pytest.mark.parametrize(
    ("text", "smtp", "gather"),
    [
        ("smtp: {timeout: 20s}\ngather: {timeout: 1m}\n", 20.0, 60.0),
        ("smtp: {timeout: 12.5}\ngather: {timeout: 7}\n", 12.5, 7.0),
        ("smtp: {timeout: '1m30s'}\n", 90.0, 20.0),
    ],
)
def test_timeouts_take_durations_and_numbers(tmp_path: Path, text: str, smtp: float, gather: float) -> None:
    settings = load_settings(write(tmp_path, text))
    assert (settings.smtp.timeout, settings.gather.timeout) == (smtp, gather)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "smtp: {timeout: soon}\n",
            ":1:8: smtp.timeout: 'soon' is not a duration (use e.g. 20s, 1.5 (seconds) or 2m)",
        ),
        ("gather: {timeout: 0s}\n", ":1:10: gather.timeout: Input should be greater than 0"),
        ("smtp: {lease: 30x}\n", ":1:8: smtp.lease: '30x' is not a duration (use e.g. 30m, 2h, 7d, 1w)"),
    ],
)
def test_bad_durations_name_the_key_and_give_an_example(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        load_settings(path)
    assert [str(e) for e in info.value.errors] == [f"{path}{expected}"]


def test_every_duration_key_of_the_config_takes_seconds_units(tmp_path: Path) -> None:
    text = (
        "smtp: {lease: 45s, stop_grace: 2s, retry: {base_delay: 30s, max_delay: 1h}}\n"
        "scheduler: {tick: 10s, reload: 2s, heartbeat: 3s, standby_poll: 4s, stop_timeout: 6s}\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.smtp.lease == timedelta(seconds=45) and settings.smtp.retry.max_delay == timedelta(
        hours=1
    )
    assert settings.scheduler.stop_timeout == timedelta(seconds=6)


def _ctx() -> CampaignContext:
    return CampaignContext(
        languages=("de",),
        lists=frozenset({"newsletter"}),
        sources=frozenset(),
        tags=frozenset({"iot"}),
        template_exists=lambda name: True,
        canonicalize=lambda url: url,
    )


def test_campaign_durations_take_seconds_too_and_a_number_names_its_missing_unit(tmp_path: Path) -> None:
    path = tmp_path / "digest.yaml"
    body = "subject: {de: D}\nsections:\n  - {id: a, heading: {de: A}, select: {tags: [iot], since: %s}}\n"
    path.write_text("grace: 90s\n" + body % "36h", "utf-8")
    campaign = load_campaign(path, _ctx())
    assert campaign.grace == timedelta(seconds=90) and campaign.sections[0].select.since == timedelta(
        hours=36
    )
    path.write_text("grace: 90s\n" + body % "7", "utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_campaign(path, _ctx())
    [error] = info.value.errors
    assert error.key_path == "sections[0].select.since" and "7 has no unit; write e.g. 7d, 7h or 7m" in str(
        error
    )


def test_worker_poll_takes_seconds_or_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["worker", "--poll", "2"]).poll == 2.0
    assert parser.parse_args(["worker", "--poll", "20s"]).poll == 20.0
    assert parser.parse_args(["worker", "--poll", "1m"]).poll == 60.0
    assert parser.parse_args(["worker"]).poll == 1.0
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["worker", "--poll", "soon"])
    assert info.value.code == 2
    assert "--poll: 'soon' is not a duration (use e.g. 20s, 1.5 (seconds) or 2m)" in capsys.readouterr().err


def test_seconds_argument_refuses_zero() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="longer than zero"):
        seconds_argument("0s")


def test_items_since_takes_any_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "")
    assert cli.main(["items", "--since", "90m", "--config", str(path)]) == 0
    assert cli.main(["items", "--since", "1.5d", "--config", str(path)]) == 0
    with pytest.raises(SystemExit):
        cli.main(["items", "--since", "soon", "--config", str(path)])
    assert "--since: 'soon' is not a duration" in capsys.readouterr().err
