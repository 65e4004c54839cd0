"""Counting social posts per platform, cutting at a word, the Bluesky display link, whitespace tidying.

Every expected number is counted by hand in the comment beside it.
"""

from __future__ import annotations

import pytest

from imk_outreach.render.social_length import LIMITS, count, cut_words, display_link, graphemes, tidy

LONG_URL = "https://example.org/news/" + "a" * 200  # 225 characters
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: 5 code points
E_ACUTE = "e\u0301"  # e + combining acute accent: 2 code points


def test_limits_are_the_platforms_own() -> None:
    assert dict(LIMITS) == {"x": 280, "mastodon": 500, "bluesky": 300, "linkedin": 3000}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 280, 280),
        ("a" * 281, 281),
        (LONG_URL, 23),  # any URL counts 23 (t.co)
        (f"Hallo {LONG_URL} Welt", 6 + 23 + 5),
        ("bfi.de", 23),  # a bare domain is a URL on X too
        ("😀", 2),  # emoji weigh 2
        (FAMILY, 2),  # an emoji ZWJ sequence is one emoji
        ("日本語", 6),  # CJK weighs 2 each
        ("Ä ö ß", 5),  # Latin-1 letters weigh 1
        ("…", 2),  # U+2026 is outside the weight-1 ranges
        ("–", 1),  # U+2013 is inside them (8208-8223)
        ("", 0),
    ],
)
def test_x_counts_weighted(text: str, expected: int) -> None:
    assert count("x", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LONG_URL, 23),
        (f"Hallo {LONG_URL} Welt", 6 + 23 + 5),
        (f"{LONG_URL} {LONG_URL}", 23 + 1 + 23),
        ("http://a.de/x", 23),  # a short URL counts 23 too (13 characters)
        ("bfi.de", 6),  # without a scheme it is plain text
        ("@anna@example.social hallo", 5 + 1 + 5),  # a remote mention counts as @anna
        ("@anna hallo", 11),
        ("日本語", 3),
        (FAMILY, 1),  # the server counts grapheme clusters
        (E_ACUTE, 1),
    ],
)
def test_mastodon_counts_urls_as_23(text: str, expected: int) -> None:
    assert count("mastodon", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FAMILY, 1),
        (E_ACUTE * 3, 3),
        ("🇩🇪", 1),  # two regional indicators, one flag
        ("Grüße", 5),
        ("https://bfi.de/x", 16),  # a URL counts in full (the post shows a short form instead)
        (f"a{FAMILY}b", 3),
    ],
)
def test_bluesky_counts_graphemes(text: str, expected: int) -> None:
    assert count("bluesky", text) == expected
    assert graphemes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [(FAMILY, 5), (E_ACUTE, 2), (LONG_URL, 225), ("Grüße", 5)])
def test_linkedin_counts_characters(text: str, expected: int) -> None:
    assert count("linkedin", text) == expected


def test_unknown_platform_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"unknown platform 'myspace' \(known: x, mastodon, bluesky, linkedin\)"
    ):
        count("myspace", "hi")


@pytest.mark.parametrize(
    ("text", "length", "expected"),
    [
        # text[:21] is "Die Dreharbeiten hab": the last space is at 16
        ("Die Dreharbeiten haben begonnen", 20, "Die Dreharbeiten…"),
        # the last space within 14 is at 12; the comma before it goes
        ("Datenschutz, Einstieg und Förderung", 13, "Datenschutz…"),
        ("Donaudampfschifffahrt ist lang", 5, "Donau…"),  # a first word longer than the length is cut
        ("Kurz", 4, "Kurz"),  # fits: unchanged, no ellipsis
        ("Kurz", None, "Kurz"),
        ("Kurz und gut", 0, ""),
    ],
)
def test_cut_words(text: str, length: int | None, expected: str) -> None:
    assert cut_words(text, length) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # host without www. + path = 43 characters: the first 24 and "…"
        ("https://www.bfi.de/news/2026/11/drehstart-in-babelsberg", "bfi.de/news/2026/11/dreh…"),
        ("https://bfi.de/", "bfi.de"),
        ("https://bfi.de/a?b=1#c", "bfi.de/a?b=1#c"),
        ("https://bfi.de/" + "a" * 18, "bfi.de/" + "a" * 18),  # exactly 25: kept whole
        ("https://bfi.de/" + "a" * 19, "bfi.de/" + "a" * 17 + "…"),  # 26: cut to 24 and "…"
        ("mailto:info@bfi.de", "mailto:info@bfi.de"),
    ],
)
def test_display_link(url: str, expected: str) -> None:
    assert display_link(url) == expected
    assert graphemes(display_link(url)) <= 25


def test_tidy_strips_line_ends_and_collapses_blank_lines() -> None:
    assert tidy("\n  Titel  \n\n\n\nText \t\r\n\r\nLink\n\n") == "Titel\n\nText\n\nLink"
    assert tidy("a\n\nb") == "a\n\nb"
