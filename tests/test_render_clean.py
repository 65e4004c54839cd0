"""The text part is clean text: no tag or entity leaks from a summary, whatever its markup and wherever the
shortening cuts; the HTML teaser keeps only balanced inline tags. Property-style: many summaries built
from tricky fragments, each cut at every length."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from imk_outreach.models import Brand, Campaign, Edition, EditionSection, NewsItem, Section, Selection
from imk_outreach.render.email import render_email
from imk_outreach.render.env import make_env
from imk_outreach.render.plaintext import ELLIPSIS, plaintext, teaser

TAG = re.compile(r"</?[A-Za-z][^<>]*>")
ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
INLINE_NAMES = (
    "a abbr b bdi bdo cite code del dfn em i ins kbd mark q s samp small span strong sub sup time u var"
)
INLINE = frozenset(INLINE_NAMES.split())
TRIMMED = " ,;:–-"

FRAGMENTS = (
    "<em>Fragen <strong>zu <a href='https://x.org/?a=1&amp;b=2'>KI</a></strong> im</em> Mittelstand",
    "R&amp;D&nbsp;news &hellip; &#8222;Zitat&#8220; &#x2013; Ende",
    "Zeile eins<br>Zeile zwei<br/>drei",
    "<ul><li>erstens</li><li>zweitens <b>fett</b></li></ul>",
    "&lt;em&gt;doppelt&lt;/em&gt; escaped &amp;amp; mehr",
    "<![CDATA[<b>im CDATA</b> Text]]>",
    "&lt;![CDATA[<i>escaped cdata</i>]]&gt; danach",
    "Fra<em>gen</em>wort zu<strong>sam</strong>men",
    "a < b &amp;&amp; c > d",
    "<script>alert('<b>x</b>')</script>sichtbar <style>p{}</style>",
    "Donaudampfschifffahrtsgesellschaftskapitän fährt",
    "x &nbsp;&nbsp; y\n\t z",
    "<span>ver<i>schach<b>tel</b></i>t</span> und <q>zitiert</q>",
    "Ende mit Satzzeichen, – und: mehr; -",
    "<p>Absatz</p><p>zwei <a href='javascript:x()'>Link</a></p>",
    "&amp;lt;b&amp;gt;zweifach&amp;lt;/b&amp;gt; &amp;nbsp;Abstand",
    "<h3>Titel</h3><img src='x.jpg' alt='Bild'><em>unclosed",
)


def summaries(count: int = 60, seed: int = 8) -> list[str]:
    """Every fragment alone, then random joins of two to four (with and without paragraphs)."""
    rng = random.Random(seed)
    built = list(FRAGMENTS)
    for _ in range(count):
        parts = rng.sample(FRAGMENTS, rng.randint(2, 4))
        glue = rng.choice((" ", "", "<br>", " &nbsp;"))
        text = glue.join(parts)
        built.append(f"<p>{text}</p>" if rng.random() < 0.5 else text)
    return built


def assert_clean(text: str) -> None:
    assert not TAG.search(text), text
    assert not ENTITY.search(text), text


def assert_whole_words(short: str, full: str, length: int) -> None:
    """``short`` is ``full``, or whole words of it followed by "…"; only a first word longer than
    ``length`` may be cut (there is no word boundary to cut at)."""
    if short == full:
        return
    assert short.endswith(ELLIPSIS), (short, full)
    body = short.removesuffix(ELLIPSIS)
    assert full.startswith(body), (short, full)
    assert len(body) <= max(length, 1), (short, length)
    words, full_words = body.split(" "), full.split(" ")
    if len(words) == 1 and len(full_words[0]) > length:
        return  # a first word longer than the room: cut hard, as documented
    assert words[:-1] == full_words[: len(words) - 1], (short, full)
    assert full_words[len(words) - 1].rstrip(TRIMMED).startswith(words[-1]), (short, full)
    assert words[-1] == full_words[len(words) - 1][: len(words[-1])]
    assert len(words[-1]) in (
        len(full_words[len(words) - 1]),
        len(full_words[len(words) - 1].rstrip(TRIMMED)),
    )


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()


def assert_balanced_inline(markup: str) -> None:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    assert not parser.stack, markup
    assert set(parser.seen) <= INLINE, markup


@pytest.mark.parametrize("source", summaries())
def test_plaintext_is_clean_and_cuts_between_words_at_every_length(source: str) -> None:
    full = plaintext(source)
    assert_clean(full)
    assert full == full.strip() and "  " not in full
    for length in range(1, len(full) + 3):
        short = plaintext(source, length)
        assert_clean(short)
        assert_whole_words(short, full, length)


@pytest.mark.parametrize("source", summaries())
def test_teaser_keeps_only_balanced_inline_tags_and_cuts_like_plaintext(source: str) -> None:
    full = plaintext(source)
    for length in range(1, len(full) + 3):
        short = teaser(source, length)
        assert_balanced_inline(short)
        assert plaintext(short) == plaintext(source, length), (source, length)
        assert "javascript:" not in short and "<script" not in short


def test_the_reported_leak_a_cut_inside_emphasis() -> None:
    source = "<p>Jeden Dienstag beantworten Expertinnen Fragen zu <em>KI im Mittelstand</em>.</p>"
    cut = len("Jeden Dienstag beantworten Expertinnen Fragen zu K")
    assert plaintext(source, cut) == "Jeden Dienstag beantworten Expertinnen Fragen zu…"
    assert str(teaser(source, cut + 3)) == "Jeden Dienstag beantworten Expertinnen Fragen zu <em>KI…</em>"


def test_a_word_split_by_markup_is_not_broken() -> None:
    assert plaintext("Fra<em>gen</em> zu mehr", 8) == "Fragen…"
    assert plaintext("Zwei Fra<em>gen</em> zu", 8) == "Zwei…"
    assert str(teaser("Zwei Fra<em>gen</em> zu", 8)) == "Zwei…"


def test_escaped_twice_and_cdata_become_text() -> None:
    assert plaintext("Fragen zu &lt;em&gt;KI&lt;/em&gt; &amp;amp; mehr") == "Fragen zu KI & mehr"
    assert str(teaser("Fragen zu &lt;em&gt;KI&lt;/em&gt;")) == "Fragen zu <em>KI</em>"
    assert plaintext("<p>x <![CDATA[y <b>z</b>]]> w</p>") == "x y z w"
    assert plaintext("a < b and c > d") == "a < b and c > d"  # text that only looks like markup stays


# -- the text part of a rendered newsletter ------------------------------------------------------------

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
BRAND = Brand(
    name={"de": "Cluster", "en": "Cluster"},
    imprint={"de": "Impressum", "en": "Imprint"},
    public_url="https://news.example.org",
    sender_name="Cluster",
    sender_email="newsletter@example.org",
)


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_text_part_of_a_newsletter_holds_no_markup(language: str) -> None:
    items = tuple(
        NewsItem(
            id=f"i{n}",
            url=f"https://example.org/news/{n}?a=1&b=2",
            source="feed",
            title=f"Meldung {n}",
            summary_html=source * 6,  # long enough that the 240-character cut falls somewhere inside
            published_at=NOW,
            language="de",
        )
        for n, source in enumerate(FRAGMENTS)
    )
    campaign = Campaign(
        name="m",
        path="campaigns/m.yaml",
        subject={language: "Ausgabe"},
        sections=(Section("all", {language: "Alles"}, Selection()),),
    )
    edition = Edition(
        id=1,
        campaign="m",
        created_at=NOW,
        date=NOW,
        sections=(EditionSection("all", {language: "Alles"}, items),),
    )
    message = render_email(make_env([]), campaign, edition, language, BRAND, NOW)
    assert_clean(message.text)
    for item in items:  # each summary is there, shortened or whole
        start = plaintext(item.summary_html)[:20]
        assert start.split(" ")[0] in message.text
