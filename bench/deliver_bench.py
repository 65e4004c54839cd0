"""Delivery end to end (claim, personalise, send, mark) of 20,000 messages of about 40 KB to Postfix's
``smtp-sink`` on loopback, against Postfix's own ``smtp-source`` sending the same number and size over
the same number of parallel sessions; plus the peak memory of ``deliver`` for 10,000 and 100,000 queued
recipients. Target: >= 0.5x smtp-source's rate; memory for 100,000 within 1.2x of 10,000."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

MESSAGES = 20_000
SESSIONS = 4
SIZE = 40_000
ITEMS = 6
CAMPAIGN = """\
name: bench
list: newsletter
languages: [de, en]
approval: auto
min_items: 1
subject: {de: "Benchmark {{ edition.date|month }}", en: "Benchmark {{ edition.date|month }}"}
intro: {de: "Hallo.", en: "Hello."}
sections:
  - {id: all, heading: {de: Alles, en: Everything}, select: {tags: [bench]}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    command = ["smtp-sink", "-c", "-u", "postfix", f"127.0.0.1:{port}", "1024"]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return sink
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start")


def smtp_source(port: int, sessions: int) -> float:
    command = [
        "smtp-source",
        "-s",
        str(sessions),
        "-m",
        str(MESSAGES),
        "-l",
        str(SIZE),
        "-f",
        "news@bench.example",
        "-t",
        "reader@bench.example",
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def prepare(
    workdir: Path, port: int, recipients: int, sessions: int, database_url: str | None = None
) -> Path:
    """A config, a database with ``recipients`` confirmed subscribers and a queued ~40 KB edition
    (default database: a SQLite file in ``workdir``)."""
    from sqlalchemy import insert

    from imk_outreach.config import load_settings
    from imk_outreach.db import store
    from imk_outreach.db.tables import subscriber_lists, subscribers
    from imk_outreach.models import NewsItem
    from imk_outreach.services import dispatch
    from imk_outreach.services.database import dispose_all, engine_for

    (workdir / "campaigns").mkdir(exist_ok=True)
    (workdir / "campaigns" / "bench.yaml").write_text(CAMPAIGN, "utf-8")
    config = workdir / "config.yaml"
    data = {
        "database_url": database_url or f"sqlite:///bench-{recipients}.db",
        "secret_key": "bench-secret-of-at-least-32-characters-x",
        "sources": [{"name": "bench", "type": "manual", "url": "manual"}],
        "smtp": {"host": "127.0.0.1", "port": port, "connections": sessions, "batch_size": 500},
    }
    config.write_text(yaml.safe_dump(data), "utf-8")
    settings = load_settings(config)
    now = datetime.now(UTC)
    filler = "<p>" + ("Forschung und Unternehmen der Hauptstadtregion arbeiten zusammen. " * 20) + "</p>"
    items = [
        NewsItem(
            id=f"b{n}",
            url=f"https://bench.example/{n}",
            source="bench",
            title=f"Meldung {n}",
            summary_html=filler,
            published_at=now - timedelta(hours=n),
            language="de",
            tags=("bench",),
            image=f"https://bench.example/{n}.jpg",
        )
        for n in range(ITEMS)
    ]
    engine = engine_for(settings)
    with engine.begin() as conn:
        store.upsert_items(conn, "bench", items, now)
        for start in range(0, recipients, 5000):
            rows = [
                {
                    "id": n + 1,
                    "email": f"reader{n}@bench.example",
                    "email_key": f"reader{n}@bench.example",
                    "name": f"Leserin {n}",
                    "language": "de" if n % 3 else "en",
                    "status": "confirmed",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(start, min(start + 5000, recipients))
            ]
            conn.execute(insert(subscribers), rows)
            conn.execute(
                insert(subscriber_lists), [{"subscriber_id": r["id"], "list": "newsletter"} for r in rows]
            )
    report = dispatch.send(settings, "bench", now)
    with engine.connect() as conn:
        size = len(store.get_edition_messages(conn, report.edition.id)["de"].html)
    print(f"  prepared {report.queued:,} queued recipients; HTML part {size / 1000:.0f} KB")
    dispose_all()
    return config


def deliver_processes(config: Path, processes: int = 1) -> tuple[float, int]:
    """Run ``imk-outreach deliver --until-empty --processes N`` as a command; (seconds, peak RSS in KB
    of the largest process)."""
    command = [sys.executable, "-c", _MEASURE, str(config), str(processes)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


_MEASURE = """
import resource, sys, time
from imk_outreach.config import load_settings
from imk_outreach.services import dispatch
settings = load_settings(sys.argv[1])
start = time.perf_counter()
report = dispatch.deliver_parallel(settings, int(sys.argv[2]), until_empty=True)
elapsed = time.perf_counter() - start
assert report.failed == 0, report
usage = resource.getrusage
peak = max(usage(resource.RUSAGE_SELF).ru_maxrss, usage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(elapsed, peak)
"""


def main() -> None:
    logging.disable(logging.WARNING)
    print(
        f"== deliver: {MESSAGES:,} messages of ~{SIZE // 1000} KB to smtp-sink, {SESSIONS} SMTP sessions =="
    )
    if not (shutil.which("smtp-sink") and shutil.which("smtp-source")):
        print("  skipped: smtp-sink/smtp-source not found (Debian package postfix)")
        return
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory(prefix="imk-deliver-") as tmp:
            reference = MESSAGES / smtp_source(port, SESSIONS)
            print(f"  smtp-source, {SESSIONS} sessions:              {reference:8,.0f} messages/s")
            for processes in (1, 2):
                config = _prepared(tmp, port, MESSAGES, SESSIONS, f"rate-{processes}")
                seconds, _ = deliver_processes(config, processes)
                rate = MESSAGES / seconds
                label = f"imk-outreach deliver --processes {processes} ({SESSIONS} sessions):"
                print(
                    f"  {label:<44}{rate:8,.0f} messages/s  ratio {rate / reference:.2f}x  (target >= 0.50x)"
                )
            print("== deliver: peak memory of one deliver process by queue length ==")
            peaks = {}
            for count in (10_000, 100_000):
                seconds, peak = deliver_processes(_prepared(tmp, port, count, SESSIONS, f"mem-{count}"))
                peaks[count] = peak
                print(
                    f"  {count:>7,} recipients: peak {peak / 1024:6.1f} MB, {count / seconds:,.0f} messages/s"
                )
            print(f"  ratio 100k/10k: {peaks[100_000] / peaks[10_000]:.2f}x  (target <= 1.20x)")
    finally:
        sink.terminate()
        sink.wait(5)


def _prepared(tmp: str, port: int, count: int, connections: int, name: str) -> Path:
    folder = Path(tmp) / name
    folder.mkdir()
    return prepare(folder, port, count, connections)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
