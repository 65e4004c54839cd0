"""Page load times of the staff web app with 1,000 items and 10,000 confirmed subscribers: the dashboard
(``GET /admin``), an edition page (``GET /admin/editions/{id}``) and its two newsletter frames
(``/html/de``, ``/html/en``), served by ``imk-outreach serve`` (uvicorn, its own process) and fetched
over loopback TCP with httpx, signed in. Once with the edition a draft, once after it is queued (10,000
rows in the outbox, whose counts both pages show). Per page: the first request of a freshly started
server process (cold) and the median and p95 of the next 20 (warm). The reference in the same run is
the style sheet ``/admin/static/admin.css`` (no session check, no database). SQLite, and PostgreSQL
when a server can be started here. Target: every page under 1 s.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 1_000
SUBSCRIBERS = 10_000
WARM = 20
TARGET_MS = 1000.0
PASSWORD = "Bench-Passwort 2026!"
SOURCES = ["cluster-news", "dehub-iot", "film-highlights", "games-net"]
TAGS = ["iot", "ki", "film", "games", "xr", "fintech"]
CAMPAIGN = """\
name: monthly
kind: newsletter
list: newsletter
languages: [de, en]
approval: required
min_items: 1
schedule: {cron: "0 9 1 * *"}
subject:
  de: "Der Blick nach vorne – {{ edition.date|month }}"
  en: "Looking ahead – {{ edition.date|month }}"
intro: {de: "Neues aus dem Cluster.", en: "News from the cluster."}
sections:
  - id: innovation
    heading: {de: Innovationsfelder, en: Innovation fields}
    select: {tags: [iot, ki, xr], since: 30d, max: 6}
  - id: media
    heading: {de: Medien, en: Media}
    select: {tags: [film, games], since: 30d, max: 6}
"""
SUMMARY = "<p>Die Partner aus Wissenschaft und Wirtschaft stellen ihre Ergebnisse vor.</p>"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def free_port() -> int:
    from tests.support.postgres import free_port as port

    return port()


def write_config(folder: Path, database_url: str, port: int) -> Path:
    (folder / "campaigns").mkdir(exist_ok=True)
    (folder / "campaigns" / "monthly.yaml").write_text(CAMPAIGN, encoding="utf-8")
    (folder / "manual").mkdir(exist_ok=True)
    sources: list[dict[str, Any]] = [{"name": SOURCES[0], "type": "manual", "url": "manual"}]
    sources += [
        {"name": name, "type": "rss", "url": f"https://{name}.example/feed.xml"} for name in SOURCES[1:]
    ]
    config = {
        "database_url": database_url,
        "public_url": f"http://127.0.0.1:{port}",
        "secret_key": "bench-secret-key-0123456789abcdef-0123",
        "sources": sources,
        "tagging": {tag: [tag.upper()] for tag in TAGS},
        "sender": {"name": "Cluster IMK", "email": "news@cluster.example"},
        "smtp": {"host": "127.0.0.1", "port": 9},  # nothing is sent
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def fill(config: Path, now: datetime, subscribers: int = SUBSCRIBERS) -> int:
    """1,000 items over 4 sources and 60 days (every third with an English translation), ``subscribers``
    confirmed subscribers (60 % German), the staff user ``bench`` and one composed edition; its id."""
    from imk_outreach.config import load_settings
    from imk_outreach.db import store
    from imk_outreach.models import NewsItem, Subscriber, Translation
    from imk_outreach.services import compose, staff
    from imk_outreach.services.database import dispose_all, engine_for

    settings = load_settings(config)
    batches: dict[str, list[NewsItem]] = {name: [] for name in SOURCES}
    for n in range(ITEMS):
        source = SOURCES[n % len(SOURCES)]
        translations = (
            {"en": Translation(f"News {n} from the cluster", "<p>Summary.</p>")} if n % 3 == 0 else {}
        )
        batches[source].append(
            NewsItem(
                id=f"item{n}",
                url=f"https://{source}.example/news/{n}",
                source=source,
                title=f"Meldung {n}: Neues aus dem Bereich {TAGS[n % len(TAGS)].upper()}",
                summary_html=SUMMARY,
                published_at=now - timedelta(hours=1 + n * 1.4),
                language="de",
                tags=(TAGS[n % len(TAGS)],),
                translations=translations,
            )
        )
    with engine_for(settings).begin() as conn:
        for source, batch in batches.items():
            store.upsert_items(conn, source, batch, now)
        for n in range(subscribers):
            person = Subscriber(
                email=f"person{n}@example.org",
                name=f"Person {n}",
                language="de" if n % 5 < 3 else "en",
                lists=("newsletter",),
                status="confirmed",
                signup_at=now - timedelta(days=n % 400),
                confirmed_at=now - timedelta(days=n % 400),
            )
            store.save_subscriber(conn, person, now - timedelta(days=n % 400))
    staff.add_user(settings, "bench", PASSWORD, email="bench@example.org", language="de", now=now)
    edition = compose.compose(settings, "monthly", now).edition
    assert edition is not None and edition.id is not None
    dispose_all()
    return edition.id


def queue(config: Path, edition_id: int, now: datetime) -> int:
    """Approve and queue the edition (10,000 outbox rows); the rows queued."""
    from imk_outreach.config import load_settings
    from imk_outreach.services import compose, dispatch
    from imk_outreach.services.database import dispose_all

    settings = load_settings(config)
    compose.approve(settings, edition_id, by="bench", now=now)
    report = dispatch.send(settings, "monthly", now, edition_id=edition_id)
    dispose_all()
    return report.queued


@contextmanager
def serving(config: Path, port: int) -> Iterator[str]:
    """``imk-outreach serve`` on ``port`` (a fresh process) until the block ends; its base URL. It is
    ready when it answers at all (the probe asks for the style sheet: no database, no template)."""
    command = [str(ROOT / ".venv" / "bin" / "imk-outreach"), "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = config.parent / "serve.log"
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, cwd=config.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/admin/static/admin.css", timeout=1)
                break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"imk-outreach serve did not start: {tail}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def sign_in(url: str) -> httpx.Cookies:
    """Sign in through the form, as a browser does; the session cookie (valid in any server process:
    sessions are stored in the database)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        form = client.get("/admin/login")
        token = CSRF_FIELD.search(form.text)
        assert token is not None, "no CSRF token on the sign-in page"
        data = {"username": "bench", "password": PASSWORD, "csrf_token": token.group(1), "next": "/admin"}
        answer = client.post("/admin/login", data=data)
        assert answer.status_code == 303, (answer.status_code, answer.text[:300])
        return httpx.Cookies(client.cookies)


def measure(url: str, cookies: httpx.Cookies, paths: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """Per label: (cold ms, median ms, p95 ms). Cold is each path's first request, in a server process
    that has answered nothing but the readiness probe (the style sheet); then ``WARM`` requests of
    each path, in turns."""
    times: dict[str, list[float]] = {label: [] for label in paths}
    with httpx.Client(base_url=url, cookies=cookies, timeout=60) as client:
        for round_no in range(WARM + 1):
            for label, path in paths.items():
                start = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - start) * 1000
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                if round_no == 0:
                    assert "/admin/login" not in str(response.url), "not signed in"
                times[label].append(elapsed)
    return {label: (found[0], statistics.median(found[1:]), p95(found[1:])) for label, found in times.items()}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def run_backend(name: str, database_url: str, folder: Path, subscribers: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    port = free_port()
    config = write_config(folder, database_url, port)
    start = time.perf_counter()
    edition_id = fill(config, now, subscribers)
    print(f"  {name}: filled in {time.perf_counter() - start:.1f} s (edition {edition_id})", flush=True)
    paths = {
        "reference: GET /admin/static/admin.css": "/admin/static/admin.css",
        "GET /admin (dashboard)": "/admin",
        f"GET /admin/editions/{edition_id}": f"/admin/editions/{edition_id}",
        f"GET /admin/editions/{edition_id}/html/de": f"/admin/editions/{edition_id}/html/de",
        f"GET /admin/editions/{edition_id}/html/en": f"/admin/editions/{edition_id}/html/en",
    }
    with serving(config, port) as url:
        cookies = sign_in(url)
    phases = [("edition a draft", None), ("edition queued", "queue")]
    for phase, action in phases:
        if action == "queue":
            rows = queue(config, edition_id, now)
            phase = f"{phase} ({rows:,} outbox rows)" if rows else phase
        with serving(config, port) as url:
            results = measure(url, cookies, paths)
        report(name, phase, results)


def report(backend: str, phase: str, results: dict[str, tuple[float, float, float]]) -> None:
    print(f"  {backend}, {phase}: ms, cold = first request of a fresh server process")
    print(f"    {'':<42} {'cold':>8} {'median':>8} {'p95':>8} {'p95/target':>11} {'median/ref':>11}")
    reference = next(iter(results.values()))[1]
    for label, (cold, median, high) in results.items():
        ratio = f"{median / reference:10.1f}x" if not label.startswith("reference") else f"{'':>11}"
        print(f"    {label:<42} {cold:8.1f} {median:8.1f} {high:8.1f} {high / TARGET_MS:10.2f}x {ratio}")
    pages = [values for label, values in results.items() if not label.startswith("reference")]
    slowest = max(max(cold, high) for cold, _median, high in pages)
    print(
        f"    slowest page (cold or p95): {slowest:.1f} ms, {slowest / TARGET_MS:.2f}x the 1 s target",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS, help="confirmed subscribers")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(
        f"== admin pages: {ITEMS:,} items, {args.subscribers:,} confirmed subscribers, one edition; "
        f"imk-outreach serve over loopback, {WARM} warm requests per page (target: < {TARGET_MS:.0f} ms) =="
    )
    with tempfile.TemporaryDirectory(prefix="imk-admin-bench-") as tmp:
        (Path(tmp) / "sqlite").mkdir()
        run_backend(
            "SQLite", f"sqlite:///{Path(tmp) / 'sqlite' / 'bench.db'}", Path(tmp) / "sqlite", args.subscribers
        )
        if args.sqlite_only:
            return
        from sqlalchemy import create_engine, text

        from tests.support.postgres import start_server

        try:
            server = start_server()
        except RuntimeError as exc:
            print(f"  PostgreSQL NOT RUN: the server could not start: {exc}")
            return
        try:
            engine = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text('CREATE DATABASE "imk_admin_bench"'))
            engine.dispose()
            (Path(tmp) / "postgres").mkdir()
            run_backend("PostgreSQL", server.url("imk_admin_bench"), Path(tmp) / "postgres", args.subscribers)
        finally:
            server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
