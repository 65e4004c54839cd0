"""A Jinja error in a campaign text names the campaign file, the line in it and the key; a misspelt filter,
variable or attribute (in campaign texts and in templates) names the nearest one and those available."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imk_outreach import cli
from imk_outreach.campaigns.loader import text_line
from imk_outreach.errors import TemplateError
from imk_outreach.models import Brand, Campaign, Edition, EditionSection, NewsItem, Section, Selection
from imk_outreach.render.email import render_email
from imk_outreach.render.env import make_env, render_string, render_template
from tests.conftest import ConfigFactory

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

GOOD = """\
# A digest of the week.
name: digest
list: newsletter
languages: [de, en]
min_items: 1
subject: {de: "Digest {{ edition.date|month }}", en: "Digest {{ edition.date|month }}"}
intro:
  de: |
    Hallo.
    Neu im {{ edition.date|month }}.
  en: "Hello."
sections:
  - {id: tech, heading: {de: Technik, en: Tech}, select: {tags: [iot], since: 30d}}
"""


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` holding ``needle`` (exactly one line must)."""
    [number] = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return number


@pytest.fixture
def project(make_settings: ConfigFactory, tmp_path: Path) -> Path:
    """A config.yaml with one campaign file (written per test) and an empty staff templates folder."""
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(GOOD, "utf-8")
    make_settings([{"name": "manual", "type": "manual", "url": "manual"}], tagging={"iot": ["IoT"]})
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def break_campaign(project: Path, old: str, new: str) -> tuple[Path, str]:
    path = project / "campaigns" / "digest.yaml"
    text = path.read_text("utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text, "utf-8")
    return path, text


# -- through the command line --------------------------------------------------------------------------


def test_check_names_file_line_and_key_and_suggests_the_filter(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, text = break_campaign(
        project, 'de: "Digest {{ edition.date|month }}"', 'de: "Digest {{ edition.date|monht }}"'
    )
    code, output = run(capsys, "check", "--config", str(project / "config.yaml"))
    assert code == 1
    expected = f"{path}:{line_of(text, 'monht')}: subject.de: unknown filter 'monht'; did you mean 'month'?"
    [line] = [line for line in output.splitlines() if "monht" in line]
    assert line.startswith(expected), line
    assert "(filters: date, month, number, plaintext, teaser; Jinja's built-in: abs," in line
    assert "campaign digest, language de" in line


def test_check_counts_the_line_inside_a_block_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, text = break_campaign(
        project, "Neu im {{ edition.date|month }}.", "Neu im {{ edtion.date|month }}."
    )
    code, output = run(capsys, "check", "--config", str(project / "config.yaml"))
    assert code == 1
    [line] = [line for line in output.splitlines() if "edtion" in line]
    line_number = line_of(text, "edtion")  # line 2 of the text, the key is two lines above
    assert line_of(text, "intro:") == line_number - 3
    assert line.startswith(f"{path}:{line_number}: intro.de: 'edtion' is undefined; did you mean 'edition'?")
    assert "(variables: brand, brand_name, campaign, edition, " in line
    assert "gettext" not in line


def test_preview_names_file_line_and_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, text = break_campaign(project, 'en: "Hello."', 'en: "Hello {{ edition.dat|month }}."')
    code, output = run(capsys, "preview", "digest", "--config", str(project / "config.yaml"))
    assert code == 1
    [line] = [line for line in output.splitlines() if "dat'" in line]
    assert line.startswith(f"error: {path}:{line_of(text, 'edition.dat|')}: intro.en: ")
    assert "has no attribute 'dat'; did you mean 'date'?" in line
    assert "(attributes: " in line and "sections" in line


def test_check_suggests_in_a_staff_template(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staff = project / "templates" / "newsletter"
    staff.mkdir(parents=True)
    footer = (
        "<mj-section>\n<mj-column>\n"
        "<mj-text>{% for label, url in [('Web', 'https://example.org')] %}{{ lable }}{% endfor %}</mj-text>\n"
        "<mj-text>{{ now|moth }} {{ brnad_name }}</mj-text>\n"
        "</mj-column></mj-section>\n"
    )
    (staff / "_footer.mjml.j2").write_text(footer, "utf-8")
    lines = check_lines(capsys, project, "moth")
    expected = "newsletter/_footer.mjml.j2:4: unknown filter 'moth'; did you mean 'month'? (filters: date,"
    assert all(line.startswith(expected) for line in lines)
    assert {line.rsplit("language ", 1)[1] for line in lines} == {"de)", "en)"}
    (staff / "_footer.mjml.j2").write_text(footer.replace("|moth", "|month"), "utf-8")
    [line, *_] = check_lines(capsys, project, "lable")
    assert line.startswith("newsletter/_footer.mjml.j2:3: 'lable' is undefined; did you mean 'label'?")
    (staff / "_footer.mjml.j2").write_text(
        footer.replace("|moth", "|month").replace("lable", "label"), "utf-8"
    )
    [line, *_] = check_lines(capsys, project, "brnad_name")
    assert line.startswith(
        "newsletter/_footer.mjml.j2:4: 'brnad_name' is undefined; did you mean 'brand_name'?"
    )


def check_lines(capsys: pytest.CaptureFixture[str], project: Path, needle: str) -> list[str]:
    """The lines of a failing ``check`` that mention ``needle`` (at least one)."""
    code, output = run(capsys, "check", "--config", str(project / "config.yaml"))
    assert code == 1
    lines = [line for line in output.splitlines() if needle in line]
    assert lines, output
    return lines


# -- the parts -----------------------------------------------------------------------------------------


def test_text_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD, "utf-8")
    assert text_line(path, ("subject", "de")) == line_of(GOOD, "subject:")
    assert text_line(path, ("intro", "de")) == line_of(GOOD, "Hallo.")  # a block text: the line after `de: |`
    assert text_line(path, ("intro", "en")) == line_of(GOOD, 'en: "Hello."')
    assert text_line(path, ("preheader", "de")) is None
    assert text_line(path, ("sections", "x")) is None
    assert text_line(tmp_path / "gone.yaml", ("subject", "de")) is None


BRAND = Brand(
    name={"de": "Cluster"},
    imprint={"de": "Impressum"},
    public_url="https://n.example.org",
    sender_name="Cluster",
    sender_email="n@example.org",
)
CAMPAIGN = Campaign(
    name="digest",
    path="campaigns/digest.yaml",
    languages=("de",),
    subject={"de": "Digest"},
    intro={"de": "Eins\nZwei\n{{ edition.date|monht }}"},
    sections=(Section("s", {"de": "S"}, Selection()),),
)
ITEM = NewsItem(
    id="i",
    url="https://example.org/i",
    source="f",
    title="T",
    summary_html="",
    published_at=NOW,
    language="de",
)
EDITION = Edition(1, "digest", NOW, NOW, (EditionSection("s", {"de": "S"}, (ITEM,)),))


def test_the_line_of_the_text_is_added_to_the_line_the_text_starts_on() -> None:
    with pytest.raises(TemplateError) as info:
        render_email(make_env([]), CAMPAIGN, EDITION, "de", BRAND, NOW, locate_text=lambda key, lang: 20)
    assert (info.value.template, info.value.line) == ("campaigns/digest.yaml", 22)
    assert str(info.value).startswith("campaigns/digest.yaml:22: intro.de: unknown filter 'monht'")


def test_without_a_known_start_line_the_text_line_is_named() -> None:
    with pytest.raises(TemplateError) as info:
        render_email(make_env([]), CAMPAIGN, EDITION, "de", BRAND, NOW)
    assert str(info.value).startswith("campaigns/digest.yaml (intro.de):3: unknown filter 'monht'")
    empty = replace(CAMPAIGN, subject={"de": "{{ '' }}"}, intro={})
    with pytest.raises(TemplateError, match=r"^campaigns/digest\.yaml:7: subject\.de: the subject is empty$"):
        render_email(make_env([]), empty, EDITION, "de", BRAND, NOW, locate_text=lambda key, lang: 7)


def test_a_close_name_is_suggested_only_when_there_is_one() -> None:
    env = make_env([])
    with pytest.raises(TemplateError) as info:
        render_string(env, "{{ zzz }}", "s", "de", {"edition": 1, "brand": 2})
    assert str(info.value) == "s:1: 'zzz' is undefined (variables: brand, edition, language)"
    with pytest.raises(TemplateError, match=r"^s:1: unknown filter 'qqqq' \(filters: date, "):
        render_string(env, "{{ 1|qqqq }}", "s", "de", {})
    with pytest.raises(TemplateError, match=r"^s:1: unknown test 'evn'; did you mean 'even'\? \(tests: "):
        render_string(env, "{{ 2 is evn }}", "s", "de", {})


def test_a_misspelt_key_of_a_mapping_names_the_keys(tmp_path: Path) -> None:
    (tmp_path / "t.txt.j2").write_text("{{ ph.emial }}", "utf-8")
    with pytest.raises(TemplateError) as info:
        render_template(make_env([tmp_path]), "t.txt.j2", "de", {"ph": {"email": "x", "greeting": "y"}})
    assert str(info.value) == (
        "t.txt.j2:1: 'dict object' has no attribute 'emial'; did you mean 'email'? "
        "(attributes: email, greeting)"
    )
