"""The demo tour looks the same on any day: sample copies with shifted dates, full campaigns, mail sent."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.services import demo_samples
from imk_outreach.sources.dates import parse_date
from tests.conftest import REPO

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("suffix", "text", "days", "expected"),
    [
        (".xml", "<pubDate>Mon, 23 Nov 2026 09:15:00 +0100</pubDate>", 7, "Mon, 30 Nov 2026 09:15:00 +0100"),
        (".xml", "<lastBuildDate>5 Nov 2026 10:00 GMT</lastBuildDate>", 60, "4 Jan 2027 10:00 GMT"),
        (".atom", "<updated>2026-11-19T15:20:00+01:00</updated>", 120, "2027-03-19T15:20:00+01:00"),
        (".json", '"date_published": "2026-11-20T14:30:00+01:00"', -400, "2025-10-16T14:30:00+01:00"),
        (".yaml", "- url: x\n  published: 2026-11-17\n", 1688, "  published: 2031-07-02\n"),
        (".html", '<span class="date">20.11.2026</span>', 45, ">04.01.2027<"),
        (".html", '<span class="date">05.11.26</span>', 30, ">05.12.26<"),
        (".html", '<span class="date">Montag, 16. November 2026</span>', 3, ">Donnerstag, 19. November"),
        (".html", '<span class="date">3. November 2026</span>', 120, ">3. März 2027<"),
        (".html", '<span class="date">12. Okt. 2026</span>', 60, ">11. Dez. 2026<"),
        (".html", '<time datetime="2026-11-01">1.11.</time>', 31, 'datetime="2026-12-02"'),
    ],
)
def test_each_format_is_shifted_in_its_own_form(suffix: str, text: str, days: int, expected: str) -> None:
    assert expected in demo_samples.shift_text(suffix, text, days)


def test_words_that_are_not_dates_stay() -> None:
    html = '<span class="date">monatlich</span><p>bis zum 29. Januar 2027</p>'
    assert demo_samples.shift_text(".html", html, 100) == html
    assert demo_samples.dates_in(".html", html) == []
    assert demo_samples.shift_text(".csv", "2026-11-20", 5) == "2026-11-20"


def test_the_newest_sample_lands_yesterday_in_the_configured_zone() -> None:
    newest = date(2026, 11, 23)
    assert demo_samples.shift_days(newest, datetime(2026, 12, 1, 12, tzinfo=UTC), BERLIN) == 7
    # 23:30 UTC on 1 December is already 2 December in Berlin
    assert demo_samples.shift_days(newest, datetime(2026, 12, 1, 23, 30, tzinfo=UTC), BERLIN) == 8
    assert demo_samples.shift_days(newest, datetime(2026, 10, 1, tzinfo=UTC), BERLIN) == -54


SAMPLES = ["feeds/dehub-iot.xml", "feeds/games-xr.atom", "feeds/film-highlights.json", "pages/bfi-news.html",
           "manual/cluster-news.yaml", "manual/events.yaml"]  # fmt: skip
# Where the samples write their dates: RSS, Atom, JSON Feed, the HTML page's span.date, manual YAML.
DATE_VALUE = re.compile(r"(?:pubDate>|published>|updated>|_published\": \"|date\">|published: )([^<\"\n]+)")


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_date_still_parses_after_the_shift(name: str) -> None:
    path = REPO / "samples" / name
    text = path.read_bytes().decode("latin-1" if path.suffix == ".atom" else "utf-8")
    before = demo_samples.dates_in(path.suffix, text)
    shifted = demo_samples.shift_text(path.suffix, text, 1688)
    after = demo_samples.dates_in(path.suffix, shifted)
    assert before and [(b - a).days for a, b in zip(before, after, strict=True)] == [1688] * len(before)
    parsed = [parse_date(v, BERLIN) for v in DATE_VALUE.findall(shifted) if v != "monatlich"]
    assert parsed and all(p is not None and p.year >= 2031 for p in parsed)


def _repository_copy(tmp_path: Path) -> Path:
    for folder in ("campaigns", "samples"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    return tmp_path / "config.yaml"


def _items(out: str, campaign: str) -> int:
    found = re.search(rf"^{campaign}: (\d+) items", out, re.MULTILINE)
    assert found, out
    return int(found[1])


@pytest.mark.parametrize(
    "day",
    [
        datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 15, 23, 30, tzinfo=UTC),  # the monthly edition was skipped here before
        datetime(2027, 3, 29, 0, 30, tzinfo=UTC),  # the day after the switch to summer time
        datetime(2031, 7, 4, 12, 0, tzinfo=UTC),
        datetime(2026, 10, 1, 6, 0, tzinfo=UTC),  # before the samples were written: dates move back
    ],
    ids=lambda d: d.date().isoformat(),
)
def test_demo_tour_fills_both_campaigns_and_delivers_on_any_day(
    day: datetime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _repository_copy(tmp_path)
    committed = {p: p.read_bytes() for p in (tmp_path / "samples").rglob("*") if p.is_file()}
    with time_machine.travel(day, tick=True):  # real time moves: the tour runs a local SMTP server
        assert cli.main(["demo", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert _items(out, "film-weekly") >= 3 and _items(out, "monthly") >= 3
    assert "Nothing sent" not in out and "4 messages queued, 4 delivered" in out
    assert len(list((tmp_path / "var" / "demo" / "mail" / "new").iterdir())) == 4
    assert {p: p.read_bytes() for p in committed} == committed  # the committed samples stay as they are
    # the new BFI items: a German post for X and a bilingual post for Mastodon each, printed with lengths
    posts = tmp_path / "var" / "demo" / "posts"
    x_lines = [json.loads(line) for line in (posts / "x-de.jsonl").read_text(encoding="utf-8").splitlines()]
    masto = [json.loads(line) for line in (posts / "mastodon.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(x_lines) == len(masto) >= 2
    assert {p["language"] for p in x_lines} == {"de"} and {p["language"] for p in masto} == {"both"}
    assert all(p["length"] <= 280 and "bfi-berlin" in p["text"] for p in x_lines)
    assert out.count("/280 (x: weighted, URLs 23)") == len(x_lines)
    assert out.count("/500 (mastodon: URLs 23)") == len(masto)
    copies = tmp_path / "var" / "demo" / "samples"
    assert sorted(p.relative_to(copies) for p in copies.rglob("*.*")) == sorted(
        p.relative_to(tmp_path / "samples") for p in committed if p.suffix not in (".md", ".csv")
    )


def test_demo_mails_show_gathered_images_from_public_url_and_no_news_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The samples' image addresses are made up (*.example never resolves): the demo serves a picture
    for each from 127.0.0.1, so every item gets a stored copy and no image is left out."""
    config = _repository_copy(tmp_path)
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=True):
        assert cli.main(["demo", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "left out" not in captured.out + captured.err
    stored = list((tmp_path / "var" / "media").iterdir())
    assert len(stored) >= 20 and all(p.suffix in (".jpg", ".png") for p in stored)
    mails = [p.read_text("utf-8", "replace") for p in (tmp_path / "var" / "demo" / "mail" / "new").iterdir()]
    assert mails and all("http://127.0.0.1:8000/media/" in m.replace("=\n", "") for m in mails)
    assert not any(".example/media" in m or ".example/img" in m for m in mails)
