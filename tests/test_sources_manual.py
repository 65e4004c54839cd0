"""The manual source: staff-written YAML items, strict validation with file:line and key path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, ParseResult, RawText, SourceSpec
from imk_outreach.sources.base import get_source
from imk_outreach.sources.manual import ManualSource
from imk_outreach.sources.normalize import normalize_all

MANUAL = Path(__file__).parent / "fixtures" / "manual"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def spec(language: str = "de", url: str | None = None) -> SourceSpec:
    return SourceSpec(
        name="cluster", type="manual", url=url or str(MANUAL / "cluster-news.yaml"), language=language
    )


def file_doc(name: str) -> Document:
    path = MANUAL / name
    return Document(source="cluster", base_url=path.as_uri(), body=path.read_bytes())


def text_doc(text: str, name: str = "items.yaml") -> Document:
    return Document(source="cluster", base_url=f"file:///srv/news/{name}", body=text.encode("utf-8"))


def parse(doc: Document, language: str = "de") -> ParseResult:
    return ManualSource().parse(doc, spec(language))


def test_registered_as_the_manual_source() -> None:
    assert isinstance(get_source("manual"), ManualSource)


def test_german_and_english_item() -> None:
    result = parse(file_doc("cluster-news.yaml"))
    entry = result.entries[0]
    assert entry.link == "https://example.org/news/drehstart"
    assert entry.language == "de"
    assert entry.title == "Drehstart in Babelsberg"
    assert entry.summary == "Die **Dreharbeiten** beginnen am Montag. [Mehr](https://example.org/dreh)"
    assert entry.summary_format == "markdown"
    assert entry.published == "2026-11-20"
    assert entry.tags == ("film",)
    assert entry.image == "https://example.org/img/drehstart.jpg"
    assert entry.translations == {
        "en": RawText(title="Shooting starts in Babelsberg", summary="Shooting starts on *Monday*.")
    }


def test_english_source_takes_english_as_primary() -> None:
    entry = parse(file_doc("cluster-news.yaml"), language="en").entries[0]
    assert entry.language == "en"
    assert entry.title == "Shooting starts in Babelsberg"
    assert set(entry.translations) == {"de"}


def test_only_german_as_plain_strings() -> None:
    entry = parse(file_doc("cluster-news.yaml")).entries[1]
    assert entry.language == "de"
    assert entry.title == "KI-Tag im Medieninnovationszentrum"
    assert entry.summary == "Vorträge & Workshops zu <b>KI</b> in den Medien."
    assert entry.translations == {}
    assert entry.published == "2026-07-01 14:30"


def test_first_given_language_when_the_source_language_is_missing() -> None:
    entry = parse(file_doc("cluster-news.yaml")).entries[2]
    assert entry.link == "https://example.org/news/english-only"
    assert entry.language == "en"
    assert entry.title == "Games Week Berlin"
    assert entry.published == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_item_without_title_is_skipped_with_file_line_and_key_path() -> None:
    result = parse(file_doc("cluster-news.yaml"))
    assert [e.link for e in result.entries] == [
        "https://example.org/news/drehstart",
        "https://example.org/news/ki-tag",
        "https://example.org/news/english-only",
    ]
    assert result.warnings == ("cluster-news.yaml:14: [2].title: required",)


def test_end_to_end_with_normalisation() -> None:
    source = spec()
    result = ManualSource().parse(file_doc("cluster-news.yaml"), source)
    items, skipped = normalize_all(result, result.base_url, source, NOW, {"ki": ["KI"]}, BERLIN)
    assert skipped == 0
    drehstart, ki_tag, games = items
    assert drehstart.published_at == datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # midnight in Berlin
    assert drehstart.summary_html == (
        "<p>Die <strong>Dreharbeiten</strong> beginnen am Montag. "
        '<a href="https://example.org/dreh" rel="noopener noreferrer">Mehr</a></p>'
    )
    assert drehstart.translations["en"].title == "Shooting starts in Babelsberg"
    assert drehstart.translations["en"].summary_html == "<p>Shooting starts on <em>Monday</em>.</p>"
    assert drehstart.tags == ("film",)
    assert ki_tag.published_at == datetime(2026, 7, 1, 12, 30, tzinfo=UTC)  # 14:30 Berlin summer time
    assert ki_tag.title == "KI-Tag im Medieninnovationszentrum"
    assert ki_tag.summary_html == "<p>Vorträge &amp; Workshops zu &lt;b&gt;KI&lt;/b&gt; in den Medien.</p>"
    assert ki_tag.tags == ("ki",)
    assert games.language == "en"
    assert games.published_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_title_markup_is_kept_as_text() -> None:
    source = spec()
    result = ManualSource().parse(text_doc("- url: https://example.org/a\n  title: '<KI> & Film'\n"), source)
    items, _ = normalize_all(result, None, source, NOW, {}, BERLIN)
    assert items[0].title == "<KI> & Film"


def test_broken_items_among_good_ones() -> None:
    result = parse(file_doc("broken.yaml"))
    assert [e.link for e in result.entries] == ["https://example.org/news/gut"]
    assert result.warnings == (
        "broken.yaml:4: [1].titel: unknown key; did you mean 'title'?",
        "broken.yaml:3: [1].url: not an http(s) URL: 'ftp://example.org/datei'",
        "broken.yaml:3: [1].title: required",
        "broken.yaml:5: [1].published: not a date: 'gestern' (write e.g. 2026-11-20 or 2026-11-20 14:30)",
        "broken.yaml:6: [1].tags: expected a list, e.g. [film, ki]",
        "broken.yaml:8: [2].title.deutsch: language code must be two lower-case letters, e.g. de or en",
        "broken.yaml:8: [2].title.en: expected text (put it in quotes)",
        "broken.yaml:9: [3]: expected an item with keys such as url: and title:",
    )


@pytest.mark.parametrize(
    ("yaml_text", "warning"),
    [
        ("- title: Ohne URL\n", "items.yaml:1: [0].url: required"),
        ("- url: /relativ\n  title: T\n", "items.yaml:1: [0].url: not an http(s) URL: '/relativ'"),
        ("- url: 42\n  title: T\n", "items.yaml:1: [0].url: not an http(s) URL: 42"),
        ("- url: https://e.org/a\n", "items.yaml:1: [0].title: required"),
        ("- url: https://e.org/a\n  title: ''\n", "items.yaml:2: [0].title: required"),
        (
            "- url: https://e.org/a\n  title: {}\n",
            "items.yaml:2: [0].title: expected text, or language codes",
        ),
        ("- url: https://e.org/a\n  title: {de: ''}\n", "items.yaml:2: [0].title: required"),
        ("- url: https://e.org/a\n  title: 2026\n", "items.yaml:2: [0].title: expected text"),
        ("- url: https://e.org/a\n  title: [a, b]\n", "items.yaml:2: [0].title: expected text"),
        ("- url: https://e.org/a\n  title: {DE: Groß}\n", "items.yaml:2: [0].title.DE: language code"),
        ("- url: https://e.org/a\n  title: {deu: T}\n", "items.yaml:2: [0].title.deu: language code"),
        ("- url: https://e.org/a\n  title: {de-DE: T}\n", "items.yaml:2: [0].title.de-DE: language code"),
        (
            "- url: https://e.org/a\n  title: T\n  summary: {en: [x]}\n",
            "items.yaml:3: [0].summary.en: expected",
        ),
        (
            "- url: https://e.org/a\n  title: T\n  summary: {english: x}\n",
            "items.yaml:3: [0].summary.english:",
        ),
        (
            "- url: https://e.org/a\n  title: T\n  published: 31.02.2026\n",
            "items.yaml:3: [0].published: not a",
        ),
        (
            "- url: https://e.org/a\n  title: T\n  published: true\n",
            "items.yaml:3: [0].published: not a date",
        ),
        (
            "- url: https://e.org/a\n  title: T\n  tags: [film, 3]\n",
            "items.yaml:3: [0].tags[1]: expected a tag",
        ),
        (
            "- url: https://e.org/a\n  title: T\n  image: ftp://e.org/bild.jpg\n",
            "items.yaml:3: [0].image: not an http(s) URL or a path relative to this file",
        ),
        ("- url: https://e.org/a\n  title: T\n  datum: 2026-11-20\n", "items.yaml:3: [0].datum: unknown key"),
        (
            "- url: https://e.org/a\n  title: T\n  foo: x\n",
            "items.yaml:3: [0].foo: unknown key (allowed: url, published, tags, image, title",
        ),
    ],
)
def test_validation_errors(yaml_text: str, warning: str) -> None:
    good = "- url: https://e.org/gut\n  title: Gut\n"
    result = parse(text_doc(yaml_text + good))
    assert [e.link for e in result.entries] == ["https://e.org/gut"]
    assert len(result.warnings) >= 1
    assert result.warnings[0].startswith(warning), result.warnings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20", "2026-11-20"),
        ("2026-11-20 09:30:00", "2026-11-20T09:30:00"),
        ("'2026-11-20 09:30'", "2026-11-20 09:30"),
        ("'20.11.2026 14:30'", "20.11.2026 14:30"),
        ("'3. November 2026'", "3. November 2026"),
        ("2026-11-20T09:30:00+01:00", datetime(2026, 11, 20, 9, 30, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_published_values(value: str, expected: object) -> None:
    result = parse(text_doc(f"- url: https://e.org/a\n  title: T\n  published: {value}\n"))
    assert result.warnings == ()
    assert result.entries[0].published == expected


def test_summary_only_language_becomes_a_translation_without_title() -> None:
    doc = text_doc("- url: https://e.org/a\n  title: Titel\n  summary: {de: Text, en: English text}\n")
    entry = parse(doc).entries[0]
    assert entry.summary == "Text"
    assert entry.translations == {"en": RawText(title=None, summary="English text")}


def test_plain_summary_belongs_to_the_primary_language() -> None:
    doc = text_doc("- url: https://e.org/a\n  title: {en: Title, de: Titel}\n  summary: Zusammenfassung\n")
    entry = parse(doc).entries[0]
    assert (entry.language, entry.title, entry.summary) == ("de", "Titel", "Zusammenfassung")
    assert entry.translations == {"en": RawText(title="Title", summary=None)}


def test_empty_file_has_no_items() -> None:
    result = parse(text_doc("# noch keine Meldungen\n"))
    assert result.entries == ()
    assert result.warnings == ()


def test_yaml_syntax_error_fails_a_single_file_source() -> None:
    with pytest.raises(SourceError) as info:
        parse(file_doc("syntax-error.yaml"))
    message = str(info.value)
    assert "no file could be read" in message
    assert "syntax-error.yaml:" in message
    assert "YAML syntax error" in message


def test_top_level_mapping_is_rejected() -> None:
    with pytest.raises(SourceError, match=r"items.yaml:1: expected a list of items"):
        parse(text_doc("url: https://e.org/a\ntitle: T\n"))


def test_not_utf8_fails_with_the_file_name() -> None:
    doc = Document(
        source="cluster", base_url="file:///srv/news/alt.yaml", body="- title: Grüße\n".encode("latin-1")
    )
    with pytest.raises(SourceError, match=r"alt.yaml: not UTF-8"):
        parse(doc)


def folder_doc() -> Document:
    folder = MANUAL / "folder"
    files = tuple((path.name, path.read_bytes()) for path in sorted(folder.iterdir(), reverse=True))
    return Document(source="cluster", base_url=folder.as_uri() + "/", body=b"", files=files)


def test_folder_of_files() -> None:
    result = parse(folder_doc())
    assert [e.link for e in result.entries] == [  # sorted by file name
        "https://example.org/news/filmpreis",
        "https://example.org/news/games",
    ]
    assert result.entries[1].translations == {"en": RawText(title="Games funding", summary=None)}
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("03-kaputt.yaml:2:1: YAML syntax error")


def test_folder_where_no_file_can_be_read() -> None:
    bad = (("a.yaml", b"- url: [\n"), ("b.yml", b"key: value\n"), ("notes.txt", b"ignored"))
    doc = Document(source="cluster", base_url="file:///srv/news/", body=b"", files=bad)
    with pytest.raises(SourceError) as info:
        parse(doc)
    assert "a.yaml:" in str(info.value)
    assert "b.yml:1: expected a list of items" in str(info.value)


def test_folder_without_yaml_files() -> None:
    doc = Document(source="cluster", base_url="file:///srv/news/", body=b"", files=(("README.md", b"x"),))
    result = parse(doc)
    assert result.entries == ()
    assert result.warnings == ("no *.yaml or *.yml files found",)
