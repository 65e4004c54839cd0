"""Web sign-up answer times per address state, through the in-process app on SQLite with no mail server
listening: a new address, a pending one owed a new mail, one mailed a moment ago, a confirmed one; once
with ``signup.answer_time: 0`` (the work itself) and once as configured by default (what a visitor sees).
The reference is ``GET /subscribe`` (the form: no database write) in the same run. Target: with the
default, the states' medians within 1.05x of each other (nobody tells them apart by timing); the work
itself well below ``answer_time``, and no SMTP wait in any state.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

REQUESTS = 60
FORM = {"name": "Anna", "language": "en", "lists": ["newsletter"]}


def _settings(folder: Path, **signup: Any) -> Any:
    from imk_outreach.config import load_settings

    config = {
        "database_url": f"sqlite:///{folder / 'bench.db'}",
        "sources": [],
        "smtp": {"host": "127.0.0.1", "port": 9},  # nothing listens: a sign-up must not care
        "signup": {"per_client": "off", "overall": "off", "per_mailbox": "off", **signup},
        "secret_key": "bench-secret-key-0123456789abcdef-0123",
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path)


def _known(settings: Any, count: int, now: datetime) -> None:
    """``count`` addresses in each stored state the sign-up treats differently."""
    from imk_outreach.db import store
    from imk_outreach.models import Subscriber
    from imk_outreach.services.database import engine_for

    states = {"pending": timedelta(hours=1), "recent": timedelta(minutes=1), "confirmed": timedelta(days=9)}
    with engine_for(settings).begin() as conn:
        for kind, ago in states.items():
            for n in range(count):
                status = "confirmed" if kind == "confirmed" else "pending"
                person = Subscriber(
                    email=f"{kind}{n}@example.org",
                    language="en",
                    lists=("newsletter",),
                    status=status,
                    signup_at=now - ago,
                )
                store.save_subscriber(conn, person, now - ago)


def _measure(**signup: Any) -> dict[str, float]:
    """Median ms per state (and of the form page) with these ``signup`` settings, in a fresh database."""
    from imk_outreach.services.database import dispose_all
    from imk_outreach.web.app import create_app

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), **signup)
        _known(settings, REQUESTS, now)
        app = create_app(settings, clock=lambda: now)

        async def run() -> dict[str, float]:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                medians = {}
                for kind in ("new", "pending", "recent", "confirmed", "form"):
                    times = []
                    for n in range(REQUESTS):
                        data = {**FORM, "email": f"{kind}{n}@example.org"}
                        start = time.perf_counter()
                        if kind == "form":
                            response = await client.get("/subscribe")
                        else:
                            response = await client.post("/subscribe?lang=en", data=data)
                        times.append((time.perf_counter() - start) * 1000)
                        assert response.status_code == 200, (kind, response.status_code)
                    medians[kind] = statistics.median(times)
                return medians

        try:
            return asyncio.run(run())
        finally:
            dispose_all()


def main() -> None:
    from imk_outreach.config import SignupSettings

    logging.getLogger("imk_outreach").setLevel(logging.ERROR)
    default = SignupSettings().answer_time
    runs = {
        "the work itself (answer_time 0)": _measure(answer_time=0),
        f"as answered (answer_time {default})": _measure(),
    }
    print(f"web sign-up, median ms of {REQUESTS} per state (SQLite, mail server down):")
    labels = {
        "new": "new address",
        "pending": "pending, mail due",
        "recent": "pending, mailed just now",
        "confirmed": "confirmed",
        "form": "reference: GET /subscribe",
    }
    names = list(runs)
    print(f"  {'':<28} {names[0]:>34} {names[1]:>30}")
    for kind, label in labels.items():
        print(f"  {label:<28} {runs[names[0]][kind]:>34.2f} {runs[names[1]][kind]:>30.2f}")
    for name, medians in runs.items():
        states = [medians[k] for k in ("new", "pending", "recent", "confirmed")]
        print(f"  slowest / fastest state, {name}: {max(states) / min(states):.2f}x")
    print("  target: as answered <= 1.05x; the work itself well below answer_time")


if __name__ == "__main__":
    main()
