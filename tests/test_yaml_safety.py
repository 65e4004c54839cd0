"""YAML that cannot hurt: alias bombs, deep nesting and huge files are refused before any data is built,
and a key written twice is an error naming both lines, in config.yaml, campaign files and manual items
alike (all of them are read by ``yamlfile.load_yaml``)."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest

from imk_outreach import cli
from imk_outreach.campaigns import CampaignContext, load_all
from imk_outreach.config import load_settings
from imk_outreach.errors import ConfigError, ConfigErrors, SourceError
from imk_outreach.models import Document, SourceSpec
from imk_outreach.sources.manual import ManualSource, read_file
from imk_outreach.sources.normalize import canonical_url
from imk_outreach.yamlfile import MAX_ALIAS_NODES, MAX_BYTES, MAX_DEPTH, load_yaml

MAX_RSS_GROWTH = 200 * 1024 * 1024  # bytes; the bomb below would need many gigabytes
CTX = CampaignContext(
    languages=("de",),
    lists=frozenset({"newsletter"}),
    sources=frozenset({"news"}),
    tags=frozenset({"film"}),
    template_exists=lambda name: True,
    canonicalize=canonical_url,
)
CAMPAIGN = """\
name: digest
list: newsletter
subject: {de: Digest}
sections:
  - {id: film, heading: {de: Film}, select: {tags: [film]}}
"""


def billion_laughs(indent: str = "") -> str:
    """The classic bomb: nine levels of nine aliases, a few hundred bytes for 9**9 strings."""
    lines = [f'{indent}a0: &a0 "lol"']
    for level in range(1, 10):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"{indent}a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def max_rss() -> int:
    """The process's peak resident memory in bytes (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def assert_refused_at_an_alias(error: ConfigError, path: Path) -> None:
    """The error names the file and the line of the alias that crossed the limit, and that alias."""
    assert str(error).startswith(f"{path}:"), str(error)
    assert "alias bomb" in error.message and f"{MAX_ALIAS_NODES:,}" in error.message
    anchor = re.search(r"\(here \*(\w+)\)", error.message)
    assert anchor is not None and error.location.line is not None
    written = path.read_text("utf-8").splitlines()[error.location.line - 1]
    assert f"*{anchor.group(1)}" in written


# -- alias bombs ---------------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_billion_laughs_config_is_refused_naming_file_and_alias_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(billion_laughs() + "sources: []\ntagging: {lol: *a9}\n", "utf-8")
    before = max_rss()
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert max_rss() - before < MAX_RSS_GROWTH
    assert_refused_at_an_alias(info.value, path)


@pytest.mark.timeout(10)
def test_check_refuses_a_config_bomb_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(billion_laughs() + "sources: []\n", "utf-8")
    assert cli.main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:" in err and "alias bomb" in err and "Traceback" not in err


@pytest.mark.timeout(10)
def test_a_billion_laughs_campaign_is_refused_and_the_other_campaigns_load(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(CAMPAIGN.replace("name: digest", "name: bomb") + billion_laughs(), "utf-8")
    (tmp_path / "digest.yaml").write_text(CAMPAIGN, "utf-8")
    before = max_rss()
    campaigns, errors = load_all(tmp_path, CTX)
    assert max_rss() - before < MAX_RSS_GROWTH
    assert [c.name for c in campaigns] == ["digest"]
    [error] = errors
    assert_refused_at_an_alias(error, bomb)


@pytest.mark.timeout(10)
def test_a_billion_laughs_manual_file_is_refused_as_a_warning(tmp_path: Path) -> None:
    text = "- url: https://example.org/a\n  title: A\n  summary: &a0 lol\n" + "\n".join(
        f"  t{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 10)
    )
    entries, warnings, readable = read_file("news.yaml", text.encode(), "de")
    assert (entries, readable) == ([], False)
    [warning] = warnings
    assert warning.startswith("news.yaml:") and "alias bomb" in warning
    doc = Document(source="news", base_url="file:///srv/news.yaml", body=text.encode())
    with pytest.raises(SourceError, match="alias bomb"):
        ManualSource().parse(doc, SourceSpec(name="news", type="manual", url="news.yaml", language="de"))


def aliases_adding(nodes: int) -> str:
    """A document whose aliases add exactly ``nodes`` nodes: one alias of a 10-node list per 10."""
    block = ", ".join(f"v{n}" for n in range(9))
    uses = "\n".join("  - *block" for _ in range(nodes // 10))
    return f"block: &block [{block}]\nuses:\n{uses}\n"


def test_aliases_are_allowed_up_to_the_limit_and_refused_past_it(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(aliases_adding(MAX_ALIAS_NODES), "utf-8")
    assert len(load_yaml(path).data["uses"]) == MAX_ALIAS_NODES // 10  # e.g. ``select: *common`` reused
    path.write_text(aliases_adding(MAX_ALIAS_NODES + 10), "utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert_refused_at_an_alias(info.value, path)
    assert info.value.location.line == path.read_text("utf-8").count("\n")  # the last alias crossed it


def test_a_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    """``<<:`` merges copy mappings while constructing; nine merges of nine grow the same way."""
    lines = ["m0: &m0 {k: v}"]
    for level in range(1, 8):
        merges = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{merges}], k{level}: v}}")
    path = tmp_path / "merge.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert_refused_at_an_alias(info.value, path)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    line = "tagging: &loop {film: [*loop]}"
    path.write_text(f"sources: []\n{line}\n", "utf-8")
    with pytest.raises(ConfigError, match=r"alias \*loop is used inside the node it refers to") as info:
        load_settings(path)
    assert (info.value.location.line, info.value.location.col) == (2, line.index("*loop") + 1)


# -- nesting and size ----------------------------------------------------------------------------------


def test_deep_nesting_is_refused_before_python_runs_out_of_stack(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("sources: []\ntagging: " + "[" * 5000 + "]" * 5000 + "\n", "utf-8")
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels deep") as info:
        load_settings(path)
    assert info.value.location.line == 2


@pytest.mark.timeout(10)
def test_a_file_over_the_size_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as stream:
        stream.write(b"sources: []\n# " + b"x" * MAX_BYTES + b"\n")
        stream.truncate(64 * 1024 * 1024)  # sparse: 64 MB on paper
    before = max_rss()
    with pytest.raises(ConfigError, match=f"YAML files over {MAX_BYTES:,} bytes are refused") as info:
        load_settings(path)
    assert max_rss() - before < 32 * 1024 * 1024
    assert str(info.value).startswith(f"{path}: the file is 67,108,864 bytes")


def test_text_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    text = b"- url: https://example.org/a\n  title: A\n# " + b"x" * MAX_BYTES + b"\n"
    entries, [warning], readable = read_file("big.yaml", text, "de")
    assert (entries, readable) == ([], False)
    assert warning.startswith("big.yaml: the file is") and "split it into smaller files" in warning


def test_a_control_character_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('sources: []\nname: {de: "Cluster\x07"}\n', "utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}:2: character #x0007 is not allowed in YAML (a control character)"


# -- keys written twice --------------------------------------------------------------------------------


def test_a_top_level_key_written_twice_in_config_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sources: []\nsmtp: {host: a.example}\ntimezone: UTC\nsmtp: {host: b.example}\n", "utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_settings(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:4:1: smtp: key 'smtp' is written twice (first in line 2); YAML keeps only the last"
    ]


def test_a_nested_key_written_twice_in_config_is_reported_with_the_other_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sources: []\nsmtp:\n  host: a.example\n  port: 0\n  host: b.example\n", "utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_settings(path)
    messages = [str(e) for e in info.value.errors]
    assert (
        f"{path}:5:3: smtp.host: key 'host' is written twice (first in line 3); YAML keeps only the last"
        in (messages)
    )
    assert any(m.startswith(f"{path}:4:3: smtp.port:") for m in messages)  # the value error is kept


def test_a_key_written_twice_inside_an_anchor_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    text = "sources: []\nlists:\n  a: &texts {de: A, de: B}\n  b: *texts\n  c: *texts\n"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_settings(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:3:21: lists.a.de: key 'de' is written twice (first in line 3); YAML keeps only the last"
    ]


def test_a_merge_is_not_a_key_written_twice(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("smtp: &mail {host: a.example, port: 25}\nx: {<<: *mail, port: 2525}\n", "utf-8")
    doc = load_yaml(path)
    assert doc.duplicate_errors() == [] and doc.data["x"]["port"] == 2525


def test_a_manual_item_with_a_key_written_twice_is_skipped_naming_both_lines() -> None:
    text = (
        "- url: https://example.org/a\n  title: Erste\n  title: Zweite\n"
        "- url: https://example.org/b\n  title: Gut\n"
    )
    entries, warnings, readable = read_file("news.yaml", text.encode(), "de")
    assert readable and [e.title for e in entries] == ["Gut"]
    assert warnings == [
        "news.yaml:3: [0].title: key 'title' is written twice (first in line 2); YAML keeps only the last"
    ]
