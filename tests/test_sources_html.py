"""The html source: selectors, encodings, base URLs and the errors a comms person sees."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from imk_outreach.errors import SourceError
from imk_outreach.models import Document, ParseResult, SourceSpec
from imk_outreach.sources.base import get_source
from imk_outreach.sources.html import HtmlSource
from imk_outreach.sources.normalize import normalize_all

PAGES = Path(__file__).parent / "fixtures" / "pages"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PAGE_URL = "https://www.example.org/news"
BFI_SELECTORS = {
    "item": "article.news",
    "title": "h3",
    "link": "h3 a@href",
    "summary": "p.teaser",
    "date": "time@datetime",
    "image": "img@src",
}


def spec(selectors: Mapping[str, str], name: str = "bfi") -> SourceSpec:
    return SourceSpec(name=name, type="html", url=PAGE_URL, language="de", tags=("bfi",), selectors=selectors)


def page(name: str, content_type: str | None = None, base_url: str = PAGE_URL) -> Document:
    return Document(
        source="bfi", base_url=base_url, body=(PAGES / name).read_bytes(), content_type=content_type
    )


def inline(body: str, content_type: str | None = "text/html; charset=utf-8") -> Document:
    return Document(source="bfi", base_url=PAGE_URL, body=body.encode("utf-8"), content_type=content_type)


def parse(doc: Document, selectors: Mapping[str, str]) -> ParseResult:
    return HtmlSource().parse(doc, spec(selectors))


def test_registered_as_the_html_source() -> None:
    assert isinstance(get_source("html"), HtmlSource)


def test_reads_every_item_with_its_fields() -> None:
    result = parse(page("news-utf8.html"), BFI_SELECTORS)
    assert len(result.entries) == 3
    first = result.entries[0]
    assert first.link == "drehstart-babelsberg?utm_source=newsletter&id=7#kommentare"
    assert first.published == "2026-11-20T09:00:00+01:00"
    assert first.image == "bilder/drehstart.jpg"
    assert first.title is not None and "Drehstart in Babelsberg &amp; Potsdam" in first.title
    assert first.summary is not None and first.summary.startswith("Die Dreharbeiten beginnen.")
    assert first.summary_format == "html"


def test_base_href_sets_the_base_url() -> None:
    result = parse(page("news-utf8.html"), BFI_SELECTORS)
    assert result.base_url == "https://www.example.org/aktuelles/"


def test_without_base_href_the_document_url_is_the_base() -> None:
    result = parse(page("news-latin1.html"), {"item": "div.eintrag"})
    assert result.base_url == PAGE_URL


def test_items_without_link_are_kept_with_link_none() -> None:
    result = parse(page("news-utf8.html"), BFI_SELECTORS)
    assert result.entries[2].link is None
    assert result.entries[2].title == "Ohne Link"


def test_end_to_end_with_normalisation() -> None:
    source = spec(BFI_SELECTORS)
    result = HtmlSource().parse(page("news-utf8.html"), source)
    items, skipped = normalize_all(result, PAGE_URL, source, NOW, {"film": ["Dreh"], "ki": ["KI"]}, BERLIN)
    assert skipped == 1
    assert [item.url for item in items] == [
        "https://www.example.org/aktuelles/drehstart-babelsberg?id=7",
        "https://www.example.org/ki-projekt",
    ]
    drehstart, ki = items
    assert drehstart.title == "Drehstart in Babelsberg & Potsdam"
    assert drehstart.published_at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert drehstart.image == "https://www.example.org/aktuelles/bilder/drehstart.jpg"
    assert "<script>" not in drehstart.summary_html and "alert" not in drehstart.summary_html
    assert 'href="https://www.example.org/presse/drehstart.pdf"' in drehstart.summary_html
    assert drehstart.tags == ("bfi", "film")
    assert ki.tags == ("bfi", "ki")
    assert 'style="' not in ki.summary_html
    assert ki.date_estimated is True  # no <time datetime> in this item


def test_date_as_text_in_german() -> None:
    source = spec({"item": "article.news", "date": "span.datum"})
    result = HtmlSource().parse(page("news-utf8.html"), source)
    assert result.entries[1].published == "Montag, 16. November 2026"
    items, _ = normalize_all(result, PAGE_URL, source, NOW, {}, BERLIN)
    assert items[1].published_at == datetime(2026, 11, 15, 23, 0, tzinfo=UTC)


def test_iso_8859_1_page_with_meta_charset() -> None:
    result = parse(page("news-latin1.html"), {"item": "div.eintrag", "title": "h2 a", "summary": "div.text"})
    entry = result.entries[0]
    assert entry.title == "Förderung für Größen der Medienbranche"
    assert entry.summary is not None
    assert "Übersicht über Zuschüsse bis 50.000 € – jetzt bewerben." in entry.summary  # windows-1252 € and –


def test_iso_8859_1_page_with_charset_in_content_type() -> None:
    doc = page("news-no-meta.html", content_type="text/html; charset=ISO-8859-1")
    result = parse(doc, {"item": "li.item", "date": "em"})
    assert result.entries[0].title == "Grüße aus Köln"
    assert result.entries[0].published == "12. Okt. 2026"
    assert result.entries[0].link == "/meldung/1"


def test_content_type_charset_wins_over_the_meta_charset() -> None:
    body = '<meta charset="iso-8859-1"><div class="n"><a href="/x">Grüße</a></div>'.encode()
    doc = Document(source="bfi", base_url=PAGE_URL, body=body, content_type='text/html; charset="UTF-8"')
    assert parse(doc, {"item": "div.n"}).entries[0].title == "Grüße"


def test_unknown_charset_in_content_type_falls_back_to_detection() -> None:
    doc = inline(
        '<meta charset="utf-8"><div class="n"><a href="/x">Grüße</a></div>', "text/html; charset=x-nonsense"
    )
    assert parse(doc, {"item": "div.n"}).entries[0].title == "Grüße"


def test_attribute_of_the_item_itself() -> None:
    doc = inline(
        '<a class="card" href="/a" data-date="2026-11-20" title="Karte &amp; Text"><h4>Erste</h4></a>'
        '<a class="card" href="/b" data-date="2026-11-21"><h4>Zweite</h4></a>'
    )
    result = parse(doc, {"item": "a.card", "date": "@data-date", "title": "@title"})
    assert [e.link for e in result.entries] == ["/a", "/b"]
    assert [e.published for e in result.entries] == ["2026-11-20", "2026-11-21"]
    assert result.entries[0].title == "Karte &amp; Text"  # escaped, so normalisation decodes it once
    assert result.entries[1].title is None


def test_defaults_link_title_and_date() -> None:
    doc = inline(
        '<div class="n"><h2>Überschrift</h2><time datetime="2026-11-20">20.11.</time>'
        '<a href="/mehr">weiterlesen</a></div>'
        '<div class="n"><a href="/zwei">Nur ein Link</a></div>'
    )
    result = parse(doc, {"item": "div.n"})
    first, second = result.entries
    assert (first.link, first.title, first.published) == ("/mehr", "Überschrift", "2026-11-20")
    assert (second.link, second.title, second.published) == ("/zwei", "Nur ein Link", None)


def test_plain_link_and_image_selectors_take_href_and_src() -> None:
    doc = inline('<div class="n"><h3><a href="/x">X</a></h3><figure><img src="/i.jpg"></figure></div>')
    entry = parse(doc, {"item": "div.n", "link": "h3", "image": "figure"}).entries[0]
    assert entry.link == "/x"
    assert entry.image == "/i.jpg"


def test_lazy_loaded_image_attribute() -> None:
    doc = inline('<div class="n"><a href="/x">X</a><img src="placeholder.gif" data-src="/echt.jpg"></div>')
    assert parse(doc, {"item": "div.n", "image": "img@data-src"}).entries[0].image == "/echt.jpg"


def test_hostile_summary_is_sanitised_after_normalisation() -> None:
    doc = inline(
        '<div class="n"><a href="/x">X</a><div class="t">'
        "<p>Text<script>alert(1)</script></p><style>p{}</style>"
        '<img src=x onerror="alert(1)"><iframe src="https://evil.example"></iframe>'
        '<a href="javascript:alert(1)">j</a><svg onload="alert(1)"></svg>'
        '<p style="color:red" onclick="alert(1)">Ende</p><a href="data:text/html,x">d</a>'
        "</div></div>"
    )
    source = spec({"item": "div.n", "summary": "div.t"})
    items, _ = normalize_all(HtmlSource().parse(doc, source), PAGE_URL, source, NOW, {}, BERLIN)
    html = items[0].summary_html
    for bad in (
        "script",
        "alert",
        "style",
        "onerror",
        "onclick",
        "iframe",
        "svg",
        "javascript:",
        "data:",
        "<img",
    ):
        assert bad not in html, bad
    assert html.startswith("<p>Text</p>")
    assert "<p>Ende</p>" in html


def test_missing_item_selector() -> None:
    with pytest.raises(SourceError) as info:
        parse(page("news-utf8.html"), {"title": "h3", "link": "h3 a@href"})
    assert "'item'" in str(info.value)
    assert "bfi" in str(info.value)


def test_no_selectors_at_all() -> None:
    with pytest.raises(SourceError, match="'item'"):
        parse(page("news-utf8.html"), {})


@pytest.mark.parametrize(
    ("selectors", "named"),
    [
        ({"item": "article..news"}, "article..news"),
        ({"item": "article.news", "title": "h3 >"}, "h3 >"),
        ({"item": "article.news", "date": "time[datetime@datetime"}, "time[datetime@datetime"),
        ({"item": "div:unknown-pseudo"}, "div:unknown-pseudo"),
    ],
)
def test_broken_selector_is_named(selectors: dict[str, str], named: str) -> None:
    with pytest.raises(SourceError) as info:
        parse(page("news-utf8.html"), selectors)
    assert repr(named) in str(info.value)
    assert "not a valid CSS selector" in str(info.value)


def test_unknown_selector_key() -> None:
    with pytest.raises(SourceError, match="unknown key 'titel'"):
        parse(page("news-utf8.html"), {"item": "article.news", "titel": "h3"})


def test_item_selector_must_not_take_an_attribute() -> None:
    with pytest.raises(SourceError, match="selectors.item"):
        parse(page("news-utf8.html"), {"item": "article@id"})


def test_selector_matching_nothing() -> None:
    with pytest.raises(SourceError) as info:
        parse(page("news-latin1.html"), {"item": "article.news"})
    assert str(info.value) == (
        f"source 'bfi' ({PAGE_URL}): selector 'article.news' matched nothing on the page; "
        "has the page layout changed?"
    )


def test_a_selector_that_finds_nothing_in_any_item_is_a_warning() -> None:
    result = parse(page("news-utf8.html"), {"item": "article.news", "date": "span.gibtsnicht"})
    assert len(result.entries) == 3
    assert result.warnings == ("selector date 'span.gibtsnicht' found nothing in any of the 3 items",)


def test_no_warning_when_the_selector_finds_something() -> None:
    assert parse(page("news-utf8.html"), BFI_SELECTORS).warnings == ()
