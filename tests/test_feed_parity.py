"""The lxml fast path reads everything the feedparser fallback reads, and titles keep the text a feed
declares as text. Each test reads its fixture on both paths (``parse_fast`` and ``parse_feedparser``
force one each) and expects the same reading from both; each fixture is one the fast path takes by
itself (``read_feed`` answers "lxml")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imk_outreach.models import NewsItem, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.jsonfeed import parse_json_feed
from imk_outreach.sources.normalize import normalize_all
from imk_outreach.sources.rss import parse_fast, parse_feedparser, read_feed

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
DOC_URL = "https://cluster.example/feed.xml"
SPEC = SourceSpec(name="parity", type="rss", url=DOC_URL, language="de")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PARITY_FIXTURES = [
    "rss_titles.xml",
    "atom_links.xml",
    "atom03_base64.xml",
    "atom10_base64.xml",
    "rss_more_elements.xml",
    "atom_content_quirks.xml",
]
PATHS = {"lxml": parse_fast, "feedparser": parse_feedparser}


def read(name: str, path: str) -> ParseResult:
    return PATHS[path]((FEEDS / name).read_bytes())


def items(name: str, path: str) -> list[NewsItem]:
    return normalize_all(read(name, path), DOC_URL, SPEC, NOW, {}, UTC)[0]


def by_slug(name: str, path: str) -> dict[str, NewsItem]:
    """The items of a fixture by the last part of their URL."""
    return {item.url.rsplit("/", 1)[1]: item for item in items(name, path)}


def fields(entry: RawEntry) -> tuple[object, ...]:
    return (
        entry.link,
        entry.title,
        entry.summary,
        entry.summary_format,
        entry.published,
        entry.image,
        entry.tags,
    )


@pytest.mark.parametrize("name", PARITY_FIXTURES)
def test_both_paths_read_the_same_entries_and_the_fast_path_reads_it_alone(name: str) -> None:
    body = (FEEDS / name).read_bytes()
    fast, slow = parse_fast(body), parse_feedparser(body)
    assert fast.entries, "every fixture has entries"
    assert [fields(e) for e in fast.entries] == [fields(e) for e in slow.entries]
    assert read_feed(body)[1] == "lxml"


def on_both_paths(expected: object) -> dict[str, object]:
    return {path: expected for path in PATHS}


def test_atom_titles_of_each_type() -> None:
    titles = {path: [item.title for item in items("atom_titles.xml", path)] for path in PATHS}
    assert titles == on_both_paths(
        [
            "Using the <canvas> element & more",  # type="text": the brackets are text
            "Preis für Kurzfilm & Serie",  # type="html": unescaped, tags stripped
            "Games & <XR>",  # type="xhtml": read from the div, its escaped text kept
            "Ohne type: <video> ist Text",  # no type means text
        ]
    )


def test_rss_dc_title_and_plain_text_titles() -> None:
    titles = {
        path: {slug: item.title for slug, item in by_slug("rss_titles.xml", path).items()} for path in PATHS
    }
    assert titles == on_both_paths(
        {
            "dc": "Nur dc:title",
            "beide": "Erst title",  # the first title wins, as in feedparser
            "canvas": "Using the <canvas> element",  # no closing tag, no entity: text, not markup
            "markup": "Das fette Programm & mehr",  # looks like HTML: read as HTML
        }
    )


def test_atom_links_written_as_element_text() -> None:
    links = {path: [(e.link, e.image) for e in read("atom_links.xml", path).entries] for path in PATHS}
    assert links == on_both_paths(
        [
            ("https://cluster.example/news/text-link", None),
            # resolved against xml:base like an href; an enclosure written as text is the image
            ("https://cluster.example/news/relativ", "https://cluster.example/bilder/foto.jpg"),
            ("https://cluster.example/news/href", None),  # with href the text is not the link
        ]
    )


def test_base64_content_is_decoded() -> None:
    found = {
        path: [
            (i.title, i.summary_html)
            for name in ("atom03_base64.xml", "atom10_base64.xml")
            for i in items(name, path)
        ]
        for path in PATHS
    }
    assert found == on_both_paths(
        [
            ("HTML in Base64", "<p>Förderung für <b>XR</b>-Projekte</p>"),  # Atom 0.3 mode="base64"
            ("Text in Base64", "<p>Anmeldung bis Freitag</p>"),
            # Atom 1.0: a type that is neither text nor XML means base64; decoded, it is plain text
            ("Förderzusage für <Serie>", "<p>Drehstart in Potsdam &amp; Babelsberg</p>"),
            ("Bild als Inhalt wird nicht gelesen", ""),  # an image given as content is not text
        ]
    )


def test_elements_beyond_the_rss_core() -> None:
    def reading(path: str) -> dict[str, object]:
        found = by_slug("rss_more_elements.xml", path)
        return {
            "body": found["body"].summary_html,
            "fullitem": found["fullitem"].summary_html,
            "dc": (found["dc"].summary_html, found["dc"].published_at, found["dc"].date_estimated),
            "podcast": found["podcast"].summary_html,
            "video": (found["video"].title, found["video"].summary_html, found["video"].image is not None),
            "zwei": found["zwei"].summary_html,
        }

    assert {path: reading(path) for path in PATHS} == on_both_paths(
        {
            "body": "<p>Text im <b>body</b></p>",  # an XHTML body
            "fullitem": "<p>Der ganze Beitrag</p>",
            "dc": ("Beschreibung aus Dublin Core", datetime(2026, 3, 2, 9, 30, tzinfo=UTC), False),
            "podcast": "<p>Folge 7 über Games &amp; XR</p>",  # itunes:summary
            "video": ("Video-Titel", "<p>Beschreibung des Videos</p>", True),  # media:group
            "zwei": "Die erste",  # the second description is content, as in feedparser
        }
    )


def test_text_mended_as_feedparser_mends_it() -> None:
    found = {
        path: [by_slug("rss_more_elements.xml", path)[slug].summary_html for slug in ("cp1252", "doppelt")]
        for path in PATHS
    }
    assert found == on_both_paths(
        [
            "Wir sagen’s “laut”",  # windows-1252 code points written as &#146; and the like
            "Teil 2 ä – ganz",  # UTF-8 read as Latin-1 once too often
        ]
    )


def test_content_written_other_than_declared() -> None:
    found = {
        path: {slug: item.summary_html for slug, item in by_slug("atom_content_quirks.xml", path).items()}
        for path in PATHS
    }
    assert found == on_both_paths(
        {
            "div": "Neu: <b>Förderung</b>",  # escaped HTML inside an XHTML div (type="html")
            "markup": "Ein <b>fetter</b> Satz",  # markup inside a text summary is read as markup
        }
    )


def test_a_jsonfeed_title_keeps_angle_brackets_but_decodes_entities() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
        b'{"url": "https://cluster.example/a", "title": "Using the <canvas> element"},'
        b'{"url": "https://cluster.example/b", "title": "Drehstart &#8211; Babelsberg"}]}'
    )
    found = normalize_all(parse_json_feed(body), DOC_URL, SPEC, NOW, {}, UTC)[0]
    assert [item.title for item in found] == ["Using the <canvas> element", "Drehstart – Babelsberg"]
