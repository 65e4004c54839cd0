"""One broken URL costs its entry (or only that field), never the source: every URL operation on feed
data goes through sources/urls.py, whose helpers answer instead of raising. The fixtures hold one entry
of each kind of broken URL (an invalid IPv6 literal, a port out of range or not a number, an IDNA error,
an overly long host, brackets around no IP address, a host character that NFKC turns into a delimiter,
a lone surrogate) between good ones."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imk_outreach.models import SourceSpec
from imk_outreach.services import catalog, ingest
from imk_outreach.sources import urls
from imk_outreach.sources.normalize import (
    absolute_url,
    canonical_url,
    image_url,
    normalize_all,
    sanitize_html,
)
from imk_outreach.sources.rss import parse_fast, parse_feedparser, read_feed
from tests.conftest import ConfigFactory
from tests.support.httpserver import FixtureServer

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = SourceSpec(name="kaputt", type="rss", url="https://cluster.example/feed.xml", language="de")

BAD_URLS = {
    "invalid IPv6": "http://cluster.c[o.example/news/1",
    "bracketed name": "http://[cluster]/news",
    "bad IPv6 literal": "http://[2001:db8::zz]/",
    "port out of range": "https://cluster.example:99999/news",
    "port not a number": "https://cluster.example:acht/news",
    "IDNA label too long": "https://" + "ä" * 64 + ".example/",
    "host too long": "https://" + ".".join(["a" * 60] * 5) + ".example/",
    "label too long": "https://" + "a" * 64 + ".example/",
    "NFKC delimiter": "http://cluster\u2100example.org/",
    "lone surrogate": "https://cluster.example/\ud800",
}
GOOD_RSS = [
    "Gute Nachricht",
    "Guid kaputt, Link gut",
    "Link kaputt, Guid gut",
    "Bild kaputt",
    "xml:base kaputt",
]
SKIPPED_RSS = [
    "Guid ist keine IPv6-Adresse",
    "Port zu groß",
    "Port keine Zahl",
    "IDNA-Fehler",
    "Host zu lang",
    "Klammern ohne IP",
    "NFKC-Zeichen im Host",
]


# --- the helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_URLS))
def test_every_url_helper_answers_for_a_broken_url(kind: str) -> None:
    url = BAD_URLS[kind]
    assert canonical_url(url) is None
    assert absolute_url(url) is None
    assert image_url(url, "file:///srv/news/feed.xml") is None
    # as a base, and as a protocol-relative reference against a good base
    assert canonical_url("/news/x", url) is None
    assert image_url("bild.jpg", url) is None
    assert canonical_url("//" + url.split("//", 1)[1], "https://cluster.example/") is None
    # relative links in a summary cannot be resolved against it: they lose their href, nothing raises
    assert sanitize_html('<a href="rel">y</a>', url) == '<a rel="noopener noreferrer">y</a>'
    assert urls.web_url(url) is None
    assert urls.url_problem(url), "a reason for the log line"
    assert urls.url_problem("/news/x", url)


def test_join_keeps_an_absolute_url_under_a_broken_base() -> None:
    assert urls.join_url("http://[kaputt/", "https://cluster.example/a") == "https://cluster.example/a"
    assert urls.join_url("http://[kaputt/", "a") is None
    assert urls.join_url("https://cluster.example/news/", "../a") == "https://cluster.example/a"


def test_good_urls_stay_good() -> None:
    assert canonical_url("http://[2001:DB8::1]:8080/x") == "http://[2001:db8::1]:8080/x"
    assert canonical_url("https://bücher.example/ä") == "https://xn--bcher-kva.example/%C3%A4"
    assert canonical_url("https://" + ".".join(["a" * 63] * 3) + ".de/") is not None  # 195 characters
    assert urls.url_problem("https://cluster.example/a") is None
    assert urls.is_reference("/relative/path") and not urls.is_reference("http://[kaputt")


def test_the_problem_is_named_in_words() -> None:
    assert "IPv6" in (urls.url_problem(BAD_URLS["invalid IPv6"]) or "")
    assert "port" in (urls.url_problem(BAD_URLS["port out of range"]) or "")
    assert "host" in (urls.url_problem(BAD_URLS["host too long"]) or "")
    assert "surrogate" in (urls.url_problem(BAD_URLS["lone surrogate"]) or "")
    assert "no base" in (urls.url_problem("/relative") or "")
    assert "mailto" in (urls.url_problem("mailto:presse@cluster.example") or "")


# --- the adapter and normalisation --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["lxml", "feedparser"])
def test_each_path_keeps_the_good_entries(path: str) -> None:
    body = (FEEDS / "bad_urls.xml").read_bytes()
    result = parse_fast(body) if path == "lxml" else parse_feedparser(body)
    items, _ = normalize_all(result, SPEC.url, SPEC, NOW, {}, UTC)
    by_title = {item.title: item for item in items}
    # feedparser drops a link it cannot resolve against xml:base, so it cannot fall back to the guid
    expected = [t for t in GOOD_RSS if path == "lxml" or t != "Link kaputt, Guid gut"]
    assert sorted(by_title) == sorted(expected)
    assert by_title["Guid kaputt, Link gut"].url == "https://cluster.example/news/link-gut"
    assert by_title["Bild kaputt"].image is None  # the broken image alone is left out
    assert by_title["xml:base kaputt"].url == "https://cluster.example/news/basis-kaputt"
    assert 'href="https://cluster.example/mehr"' in by_title["Gute Nachricht"].summary_html
    if path == "lxml":
        assert by_title["Link kaputt, Guid gut"].url == "https://cluster.example/news/guid-gut"


def test_a_skipped_entry_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    result, path = read_feed((FEEDS / "bad_urls.xml").read_bytes())
    with caplog.at_level(logging.INFO, logger="imk_outreach.sources.normalize"):
        items, skipped = normalize_all(result, SPEC.url, SPEC, NOW, {}, UTC)
    assert path == "lxml" and skipped == len(SKIPPED_RSS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(SKIPPED_RSS)
    for title, message in zip(SKIPPED_RSS, warnings, strict=True):
        assert message.startswith(f"source kaputt: entry '{title}' skipped: its link ")
    assert "Invalid IPv6 URL" in warnings[0] and "port" in warnings[1]
    assert any(
        "image 'https://cluster.example:77777/bild.jpg' left out" in r.getMessage() for r in caplog.records
    )


def test_character_references_to_no_character_do_not_stop_the_fallback() -> None:
    result, path = read_feed((FEEDS / "malformed_charrefs.xml").read_bytes())
    assert path == "feedparser"
    items, _ = normalize_all(result, SPEC.url, SPEC, NOW, {}, UTC)
    assert [item.title for item in items] == ["Surrogat \ufffd und \ufffd im Titel", "Nachbar"]
    assert items[0].summary_html == "Text \ufffd und \ufffd weiter"


# --- gathering: the source stays ok -------------------------------------------------------------------


def test_gathering_stores_the_good_entries_and_the_sources_stay_ok(
    make_settings: ConfigFactory, http_server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    sources = [
        {"name": "rss-kaputt", "type": "rss", "url": http_server.url("feeds/bad_urls.xml")},
        {"name": "json-kaputt", "type": "jsonfeed", "url": http_server.url("feeds/jsonfeed_bad_urls.json")},
        {
            "name": "seite-kaputt",
            "type": "html",
            "url": http_server.url("feeds/bad_urls_page.html"),
            "selectors": {"item": "article"},
        },
        {"name": "zeichen", "type": "rss", "url": http_server.url("feeds/malformed_charrefs.xml")},
    ]
    settings = make_settings(sources)
    with caplog.at_level(logging.WARNING):
        result = ingest.gather(settings)
    reports = {r.name: r for r in result.reports}
    assert {name: (r.status, r.error) for name, r in reports.items()} == {
        name: ("ok", None) for name in ("rss-kaputt", "json-kaputt", "seite-kaputt", "zeichen")
    }
    assert result.exit_code == 0
    assert reports["rss-kaputt"].new == len(GOOD_RSS)
    assert f"{len(SKIPPED_RSS)} entries without a usable link were skipped" in (
        reports["rss-kaputt"].warning or ""
    )
    stored = {(i.source, i.title): i for i in catalog.find_items(settings)}
    assert sorted(t for s, t in stored if s == "rss-kaputt") == sorted(GOOD_RSS)
    json_titles = sorted(t for s, t in stored if s == "json-kaputt")
    assert json_titles == ["JSON Bild kaputt", "JSON gut", "JSON relativ", "Titel mit \ufffd Surrogat"]
    assert (
        stored[("json-kaputt", "Titel mit \ufffd Surrogat")].summary_html == "<p>Text mit \ufffd Surrogat</p>"
    )
    assert stored[("json-kaputt", "JSON Bild kaputt")].image is None
    # a broken home_page_url is no base: the relative link resolves against the feed's own address
    assert stored[("json-kaputt", "JSON relativ")].url == http_server.url("news/json-relativ")
    assert [t for s, t in stored if s == "seite-kaputt"] == ["Seite gut"]
    assert stored[("seite-kaputt", "Seite gut")].url == http_server.url("aktuelles/seite-gut")
    assert reports["zeichen"].new == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "source rss-kaputt: entry 'Port zu groß' skipped" in logged
    assert "source json-kaputt: entry 'JSON IPv6 kaputt' skipped" in logged
    assert "source seite-kaputt: entry 'Seite Port kaputt' skipped" in logged
