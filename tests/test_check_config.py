"""``check`` judges campaigns against config.yaml (sources' tags, ``tagging:`` rules), not against the
database: the same answer before and after a gather, and a warning for what the config can never fill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.services import check
from imk_outreach.services.database import sqlite_path
from tests.conftest import ConfigFactory

# The manual file tags its items itself (film, events): no source tag or tagging rule gives those.
NEWS = """\
- {url: https://example.org/a, published: 2026-11-20, title: Drehstart, summary: Los., tags: [film]}
- {url: https://example.org/b, published: 2026-11-21, title: Messe, summary: Sensoren., tags: [events]}
"""
HEAD = """\
name: {name}
list: newsletter
languages: [de]
min_items: 1
subject: {{de: "Digest"}}
sections:
"""


def section(ident: str, select: str) -> str:
    return f"  - id: {ident}\n    heading: {{de: {ident}}}\n    select: {select}\n"


def site(make_settings: ConfigFactory, tmp_path: Path, campaigns: dict[str, str], **extra: Any) -> Settings:
    (tmp_path / "news.yaml").write_text(NEWS, "utf-8")
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    for name, sections in campaigns.items():
        (folder / f"{name}.yaml").write_text(HEAD.format(name=name) + sections, "utf-8")
    sources = [
        {"name": "news", "type": "manual", "url": "news.yaml", "language": "de"},
        {"name": "iot-feed", "type": "manual", "url": "news.yaml", "language": "de", "tags": ["iot"]},
        {"name": "film-feed", "type": "manual", "url": "news.yaml", "language": "de", "tags": ["film"]},
    ]
    return make_settings(
        sources, languages=["de"], tagging={"ki": ["KI"], "Künstliche Intelligenz": ["AI"]}, **extra
    )


def check_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["check", "--json", "--config", str(settings.config_path)])
    return code, json.loads(capsys.readouterr().out)


def test_check_answers_the_same_before_and_after_a_gather(
    make_settings: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = site(
        make_settings,
        tmp_path,
        {"digest": section("events", "{tags: [events]}") + section("tech", "{tags: [iot, ki]}")},
    )
    database = sqlite_path(settings)
    before_code, before = check_json(settings, capsys)
    if database is not None:
        assert not database.exists()  # check reads files only; it made no database
    assert cli.main(["gather", "--config", str(settings.config_path)]) == 0
    capsys.readouterr()
    after_code, after = check_json(settings, capsys)
    assert (before_code, before["problems"], before["warnings"]) == (
        after_code,
        after["problems"],
        after["warnings"],
    )
    assert before_code == 0 and before["problems"] == []
    [warning] = before["warnings"]  # events: only the file's own tags give it, so a warning, never a problem
    assert warning["key"] == "sections[0].select.tags" and "'events'" in warning["message"]


def test_a_section_the_config_can_never_fill_is_a_warning_naming_file_key_and_line(
    make_settings: ConfigFactory, tmp_path: Path
) -> None:
    sections = (
        section("good", "{tags: [iot, film, ki, künstliche-intelligenz]}")
        + section("typo", "{tags: [flim]}")
        + section("wrong-source", "{sources: [iot-feed], tags: [film]}")
        + section("one-dead-tag", "{tags: [iot, Film]}")
        + section("pinned", "{tags: [nowhere], pin: ['https://example.org/a']}")
        + section("any", "{sources: [news]}")
    )
    settings = site(make_settings, tmp_path, {"digest": sections})
    report = check.inspect(settings)
    assert report.problems == []
    path = str(tmp_path / "campaigns" / "digest.yaml")
    lines = Path(path).read_text("utf-8").splitlines()
    typo, source, dead = (
        next(n for n, line in enumerate(lines, 1) if text in line)
        for text in ("[flim]", "[iot-feed]", "Film]")
    )
    found = {(w.file, w.line, w.key): w.message for w in report.warnings}
    assert set(found) == {
        (path, typo, "sections[1].select.tags"),
        (path, source, "sections[2].select.tags"),
        (path, dead, "sections[3].select.tags[1]"),
    }
    assert found[(path, typo, "sections[1].select.tags")].startswith(
        "section 'typo' can never be filled from the config: no configured source (sources.tags) and no "
        "tagging rule gives 'flim' (did you mean 'film' for 'flim'?)"
    )
    assert (
        "its sources (iot-feed) carry none of 'film', no tagging rule gives them"
        in found[(path, source, "sections[2].select.tags")]
    )
    assert found[(path, dead, "sections[3].select.tags[1]")].startswith(
        "tag 'Film' is given by no configured source or tagging rule (did you mean 'film' for 'Film'?)"
    )
    assert str(report.warnings[0]).startswith(f"{path}:{typo}: sections[1].select.tags: section 'typo'")


def test_warnings_do_not_fail_check_and_problems_still_do(
    make_settings: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = site(make_settings, tmp_path, {"digest": section("typo", "{tags: [flim]}")})
    config = ["--config", str(settings.config_path)]
    assert cli.main(["check", *config]) == 0
    out = capsys.readouterr().out
    assert "warning: " in out and "section 'typo' can never be filled" in out and "1 warning(s)" in out
    (tmp_path / "campaigns" / "other.yaml").write_text(
        HEAD.format(name="other") + section("x", "{sources: [nosuch]}"), "utf-8"
    )
    code, data = check_json(settings, capsys)
    assert code == 1 and data["ok"] is False
    [problem] = data["problems"]
    assert (
        problem["key"] == "sections[0].select.sources[0]" and "unknown source 'nosuch'" in problem["message"]
    )
    assert len(data["warnings"]) == 1
