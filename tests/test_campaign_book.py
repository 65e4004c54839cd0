"""Campaign files re-read while a process runs: a broken file keeps its last good version."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from imk_outreach.services.campaign_book import CampaignBook
from tests.conftest import ConfigFactory

GOOD = """\
name: weekly
schedule: {cron: "0 9 * * mon"}
subject: {de: Woche, en: Week}
sections: [{id: a, heading: {de: A, en: A}, select: {since: 7d}}]
"""


def _touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_changes_are_picked_up_and_a_broken_file_keeps_its_last_good_version(
    make_settings: ConfigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    path = folder / "weekly.yaml"
    path.write_text(GOOD, "utf-8")
    settings = make_settings([{"name": "manual", "type": "manual", "url": "manual"}])
    book = CampaignBook(settings)
    assert book.refresh() is True and book.campaigns["weekly"].schedule == {"cron": "0 9 * * mon"}
    assert book.refresh() is False  # nothing changed: not even re-read

    path.write_text(GOOD.replace("mon", "tue"), "utf-8")
    _touch_later(path)
    assert book.refresh() is True and book.campaigns["weekly"].schedule == {"cron": "0 9 * * tue"}

    caplog.set_level(logging.INFO)
    path.write_text(GOOD.replace("mon", "tue") + "colour: blue\n", "utf-8")
    _touch_later(path)
    assert book.refresh() is False  # the last good version keeps running
    assert book.campaigns["weekly"].schedule == {"cron": "0 9 * * tue"}
    assert f"{path}:5:1: colour: unknown key" in caplog.text
    assert "last good version keeps running" in caplog.text

    path.unlink()  # a file that is gone takes its campaign with it
    assert book.refresh() is True and book.campaigns == {}
