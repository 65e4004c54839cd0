"""How long a social post is on each platform, and the text cuts that make one fit.

Each platform counts differently, and each count here follows what the platform's server enforces:

* **X**: the weighted length of twitter-text (the ``twitter-text-parser`` package, the published v3
  configuration): every URL counts 23 (t.co), a character outside Latin/Greek/Cyrillic and general
  punctuation (CJK, emoji, also "…" U+2026) weighs 2, an emoji sequence counts as one emoji. Bare domains
  (``bfi.de``) are URLs there too.
* **Mastodon**: what ``StatusLengthValidator`` counts: extended grapheme clusters of the text in which
  every URL with an ``http(s)://`` scheme is replaced by 23 characters and a remote mention
  ``@user@domain`` by ``@user``.
* **Bluesky**: extended grapheme clusters (the lexicon's ``maxGraphemes: 300``); a link is shown in a short
  display form and carried as a facet, so only the display form counts.
* **LinkedIn**: characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

import regex  # type: ignore[import-untyped]  # no type information shipped
from twitter_text import extract_urls_with_indices, parse_tweet

LIMITS: Mapping[str, int] = MappingProxyType({"x": 280, "mastodon": 500, "bluesky": 300, "linkedin": 3000})
URL_LENGTH = 23
DISPLAY_LINK_LENGTH = 25
ELLIPSIS = "…"
# How each platform's count is qualified in messages ("301 of 280 characters on x (weighted)").
UNITS: Mapping[str, str] = MappingProxyType(
    {"x": " (weighted)", "mastodon": " (URLs count 23)", "bluesky": " (graphemes)", "linkedin": ""}
)

_GRAPHEME = regex.compile(r"\X")
# Mastodon's Account::MENTION_RE: a remote mention counts only as its local part.
_MENTION = re.compile(r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@\w+(?:[.-]+\w+)*)?", re.IGNORECASE)
_TRIMMED_BEFORE_ELLIPSIS = " ,;:–-"
_MANY_NEWLINES = re.compile(r"\n{3,}")


def count(platform: str, text: str) -> int:
    """The length of ``text`` as ``platform`` counts it (see the module docstring).

    :raises ValueError: for a platform not in :data:`LIMITS`.
    """
    if platform == "x":
        return int(parse_tweet(text).weightedLength) if text else 0
    if platform == "mastodon":
        return graphemes(_MENTION.sub(r"@\1", _urls_as_placeholders(text)))
    if platform == "bluesky":
        return graphemes(text)
    if platform == "linkedin":
        return len(text)
    raise ValueError(unknown_platform(platform))


def limit_of(platform: str) -> int:
    """The platform's maximum length.

    :raises ValueError: for a platform not in :data:`LIMITS`.
    """
    if platform not in LIMITS:
        raise ValueError(unknown_platform(platform))
    return LIMITS[platform]


def unknown_platform(platform: str) -> str:
    return f"unknown platform {platform!r} (known: {', '.join(LIMITS)})"


def graphemes(text: str) -> int:
    """The number of extended grapheme clusters ("👨‍👩‍👧" is one, so is "e" with a combining accent)."""
    return len(_GRAPHEME.findall(text))


def _urls_as_placeholders(text: str) -> str:
    """``text`` with every URL that has a scheme replaced by :data:`URL_LENGTH` characters."""
    if "://" not in text:
        return text
    out: list[str] = []
    position = 0
    for found in extract_urls_with_indices(text, False):
        start, end = found["indices"]
        out.append(text[position:start])
        out.append("x" * URL_LENGTH)
        position = end
    out.append(text[position:])
    return "".join(out)


# -- cutting -------------------------------------------------------------------------------------------


def cut_words(text: str, length: int | None) -> str:
    """``text`` cut to at most ``length`` characters at a word boundary, with "…" added.

    Punctuation before the cut is dropped ("Förderung, …" -> "Förderung…"); a first word longer than
    ``length`` is cut inside. ``None`` or a length the text fits keeps it whole; 0 gives "".
    """
    if length is None or len(text) <= length:
        return text
    if length <= 0:
        return ""
    boundary = text.rfind(" ", 0, length + 1)
    position = boundary if boundary > 0 else length
    while position > 0 and text[position - 1] in _TRIMMED_BEFORE_ELLIPSIS:
        position -= 1
    return text[: position if position > 0 else length] + ELLIPSIS


def display_link(url: str, length: int = DISPLAY_LINK_LENGTH) -> str:
    """The short form of a link shown in a Bluesky post: host (without ``www.``) and path, cut to
    ``length`` graphemes with "…" ("bfi.de/news/2026/11/dreh…"). Not an http(s) URL: the URL as is."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[-1].removeprefix("www.")
    path = "" if parts.path in ("", "/") else parts.path
    shown = (
        host
        + path
        + (f"?{parts.query}" if parts.query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
    clusters: list[str] = _GRAPHEME.findall(shown)
    if len(clusters) <= length:
        return shown
    return "".join(clusters[: length - 1]) + ELLIPSIS


def tidy(text: str) -> str:
    """Whitespace of a rendered post tidied: trailing spaces of every line gone, three or more newlines
    made two, and none at either end."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _MANY_NEWLINES.sub("\n\n", "\n".join(line.rstrip() for line in lines)).strip()


# -- fitting -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """How much of a post's content a variant shows: the first ``items`` items, teasers and titles cut
    (:func:`cut_words`) to that many characters (None: whole), the first ``hashtags`` hashtags (None: all)."""

    items: int
    teaser: int | None = None
    title: int | None = None
    hashtags: int | None = None


@dataclass(frozen=True)
class Step:
    """One way to shorten: ``make`` a cut from the cut so far and a value in [``low``, ``high``] (both
    given the cut so far; ``low`` is the shortest this step goes)."""

    make: Callable[[Cut, int], Cut]
    low: Callable[[Cut], int]
    high: Callable[[Cut], int]


def fit(uncut: Cut, fits: Callable[[Cut], bool], steps: Sequence[Step]) -> tuple[Cut, bool]:
    """The fullest cut that fits: ``uncut``, else each step in turn takes the largest value that fits
    (binary search) or, when none does, its lowest and hands over to the next.

    :returns: (the cut, True), or (the shortest cut tried, False) when nothing fits.
    """
    cut = uncut
    if fits(cut):
        return cut, True
    for step in steps:
        found = largest(step.low(cut), step.high(cut), _trial(fits, step.make, cut))
        if found is not None:
            return step.make(cut, found), True
        cut = step.make(cut, step.low(cut))
    return cut, False


def _trial(fits: Callable[[Cut], bool], make: Callable[[Cut, int], Cut], cut: Cut) -> Callable[[int], bool]:
    return lambda value: fits(make(cut, value))


def largest(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest value in [low, high] that fits, or None when not even ``low`` does. Fitting must be
    monotone (a smaller value never makes a post longer)."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
