"""The jsonfeed adapter on fixture documents (no network)."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, ParseResult, SourceSpec
from imk_outreach.sources.base import get_source
from imk_outreach.sources.jsonfeed import JsonFeedSource

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
BASE = "https://example.org/feed.json"
SPEC = SourceSpec(name="t", type="jsonfeed", url=BASE, language="de")


def fixture(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse(body: bytes, content_type: str | None = "application/feed+json") -> ParseResult:
    doc = Document(source="t", base_url=BASE, body=body, content_type=content_type)
    return JsonFeedSource().parse(doc, SPEC)


def parse_error(body: bytes, content_type: str | None = "application/feed+json") -> SourceError:
    with pytest.raises(SourceError) as caught:
        parse(body, content_type)
    return caught.value


def test_the_source_is_registered_as_jsonfeed() -> None:
    assert isinstance(get_source("jsonfeed"), JsonFeedSource)


def test_json_feed_11_item_with_every_field() -> None:
    result = parse(fixture("jsonfeed11.json"))
    assert result.warnings == ()
    assert result.base_url == "https://startup-spreeufer.example/"
    demo = result.entries[0]
    assert (
        demo.link == "https://startup-spreeufer.example/news/demo-day?utm_campaign=feed"
    )  # url beats external_url
    assert demo.title == "Demo Day: Zwölf Teams pitchen vor Investor:innen"
    assert demo.summary == "<p>Am <strong>21. März</strong> im Kesselhaus.</p>"
    assert demo.summary_format == "html"
    assert demo.published == datetime(2024, 3, 7, 9, 0, tzinfo=UTC)
    assert demo.image == "https://startup-spreeufer.example/img/demo-day.jpg"
    assert demo.tags == ("Start-ups", "Veranstaltung")
    assert demo.language == "de-DE"  # the feed's language


def test_json_feed_fallbacks_text_content_modified_date_banner_and_external_url() -> None:
    _, mentoring, linkpost = parse(fixture("jsonfeed11.json")).entries
    assert mentoring.link == "/programme/mentoring"  # relative URLs stay as found
    assert mentoring.summary == "Sechs Monate Begleitung <kostenlos> für Gründerinnen & Gründer."
    assert mentoring.summary_format == "text"
    assert mentoring.published == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    assert mentoring.image == "https://startup-spreeufer.example/img/mentoring-banner.jpg"
    assert mentoring.language == "en"  # the item's own language wins
    assert linkpost.link == "https://presse.example/artikel/spreeufer-waechst"
    assert linkpost.summary == "Ein Bericht über das Netzwerk."
    assert linkpost.summary_format == "text"
    assert linkpost.published == "letzten Dienstag"
    assert linkpost.image is None and linkpost.tags == ()


def test_json_feed_10_is_read() -> None:
    (entry,) = parse(fixture("jsonfeed10.json")).entries
    assert entry.link == "https://podcast-havelland.example/folgen/42"
    assert entry.summary == "<p>Zu Gast: die Redaktion des <em>Havelboten</em>.</p>"
    assert entry.published == datetime(2024, 2, 29, 18, 0, tzinfo=UTC)
    assert entry.tags == ("Podcast", "KI")


def test_invalid_json_names_line_and_column() -> None:
    error = parse_error(fixture("jsonfeed_invalid.json"))
    assert error.reason.startswith("invalid JSON at line 4, column 3: Expecting ',' delimiter")
    assert error.source == "t" and error.url == BASE


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (fixture("jsonfeed_not_a_feed.json"), "not a JSON Feed: no 'version' naming jsonfeed.org"),
        (b'[{"url": "https://a.example/"}]', "not a JSON Feed: the document is a JSON array, not an object"),
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "title": "x"}',
            "'items' is missing or not a list",
        ),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "'items' is missing or not a list"),
        (b"", "not a JSON Feed: the document is empty"),
        (fixture("rss20_full.xml"), "not a JSON Feed: found XML or HTML"),
    ],
)
def test_documents_that_are_no_json_feed_raise_a_source_error(body: bytes, reason: str) -> None:
    assert reason in parse_error(body).reason


def test_items_without_url_or_not_objects_are_skipped_with_a_count() -> None:
    result = parse(fixture("jsonfeed_items_without_url.json"))
    assert [e.title for e in result.entries] == ["Studioförderung 2024", "Label-Treffen im Mai"]
    assert result.warnings == ("skipped 3 of 5 items (2 without 'url', 1 not a JSON object)",)


def test_charset_in_the_content_type_is_honoured() -> None:
    body = fixture("jsonfeed_latin1.json")
    assert "Künstliche".encode("latin-1") in body
    (entry,) = parse(body, "application/feed+json; charset=ISO-8859-1").entries
    assert entry.title == "Folge 42: Lokaljournalismus, Künstliche Intelligenz und Medienförderung"


def test_default_is_utf8_so_latin1_bytes_without_charset_fail_clearly() -> None:
    error = parse_error(fixture("jsonfeed_latin1.json"), "application/json")
    assert "not valid UTF-8" in error.reason


def test_utf8_byte_order_mark_is_tolerated() -> None:
    body = codecs.BOM_UTF8 + fixture("jsonfeed10.json")
    assert len(parse(body, "application/json; charset=utf-8").entries) == 1
    assert len(parse(body, None).entries) == 1


def test_unknown_charset_is_named() -> None:
    assert "unknown charset 'x-klingon'" in parse_error(b"{}", "application/json; charset=x-klingon").reason
