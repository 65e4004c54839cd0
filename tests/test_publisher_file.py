"""The file channel: one JSON line per post, idempotent per key, whole lines under concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from imk_outreach.models import Facet, LinkCard, Post, PostImage
from imk_outreach.publishers import Outcome, PublishError, get_publisher_factory
from imk_outreach.publishers.file import FileOptions, FilePublisher
from imk_outreach.publishers.linkedin import LinkedInPublisher

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
FIELDS = {
    "key", "channel", "platform", "language", "post_key", "text", "length", "limit", "shortened", "fallbacks",
    "link", "facets", "card", "image", "published_at",
}  # fmt: skip


def make_post(text: str = "Drehstart in Babelsberg https://example.org/n/1", **changes: object) -> Post:
    values: dict[str, object] = {
        "channel": "dry-run",
        "platform": "bluesky",
        "language": "de",
        "key": "item-1",
        "text": text,
        "length": len(text),
        "limit": 300,
        "link": "https://example.org/n/1",
    }
    values.update(changes)
    return Post(**values)  # type: ignore[arg-type]


def publisher(path: Path, channel: str = "dry-run") -> FilePublisher:
    return FilePublisher(FileOptions(channel=channel, path=path))


def read_lines(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().split("\n")[:-1]]


def test_a_line_is_valid_json_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "posts" / "nested" / "bluesky.jsonl"  # the folders do not exist yet
    text = "Drehstart in Babelsberg\nzweite Zeile \u2028 mit Trenner https://example.org/n/1"
    link_start = len("Drehstart in Babelsberg\nzweite Zeile \u2028 mit Trenner ".encode())
    post = make_post(
        text,
        facets=(Facet(link_start, link_start + 23, "link", "https://example.org/n/1"),),
        card=LinkCard("https://example.org/n/1", "Drehstart", "Die Kameras laufen"),
        image=PostImage(str(tmp_path / "media" / "a.png"), "image/png", "Drehstart"),
        shortened=True,
        fallbacks=("item-1",),
    )
    with time_machine.travel(NOW, tick=False):
        result = publisher(path).publish(post, "outbox-17")
    assert result.outcome is Outcome.SENT
    assert result.remote_id == "bluesky.jsonl:1"
    assert len(path.read_bytes().splitlines()) == 1  # the raw U+2028 would have split the line
    [entry] = read_lines(path)
    assert set(entry) == FIELDS
    assert entry["key"] == "outbox-17"
    assert entry["post_key"] == "item-1"
    assert (entry["channel"], entry["platform"], entry["language"]) == ("dry-run", "bluesky", "de")
    assert (entry["text"], entry["length"], entry["limit"]) == (text, len(text), 300)
    assert entry["link"] == "https://example.org/n/1"
    assert entry["facets"] == [
        {
            "byte_start": link_start,
            "byte_end": link_start + 23,
            "kind": "link",
            "value": "https://example.org/n/1",
        }
    ]
    assert entry["card"] == {
        "url": "https://example.org/n/1",
        "title": "Drehstart",
        "description": "Die Kameras laufen",
    }
    assert entry["image"] == {"path": str(tmp_path / "media" / "a.png"), "alt": "Drehstart"}
    assert (entry["shortened"], entry["fallbacks"]) == (True, ["item-1"])
    assert datetime.fromisoformat(str(entry["published_at"])) == NOW


def test_a_post_without_card_or_image_has_nulls(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    publisher(path).publish(make_post(link=None), "k1")
    [entry] = read_lines(path)
    assert (entry["card"], entry["image"], entry["link"], entry["facets"]) == (None, None, None, [])


def test_the_same_key_twice_writes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    first = publisher(path).publish(make_post(), "outbox-1")
    other = publisher(path).publish(make_post("Ein anderer Post"), "outbox-2")
    again = publisher(path).publish(make_post(), "outbox-1")  # a new publisher: as after a crash
    assert [first.remote_id, other.remote_id, again.remote_id] == ["x.jsonl:1", "x.jsonl:2", "x.jsonl:1"]
    assert again.outcome is Outcome.SENT
    assert "already written" in again.reply
    assert [entry["key"] for entry in read_lines(path)] == ["outbox-1", "outbox-2"]


def test_the_same_key_on_another_channel_is_another_post(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    publisher(path, "x-de").publish(make_post(), "outbox-1")
    result = publisher(path, "mastodon").publish(make_post(), "outbox-1")
    assert result.remote_id == "shared.jsonl:2"
    assert [entry["channel"] for entry in read_lines(path)] == ["x-de", "mastodon"]


def test_a_line_cut_off_by_a_crash_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    publisher(path).publish(make_post(), "outbox-1")
    with path.open("ab") as handle:
        handle.write(b'{"key": "outbox-2", "chan')  # the crash came mid-line; never reported SENT
    result = publisher(path).publish(make_post("Zweiter"), "outbox-2")
    assert result.remote_id == "x.jsonl:2"
    assert [entry["key"] for entry in read_lines(path)] == ["outbox-1", "outbox-2"]


def _append_many(path: str, worker: int, count: int, results: Any) -> None:
    target = publisher(Path(path))
    for n in range(count):
        text = f"Post {worker}-{n} " + "x" * 5000  # long lines: a torn write would show
        result = target.publish(make_post(text, key=f"{worker}-{n}"), f"w{worker}-{n}")
        results.put((f"w{worker}-{n}", result.outcome.value, result.remote_id))


def test_processes_and_threads_appending_at_once_leave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "busy.jsonl"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_append_many, args=(str(path), w, 40, results)) for w in range(3)]
    threads = [threading.Thread(target=_append_many, args=(str(path), 10 + w, 40, results)) for w in range(3)]
    for worker in (*processes, *threads):
        worker.start()
    reported = [results.get(timeout=120) for _ in range(6 * 40)]
    for worker in (*processes, *threads):
        worker.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    entries = read_lines(path)  # every line parses
    keys = [entry["key"] for entry in entries]
    expected = {f"w{w}-{n}" for w in (0, 1, 2, 10, 11, 12) for n in range(40)}
    assert len(keys) == len(expected) and set(keys) == expected
    # each writer was told the line its post is really on
    assert {(key, outcome, remote_id) for key, outcome, remote_id in reported} == {
        (key, "sent", f"busy.jsonl:{number}") for number, key in enumerate(keys, start=1)
    }


def test_verify_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "posts.jsonl"
    assert publisher(path).verify() == f"writes to {path}"
    assert path.parent.is_dir()


def test_verify_and_publish_refuse_a_path_below_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where a folder should be")
    path = blocker / "posts" / "x.jsonl"
    with pytest.raises(PublishError) as raised:
        publisher(path).verify()
    assert str(path) in str(raised.value)
    assert not raised.value.retryable
    result = publisher(path).publish(make_post(), "k")
    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert str(path) in result.reply


def test_a_folder_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.mkdir()
    with pytest.raises(PublishError, match="posts.jsonl"):
        publisher(path).verify()
    assert publisher(path).publish(make_post(), "k").pause


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: permissions cannot refuse it")
def test_permission_denied_pauses_with_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = publisher(folder / "x.jsonl").publish(make_post(), "k")
        with pytest.raises(PublishError, match="Permission denied"):
            publisher(folder / "x.jsonl").verify()
    finally:
        folder.chmod(0o700)
    assert (result.outcome, result.pause) == (Outcome.FAILED, True)
    assert str(folder / "x.jsonl") in result.reply


def _publish_over_size_limit(path: str, queue: multiprocessing.Queue[tuple[str, bool, str]]) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a too-large write fails with EFBIG
    size = os.path.getsize(path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))
    result = publisher(Path(path)).publish(make_post("y" * 2000, key="big"), "too-big")
    queue.put((result.outcome.value, result.pause, result.reply))


def test_a_write_failure_that_may_pass_later_is_retry_and_leaves_no_part_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    publisher(path).publish(make_post(), "outbox-1")
    before = path.read_bytes()
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[str, bool, str]] = context.Queue()
    child = context.Process(target=_publish_over_size_limit, args=(str(path), queue))
    child.start()
    outcome, pause, reply = queue.get(timeout=60)
    child.join(timeout=60)
    assert (outcome, pause) == ("retry", False)
    assert "File too large" in reply
    assert path.read_bytes() == before


def test_the_registry_finds_the_file_and_linkedin_publishers() -> None:
    assert get_publisher_factory("file") is FilePublisher
    assert get_publisher_factory("linkedin") is LinkedInPublisher
