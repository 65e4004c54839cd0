"""Gathering 50 feeds of 50 items from a loopback HTTP server (served by a separate process) with
imk-outreach (fetch, parse, normalise, sanitise, de-duplicate, store in SQLite) against a plain
sequential ``feedparser.parse(url)`` loop over the same URLs. Target: imk-outreach <= 0.5x the loop."""

from __future__ import annotations

import http.server
import logging
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import yaml

FEEDS = 50
ITEMS = 50
ROUNDS = 3
TOPICS = ["KI", "IoT", "Blockchain", "Film", "Games", "XR", "FinTech", "Design", "Sicherheit", "VFX"]


def make_feed(n: int) -> bytes:
    start = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    entries = []
    for i in range(ITEMS):
        topic = TOPICS[(n + i) % len(TOPICS)]
        url = f"https://news{n}.example/artikel/{i}-{topic.lower()}?utm_source=rss&utm_medium=feed"
        body = (
            f"<p>Neues aus dem Bereich <strong>{topic}</strong> in Berlin-Brandenburg: Projekt {n}-{i} "
            f'verbindet Forschung und Unternehmen. <a href="/mehr/{i}">Mehr erfahren</a></p>'
            "<p>Die Partner aus Wissenschaft und Wirtschaft stellen ihre Ergebnisse im Dezember vor; "
            'Anmeldung über das Clusterportal. <img src="/img/x.jpg" onerror="alert(1)"></p>'
        )
        entries.append(
            f"<item><title>{escape(topic)} &amp; Innovation: Meldung {n}-{i}</title>"
            f"<link>{escape(url)}</link>"
            f'<guid isPermaLink="false">n{n}-{i}</guid>'
            f"<pubDate>{format_datetime(start - timedelta(hours=i))}</pubDate>"
            f"<category>{topic}</category><description>{escape(body)}</description>"
            f'<enclosure url="https://news{n}.example/img/{i}.jpg" type="image/jpeg" length="0"/></item>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Quelle {n}</title><link>https://news{n}.example/</link><description>Bench</description>"
        + "".join(entries)
        + "</channel></rss>"
    ).encode()


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent SYNs, costing a 1 s retransmit
    daemon_threads = True


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve(root: str, ready: Any, port: Any) -> None:
    handler = partial(QuietHandler, directory=root)
    server = Server(("127.0.0.1", 0), handler)
    port.value = server.server_address[1]
    ready.set()
    server.serve_forever()


def sequential_feedparser(urls: list[str]) -> float:
    start = time.perf_counter()
    total = 0
    for url in urls:
        total += len(feedparser.parse(url).entries)
    elapsed = time.perf_counter() - start
    assert total == FEEDS * ITEMS, total  # the reference must really have read everything
    return elapsed


def imk_gather(urls: list[str], workdir: Path, round_no: int) -> tuple[float, int]:
    from imk_outreach.config import load_settings
    from imk_outreach.services import ingest
    from imk_outreach.services.database import dispose_all, engine_for

    config = workdir / f"config-{round_no}.yaml"
    sources = [
        {"name": f"feed{i}", "type": "rss", "url": url, "language": "de"} for i, url in enumerate(urls)
    ]
    data = {
        "database_url": f"sqlite:///bench-{round_no}.db",
        "sources": sources,
        "tagging": {"ki": ["KI"], "film": ["Film"], "fintech": ["FinTech"]},
    }
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = load_settings(config)
    engine_for(settings)  # create and migrate the database outside the timed part
    start = time.perf_counter()
    result = ingest.gather(settings)
    elapsed = time.perf_counter() - start
    dispose_all()
    return elapsed, sum(r.new for r in result.reports)


def main() -> None:
    logging.disable(logging.WARNING)
    print(f"== gather: {FEEDS} feeds x {ITEMS} items over loopback HTTP, best of {ROUNDS} ==")
    with tempfile.TemporaryDirectory(prefix="imk-bench-") as tmp:
        root = Path(tmp)
        (root / "feeds").mkdir()
        for n in range(FEEDS):
            (root / "feeds" / f"f{n}.xml").write_bytes(make_feed(n))
        ready, port = multiprocessing.Event(), multiprocessing.Value("i", 0)
        server = multiprocessing.Process(target=serve, args=(str(root), ready, port), daemon=True)
        server.start()
        ready.wait(10)
        urls = [f"http://127.0.0.1:{port.value}/feeds/f{n}.xml" for n in range(FEEDS)]
        try:
            reference, ours, stored = [], [], 0
            for round_no in range(ROUNDS):
                reference.append(sequential_feedparser(urls))
                elapsed, stored = imk_gather(urls, root, round_no)
                ours.append(elapsed)
        finally:
            server.terminate()
    ref, imk = min(reference), min(ours)
    ref_median, imk_median = statistics.median(reference) * 1000, statistics.median(ours) * 1000
    print(f"sequential feedparser.parse loop: {ref * 1000:8.1f} ms  (median {ref_median:.1f})")
    print(
        f"imk-outreach gather (+store):     {imk * 1000:8.1f} ms  (median {imk_median:.1f}),"
        f" {stored} items stored"
    )
    print(f"ratio imk/feedparser: {imk / ref:.2f}x  (target <= 0.50x)")
