"""Run every XML file of a feed corpus through the ``rss`` adapter and compare its two paths.

``python bench/feed_corpus.py FOLDER [--show raw|items|crash|declined]`` reads each ``*.xml`` below FOLDER
(for instance a checkout of feedparser's ``tests/`` folder; nothing of it is stored here) and reports:

- **crashes**: reading the feed as gathering does (``read_feed``, then ``normalize_all``) raised anything
  other than the adapter's own "not a feed" or "unsafe document" errors;
- **declined**: documents the lxml fast path leaves to feedparser (not well-formed, unknown root, ...);
- **raw differences**: for the other documents, entries whose fields (link, title, summary and its
  format, date, image, tags, base URL) differ between the fast path and the feedparser fallback;
- **item differences**: the same after normalisation (canonical URL, plain title, sanitised summary,
  date, image, tags), which is what a newsletter would show.

It prints figures and never asserts; run it by hand (it is not part of ``make bench``, and no test
needs the corpus: the tests hold their own small fixtures).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from imk_outreach.errors import UnsafeDocumentError
from imk_outreach.models import NewsItem, ParseResult, SourceSpec
from imk_outreach.sources import rss
from imk_outreach.sources.normalize import normalize_all

DOC_URL = "http://example.test/feed.xml"
SPEC = SourceSpec(name="corpus", type="rss", url=DOC_URL, language="en")
NO_LINK = "http://example.test/entry-without-link"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
RAW_FIELDS = ("link", "title", "summary", "summary_format", "published", "image", "tags", "base_url")
ITEM_FIELDS = ("url", "title", "summary_html", "published_at", "image", "tags")


@dataclass
class Tally:
    files: int = 0
    refused: int = 0
    declined: Counter[str] = field(default_factory=Counter)
    compared: int = 0
    crashes: dict[str, str] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)
    items: dict[str, list[str]] = field(default_factory=dict)


def _items(result: ParseResult) -> list[NewsItem]:
    """The entries normalised as gathering does; an entry without a link gets a stand-in, so that what
    the two paths read of it is compared too (gathering would skip it)."""
    entries = tuple(replace(entry, link=entry.link or NO_LINK) for entry in result.entries)
    return normalize_all(replace(result, entries=entries), DOC_URL, SPEC, NOW, {}, UTC)[0]


def _differences(fast: Sequence[object], slow: Sequence[object], names: Sequence[str]) -> list[str]:
    found = {"count"} if len(fast) != len(slow) else set()
    for a, b in zip(fast, slow, strict=False):
        found.update(name for name in names if getattr(a, name) != getattr(b, name))
    return sorted(found)


def _gather_like(body: bytes) -> str | None:
    """The crash, if reading the document as gathering does raises something unexpected."""
    try:
        result, _ = rss.read_feed(body)
        normalize_all(result, DOC_URL, SPEC, NOW, {}, UTC)
    except (rss.FeedReadError, UnsafeDocumentError):
        return None
    except Exception as exc:  # noqa: BLE001 - that is what the checker looks for
        return f"{type(exc).__name__}: {exc}"
    return None


def check(name: str, body: bytes, tally: Tally) -> None:
    tally.files += 1
    crash = _gather_like(body)
    if crash:
        tally.crashes[name] = crash
    try:
        fast = rss.parse_fast(body)
    except UnsafeDocumentError:
        tally.refused += 1
        return
    except rss.FastPathUnavailable as exc:
        tally.declined[exc.reason.split(" at line")[0]] += 1
        return
    except Exception as exc:  # noqa: BLE001
        tally.crashes.setdefault(name, f"fast path: {type(exc).__name__}: {exc}")
        return
    try:
        slow = rss.parse_feedparser(body)
    except rss.FeedReadError:
        slow = ParseResult(entries=())
    tally.compared += 1
    raw = _differences(fast.entries, slow.entries, RAW_FIELDS)
    if raw:
        tally.raw[name] = raw
    try:
        items = _differences(_items(fast), _items(slow), ITEM_FIELDS)
    except Exception as exc:  # noqa: BLE001
        tally.crashes.setdefault(name, f"normalising: {type(exc).__name__}: {exc}")
        return
    if items:
        tally.items[name] = items


def _per_field(found: dict[str, list[str]]) -> str:
    counts = Counter(name for names in found.values() for name in names)
    return ", ".join(f"{name} {count}" for name, count in counts.most_common()) or "-"


def report(tally: Tally, show: str | None) -> None:
    declined = sum(tally.declined.values())
    print(f"files {tally.files}, refused as unsafe {tally.refused}, left to feedparser {declined}")
    print(f"crashes {len(tally.crashes)}")
    print(f"compared on both paths {tally.compared}")
    print(f"  raw entries differ in {len(tally.raw)} files ({_per_field(tally.raw)})")
    print(f"  normalised items differ in {len(tally.items)} files ({_per_field(tally.items)})")
    listing = {"raw": tally.raw, "items": tally.items, "crash": tally.crashes}.get(show or "")
    if show == "declined":
        for reason, count in tally.declined.most_common():
            print(f"{count:5}  {reason}")
    for name, what in sorted((listing or {}).items()):
        print(f"{name}: {what}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--show", choices=["raw", "items", "crash", "declined"])
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    tally = Tally()
    for path in sorted(args.folder.rglob("*.xml")):
        check(str(path.relative_to(args.folder)), path.read_bytes(), tally)
    report(tally, args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
