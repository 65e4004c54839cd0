"""Gathering end to end: a real HTTP server on loopback, the bundled samples, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imk_outreach import cli
from imk_outreach.services import catalog, ingest
from tests.conftest import REPO, ConfigFactory
from tests.support.httpserver import FixtureServer
from tests.support.postgres import free_port

SELECTORS = {
    "item": "article.news-teaser",
    "title": "h3 a",
    "link": "h3 a@href",
    "summary": "p.teaser",
    "date": "span.date",
    "image": "img@src",
}
SAMPLE_SOURCES = [
    ("dehub-iot", "rss", "feeds/dehub-iot.xml", "de", ["iot"]),
    ("bfi-news", "html", "pages/bfi-news.html", "de", ["fintech"]),
    ("film-highlights", "jsonfeed", "feeds/film-highlights.json", "en", ["film"]),
    ("games-xr", "rss", "feeds/games-xr.atom", "de", ["games"]),
]
DUPLICATE = "https://www.bfi-berlin.example/aktuelles/bezahlen-im-internet-der-dinge"
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<rss version="2.0"><channel><title>&lol3;</title><item><title>&lol3;</title>'
    b"<link>https://evil.example/1</link></item></channel></rss>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<rss version="2.0"><channel><title>x</title><item><title>&xxe;</title>'
    b"<link>https://evil.example/2</link></item></channel></rss>"
)
GOOD_FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://good.example/</link>'
    b"<item><title>Gute Nachricht</title><link>/news/1</link>"
    b"<pubDate>Mon, 23 Nov 2026 10:00:00 +0100</pubDate>"
    b'<description>&lt;p&gt;Siehe &lt;a href="/mehr"&gt;mehr&lt;/a&gt;&lt;/p&gt;</description></item>'
    b"</channel></rss>"
)


@pytest.fixture
def samples_server() -> FixtureServer:
    server = FixtureServer(REPO / "samples").start()
    yield server
    server.stop()


def sample_sources(server: FixtureServer) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    for name, kind, path, language, tags in SAMPLE_SOURCES:
        source: dict[str, Any] = {
            "name": name,
            "type": kind,
            "url": server.url(path),
            "language": language,
            "tags": tags,
        }
        if kind == "html":
            source["selectors"] = SELECTORS
        sources.append(source)
    sources.append(
        {"name": "cluster-news", "type": "manual", "url": str(REPO / "samples" / "manual"), "language": "de"}
    )
    return sources


def run_cli(capsys: pytest.CaptureFixture[str], settings_path: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--config", str(settings_path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_gather_samples_over_http(make_settings: ConfigFactory, samples_server: FixtureServer) -> None:
    settings = make_settings(
        sample_sources(samples_server), tagging={"ki": ["KI"], "blockchain": ["Blockchain"]}
    )
    result = ingest.gather(settings)
    assert [(r.name, r.status, r.error) for r in result.reports] == [
        (name, "ok", None) for name, *_ in SAMPLE_SOURCES
    ] + [("cluster-news", "ok", None)]
    assert result.exit_code == 0
    items = catalog.find_items(settings)
    seen = sum(r.seen for r in result.reports)
    assert len(items) == seen - 1 == sum(r.new for r in result.reports)  # one story is in two sources
    by_url = {i.url: i for i in items}
    shared = by_url[DUPLICATE]
    assert shared.sources == ("dehub-iot", "bfi-news") or shared.sources == ("bfi-news", "dehub-iot")
    assert {"iot", "fintech"} <= set(shared.tags)
    for item in items:
        assert "utm_" not in item.url and "#" not in item.url
        assert "<script" not in item.summary_html and "javascript:" not in item.summary_html
        assert "onclick" not in item.summary_html
        assert item.published_at.tzinfo is not None
        assert item.image is None or item.image.startswith("media/")  # a stored copy, never hot-linked
    undated = [i for i in items if i.date_estimated]
    assert len(undated) == 1 and undated[0].sources == ("bfi-news",)
    latin1 = [i for i in items if i.source == "games-xr"]
    assert latin1 and any(ch in "".join(i.title + i.summary_html for i in latin1) for ch in "äöüß")
    assert {i.language for i in items} == {"de", "en"}
    assert any(i.translations.get("en") for i in items if i.source == "cluster-news")


def test_second_gather_uses_conditional_get_and_adds_nothing(
    make_settings: ConfigFactory, samples_server: FixtureServer
) -> None:
    settings = make_settings(sample_sources(samples_server))
    first = ingest.gather(settings)
    count = len(catalog.find_items(settings))
    second = ingest.gather(settings)
    assert {r.status for r in second.reports} == {"not_modified"}  # the local manual folder too
    assert sum(r.new + r.updated for r in second.reports) == 0
    assert len(catalog.find_items(settings)) == count
    assert sum(samples_server.conditional_hits.values()) == len(SAMPLE_SOURCES)
    assert sum(r.new for r in first.reports) == count


def test_unchanged_source_without_validators_reports_nothing_new(
    make_settings: ConfigFactory, http_server: FixtureServer
) -> None:
    http_server.routes["/plain.xml"] = (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED)
    settings = make_settings([{"name": "plain", "type": "rss", "url": http_server.url("plain.xml")}])
    assert [(r.status, r.new) for r in ingest.gather(settings).reports] == [("ok", 1)]
    assert [(r.status, r.new, r.updated) for r in ingest.gather(settings).reports] == [("ok", 0, 0)]


def test_relative_links_resolve_against_the_feed(
    make_settings: ConfigFactory, http_server: FixtureServer
) -> None:
    http_server.routes["/good.xml"] = (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED)
    settings = make_settings([{"name": "good", "type": "rss", "url": http_server.url("good.xml")}])
    ingest.gather(settings)
    [item] = catalog.find_items(settings)
    assert item.url == "https://good.example/news/1"
    assert 'href="https://good.example/mehr"' in item.summary_html


def test_broken_sources_fail_alone(make_settings: ConfigFactory, http_server: FixtureServer) -> None:
    http_server.routes.update(
        {
            "/good.xml": (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED),
            "/gone.xml": (404, {"Content-Type": "text/plain"}, b"not here"),
            "/error.xml": (500, {"Content-Type": "text/plain"}, b"oops"),
            "/page.xml": (
                200,
                {"Content-Type": "text/html"},
                b"<html><body><p>Wartungsarbeiten</p></body></html>",
            ),
            "/lol.xml": (200, {"Content-Type": "application/rss+xml"}, BILLION_LAUGHS),
            "/xxe.xml": (200, {"Content-Type": "application/rss+xml"}, XXE),
        }
    )
    names = ["good", "gone", "error", "page", "lol", "xxe"]
    sources = [{"name": n, "type": "rss", "url": http_server.url(f"{n}.xml")} for n in names]
    sources.append({"name": "dead", "type": "rss", "url": f"http://127.0.0.1:{free_port()}/feed.xml"})
    sources.append({"name": "missing", "type": "rss", "url": "does/not/exist.xml"})
    settings = make_settings(sources)
    result = ingest.gather(settings)
    reports = {r.name: r for r in result.reports}
    assert result.exit_code == 3
    assert reports["good"].status == "ok" and reports["good"].new == 1
    assert "HTTP 404" in (reports["gone"].error or "")
    assert "HTTP 500" in (reports["error"].error or "")
    assert reports["page"].status == "error" and reports["page"].error
    assert "entit" in (reports["lol"].error or "").lower()
    assert "entit" in (reports["xxe"].error or "").lower()
    assert "root:" not in json.dumps([r.error for r in result.reports])
    assert "connection failed" in (reports["dead"].error or "")
    assert "file not found" in (reports["missing"].error or "")
    assert [i.title for i in catalog.find_items(settings)] == ["Gute Nachricht"]
    statuses = {s.name: s for s in catalog.source_statuses(settings)}
    assert statuses["gone"].state == "failing" and statuses["gone"].health.consecutive_failures == 1
    ingest.gather(settings, ["gone"])
    assert catalog.source_statuses(settings)[1].health.consecutive_failures == 2
    http_server.routes["/gone.xml"] = (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED)
    assert ingest.gather(settings, ["gone"]).exit_code == 0
    healed = catalog.source_statuses(settings)[1].health
    assert healed.consecutive_failures == 0 and healed.last_success_at is not None
    assert healed.last_error and "404" in healed.last_error  # the last error is still shown with its time


def test_timeout_size_cap_and_redirects(make_settings: ConfigFactory, http_server: FixtureServer) -> None:
    http_server.routes["/good.xml"] = (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED)
    sources = [
        {"name": "slow", "type": "rss", "url": http_server.url("slow/3/good.xml")},
        {"name": "huge", "type": "rss", "url": http_server.url("huge")},
        {"name": "hops", "type": "rss", "url": http_server.url("redirect/2/good.xml")},
        {"name": "loop", "type": "rss", "url": http_server.url("redirect/9/good.xml")},
    ]
    settings = make_settings(sources, gather={"timeout": 0.5, "max_bytes": 100_000, "max_redirects": 3})
    reports = {r.name: r for r in ingest.gather(settings).reports}
    assert "timeout" in (reports["slow"].error or "")
    assert "larger than the 0.1 MB limit" in (reports["huge"].error or "")
    assert reports["hops"].status == "ok" and reports["hops"].new == 1
    assert "more than 3 redirects" in (reports["loop"].error or "")


def test_declared_content_length_over_cap(make_settings: ConfigFactory, http_server: FixtureServer) -> None:
    http_server.routes["/big.xml"] = (
        200,
        {"Content-Type": "application/rss+xml"},
        GOOD_FEED + b" " * 200_000,
    )
    settings = make_settings(
        [{"name": "big", "type": "rss", "url": http_server.url("big.xml")}], gather={"max_bytes": 100_000}
    )
    [report] = ingest.gather(settings).reports
    assert report.status == "error" and "limit" in (report.error or "")
    assert http_server.hits["/big.xml"] == 1


def test_fetching_is_concurrent_but_bounded(make_settings: ConfigFactory, http_server: FixtureServer) -> None:
    http_server.routes["/good.xml"] = (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED)
    sources = [
        {"name": f"s{i}", "type": "rss", "url": http_server.url(f"slow/0.3/good.xml?n={i}")} for i in range(6)
    ]
    settings = make_settings(sources, gather={"concurrency": 2})
    result = ingest.gather(settings)
    assert result.exit_code == 0
    assert http_server.max_in_flight == 2
    assert all(ua.startswith("imk-outreach/") for ua in http_server.user_agents)


def test_cli_gather_items_and_sources(
    make_settings: ConfigFactory, samples_server: FixtureServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        sample_sources(samples_server)
        + [{"name": "broken", "type": "rss", "url": samples_server.url("feeds/nope.xml")}]
    )
    code, out, _ = run_cli(capsys, settings.config_path, "gather", "--json")
    data = json.loads(out)
    assert code == 3
    assert set(data) == {"sources"}
    assert {"name", "status", "new", "updated", "error", "warning"} <= set(data["sources"][0])
    assert data["sources"][-1]["status"] == "error" and "404" in data["sources"][-1]["error"]

    code, out, _ = run_cli(capsys, settings.config_path, "items", "--json", "--tag", "film")
    items = json.loads(out)["items"]
    assert code == 0 and items
    first = items[0]
    assert {
        "id",
        "source",
        "sources",
        "url",
        "title",
        "summary_html",
        "published_at",
        "language",
        "tags",
        "image",
        "translations",
    } <= set(first)
    assert all("film" in i["tags"] for i in items)
    assert "+" in first["published_at"] or first["published_at"].endswith("+00:00")

    code, out, _ = run_cli(capsys, settings.config_path, "items", "--source", "bfi-news")
    assert code == 0 and "bfi-news" in out and "(undated)" in out

    code, out, _ = run_cli(capsys, settings.config_path, "sources")
    assert code == 0 and "failing" in out and "HTTP 404" in out and "dehub-iot" in out

    code, out, _ = run_cli(capsys, settings.config_path, "gather", "--source", "games-xr")
    assert code == 0 and "games-xr" in out and "not modified" in out


def test_cli_errors_for_staff(
    make_settings: ConfigFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = make_settings([{"name": "a", "type": "rss", "url": "a.xml"}])
    code, _, err = run_cli(capsys, settings.config_path, "gather", "--source", "nope")
    assert code == 1 and "no source named 'nope'" in err and "known: a" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources:\n  - {name: a, type: rss, url: a.xml, lang: de}\n", encoding="utf-8")
    code, _, err = run_cli(capsys, broken, "gather")
    assert code == 1 and f"{broken}:2:" in err and "sources[0].lang: unknown key" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["items", "--since", "lately", "--config", str(settings.config_path)])
    assert info.value.code == 2
    assert "--since" in capsys.readouterr().err


def test_edited_manual_file_is_read_again(make_settings: ConfigFactory, tmp_path: Path) -> None:
    folder = tmp_path / "manual"
    folder.mkdir()
    item = "- url: https://cluster.example/news/1\n  published: 2026-11-20\n  title: {de: Erste Fassung}\n"
    (folder / "news.yaml").write_text(item, encoding="utf-8")
    settings = make_settings([{"name": "manual", "type": "manual", "url": "manual"}])
    assert [(r.status, r.new) for r in ingest.gather(settings).reports] == [("ok", 1)]
    assert [r.status for r in ingest.gather(settings).reports] == ["not_modified"]
    (folder / "news.yaml").write_text(item.replace("Erste", "Zweite"), encoding="utf-8")
    assert [(r.status, r.updated) for r in ingest.gather(settings).reports] == [("ok", 1)]
    assert [i.title for i in catalog.find_items(settings)] == ["Zweite Fassung"]
