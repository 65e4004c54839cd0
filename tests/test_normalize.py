"""Normalisation: canonical URLs, sanitised HTML, plain titles, keyword tags and whole entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from imk_outreach.models import ParseResult, RawEntry, RawText, SourceSpec
from imk_outreach.sources.normalize import (
    absolute_url,
    canonical_url,
    item_id,
    match_tags,
    normalize_all,
    normalize_entry,
    plain_text,
    sanitize_html,
    summary_to_html,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
BASE = "https://www.example.org/news/index.html"
SPEC = SourceSpec(
    name="iot-hub", type="rss", url="https://www.example.org/feed.xml", language="de", tags=("IoT",)
)
TAGGING = {"ki": ["KI", "künstliche Intelligenz"], "film": ["Film", "Kino", "Dreh"], "fintech": ["FinTech"]}


# --- canonical_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/a?utm_source=x&utm_medium=y&utm_campaign=z", "https://example.org/a"),
        ("https://example.org/a?id=3&utm_source=x&page=2", "https://example.org/a?id=3&page=2"),
        ("https://example.org/a?UTM_Source=x&Utm_Term=t&id=1", "https://example.org/a?id=1"),
        (
            "https://example.org/a?fbclid=1&gclid=2&dclid=3&msclkid=4&yclid=5&igshid=6",
            "https://example.org/a",
        ),
        ("https://example.org/a?mc_cid=1&mc_eid=2&_hsenc=3&_hsmi=4&ref_src=5", "https://example.org/a"),
        ("https://example.org/a?WT.mc_id=1&wt_mc=2&pk_campaign=3&pk_kwd=4", "https://example.org/a"),
        (
            "https://example.org/a?mtm_source=1&piwik_campaign=2&at_medium=3&AT_CAMPAIGN=4",
            "https://example.org/a",
        ),
        ("https://example.org/a?b=2&a=1&b=1", "https://example.org/a?b=2&a=1&b=1"),  # order kept
        ("https://example.org/a?q=&x", "https://example.org/a?q=&x"),  # empty values kept
        ("https://example.org/a?", "https://example.org/a"),
        ("https://example.org/a?&&", "https://example.org/a"),
        ("https://example.org/a#kommentare", "https://example.org/a"),
        ("https://example.org/a?id=1#top", "https://example.org/a?id=1"),
        (
            "HTTPS://WWW.Example.ORG/Path/To?Q=A",
            "https://www.example.org/Path/To?Q=A",
        ),  # path/query case kept
        ("https://example.org:443/a", "https://example.org/a"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("http://example.org:443/a", "http://example.org:443/a"),  # not the default for http
        ("https://example.org:8443/a", "https://example.org:8443/a"),
        ("https://example.org", "https://example.org/"),
        ("https://example.org?id=1", "https://example.org/?id=1"),
        ("  https://example.org/a  \n", "https://example.org/a"),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://example.org/a b?q=x y", "https://example.org/a%20b?q=x%20y"),
        ("https://example.org/%C3%A4?q=%20", "https://example.org/%C3%A4?q=%20"),  # escapes kept
        ("https://example.org/a;b,c(d)", "https://example.org/a;b,c(d)"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("https://example.org./a", "https://example.org/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("other.html", "https://www.example.org/news/other.html"),
        ("../about?utm_source=x", "https://www.example.org/about"),
        ("/press/2026/", "https://www.example.org/press/2026/"),
        ("//cdn.example.org/x", "https://cdn.example.org/x"),
        ("?page=2", "https://www.example.org/news/index.html?page=2"),
        ("https://other.example/x", "https://other.example/x"),
    ],
)
def test_canonical_url_resolves_relative_links(url: str, expected: str) -> None:
    assert canonical_url(url, BASE) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "javascript:alert(1)",
        "mailto:presse@example.org",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.org/file",
        "file:///etc/passwd",
        "/relative/without/base",
        "//cdn.example.org/no-base",
        "https://example.org:99999/",
        "https://example.org:port/",
        "http://[::1/x",
        "https:///no-host",
        "https://exa mple.org/",
        "https://example..org/",
        "https://<script>/",
    ],
)
def test_canonical_url_rejects(url: str) -> None:
    assert canonical_url(url) is None


def test_canonical_url_relative_to_a_file_base_is_rejected() -> None:
    assert canonical_url("item.html", "file:///srv/feeds/iot.xml") is None


def test_absolute_url_keeps_query_and_fragment() -> None:
    assert (
        absolute_url("img/a.jpg?w=600&utm_source=x", BASE)
        == "https://www.example.org/news/img/a.jpg?w=600&utm_source=x"
    )
    assert absolute_url("data:image/png;base64,AAAA", BASE) is None
    assert absolute_url(None, BASE) is None


def test_item_id_is_stable_and_short() -> None:
    first = item_id("https://example.org/a")
    assert first == item_id("https://example.org/a")
    assert first != item_id("https://example.org/b")
    assert first == "b5b10dd0429e69ac7cfa"  # a golden value: ids are stored, they must never change


def test_item_id_is_the_sha256_prefix() -> None:
    import hashlib

    url = "https://example.org/news/drehstart"
    assert item_id(url) == hashlib.sha256(url.encode()).hexdigest()[:20]


def test_equivalent_links_get_the_same_id() -> None:
    a = canonical_url("HTTPS://Example.org:443/news/x?utm_source=nl#top")
    b = canonical_url("/news/x", "https://example.org/")
    assert a is not None and a == b
    assert item_id(a) == item_id(b)


# --- sanitize_html ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dirty", "expected"),
    [
        ("<p>Hallo<script>alert(1)</script> Welt</p>", "<p>Hallo Welt</p>"),
        ("<p>Text</p><style>p { color: red }</style>", "<p>Text</p>"),
        ('<img src="x" onerror="alert(1)">Bild', "Bild"),
        ('<a href="javascript:alert(1)">klick</a>', '<a rel="noopener noreferrer">klick</a>'),
        ('<a href=" JaVaScRiPt:alert(1)">klick</a>', '<a rel="noopener noreferrer">klick</a>'),
        ('<a href="jav&#x09;ascript:alert(1)">klick</a>', '<a rel="noopener noreferrer">klick</a>'),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">d</a>', '<a rel="noopener noreferrer">d</a>'),
        ('<p>vor<iframe src="https://evil.example">innen</iframe>nach</p>', "<p>vornach</p>"),
        ('<svg onload="alert(1)"><text>svg-text</text></svg>rest', "rest"),
        ('<p style="position:fixed" class="x" id="y" onclick="alert(1)">p</p>', "<p>p</p>"),
        ("<object data='x.swf'>alt</object><embed src='x.swf'>ok", "ok"),
        ('<form action="https://evil.example"><input name="pw">Passwort</form>frei', "frei"),
        ("<p>a<!-- Kommentar -->b</p>", "<p>ab</p>"),
        ("<div><span>Text</span></div>", "Text"),
        ("<h1>Groß</h1><h3>Klein</h3>", "<p>Groß</p><h3>Klein</h3>"),
        (
            "<ul><li><strong>eins</strong></li><li><em>zwei</em></li></ul>",
            "<ul><li><strong>eins</strong></li><li><em>zwei</em></li></ul>",
        ),
        ("<blockquote>Zitat<br>Zeile</blockquote>", "<blockquote>Zitat<br>Zeile</blockquote>"),
        ("   <p>trim</p>\n\n  ", "<p>trim</p>"),
    ],
)
def test_sanitize_html_hostile_input(dirty: str, expected: str) -> None:
    assert sanitize_html(dirty, BASE) == expected


def test_sanitize_html_keeps_safe_links_and_adds_rel() -> None:
    cleaned = sanitize_html('<a href="https://example.org/x" title="Mehr" target="_blank">mehr</a>', BASE)
    assert cleaned == '<a href="https://example.org/x" title="Mehr" rel="noopener noreferrer">mehr</a>'


def test_sanitize_html_keeps_mailto() -> None:
    assert 'href="mailto:presse@example.org"' in sanitize_html(
        '<a href="mailto:presse@example.org">m</a>', BASE
    )


def test_sanitize_html_resolves_relative_links() -> None:
    cleaned = sanitize_html('<a href="../presse/mappe.pdf">Mappe</a> <a href="/impressum">I</a>', BASE)
    assert 'href="https://www.example.org/presse/mappe.pdf"' in cleaned
    assert 'href="https://www.example.org/impressum"' in cleaned


def test_sanitize_html_drops_relative_links_without_base() -> None:
    assert sanitize_html('<a href="/impressum">I</a>', None) == '<a rel="noopener noreferrer">I</a>'


def test_sanitize_html_drops_relative_links_against_a_file_base() -> None:
    cleaned = sanitize_html('<a href="secret.txt">s</a>', "file:///srv/feeds/x.xml")
    assert "file:" not in cleaned
    assert "href" not in cleaned


def test_sanitize_html_never_keeps_images() -> None:
    cleaned = sanitize_html(
        '<p><img src="https://tracker.example/pixel.gif" width="1" height="1">x</p>', BASE
    )
    assert cleaned == "<p>x</p>"


def test_sanitize_html_escapes_text() -> None:
    assert sanitize_html("a &lt;script&gt; b & c", BASE) == "a &lt;script&gt; b &amp; c"


# --- plain_text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Drehstart in Babelsberg", "Drehstart in Babelsberg"),
        ("  Viel   Platz\n\tzwischen  ", "Viel Platz zwischen"),
        ("<b>Fett</b> und <i>kursiv</i>", "Fett und kursiv"),
        ("Forschung &amp; Entwicklung", "Forschung & Entwicklung"),
        ("Tom &amp;amp; Jerry", "Tom &amp; Jerry"),  # decoded exactly once
        ("&lt;KI&gt; im Film", "<KI> im Film"),
        ("Preis: 5&nbsp;&euro;", "Preis: 5 €"),
        ("Zeile<br>Zeile", "Zeile Zeile"),
        ("<p>Absatz</p><p>Absatz</p>", "Absatz Absatz"),
        ("Titel<script>alert(1)</script>", "Titel"),
        ("AT&T übernimmt", "AT&T übernimmt"),
        ("", ""),
    ],
)
def test_plain_text(value: str, expected: str) -> None:
    assert plain_text(value) == expected


# --- summary_to_html --------------------------------------------------------------------------------


def test_summary_text_is_escaped_with_paragraphs() -> None:
    text = "Erste Zeile\nzweite <b>Zeile</b>\n\n\nNeuer Absatz & mehr"
    assert summary_to_html(text, "text", BASE) == (
        "<p>Erste Zeile<br>zweite &lt;b&gt;Zeile&lt;/b&gt;</p><p>Neuer Absatz &amp; mehr</p>"
    )


def test_summary_markdown_is_rendered_and_sanitised() -> None:
    md = "\n\n".join(
        [
            "Die **Dreharbeiten** beginnen. [Mehr](/dreh)",
            "<script>alert(1)</script>",
            "[x](javascript:alert(1))",
            "![Bild](https://tracker.example/pixel.gif)",
        ]
    )
    result = summary_to_html(md, "markdown", "https://example.org/")
    assert "<strong>Dreharbeiten</strong>" in result
    assert '<a href="https://example.org/dreh" rel="noopener noreferrer">Mehr</a>' in result
    assert "<script>" not in result
    assert "&lt;script&gt;" in result  # raw HTML is disabled: shown as text, never run
    assert 'href="javascript' not in result
    assert "<img" not in result and "tracker.example" not in result


def test_summary_html_is_sanitised() -> None:
    assert summary_to_html("<p onclick='x()'>Hi</p>", "html", BASE) == "<p>Hi</p>"


def test_empty_summary() -> None:
    assert summary_to_html("  \n ", "markdown", BASE) == ""


# --- match_tags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ein neues KI-Projekt startet", {"ki"}),
        ("Was kann KI?", {"ki"}),
        ("Workshop zu ki in der Lehre", {"ki"}),  # case-insensitive
        ("Kinder lernen programmieren", set()),  # a short keyword must be a whole word
        ("Kiel und Kino", {"film"}),
        ("Neue Filmförderung für Brandenburg", {"film"}),  # a longer keyword matches at a word start
        ("Die Dreharbeiten beginnen", {"film"}),
        ("Ein Kurzfilm aus Potsdam", set()),  # not in the middle of a word
        ("Grundlagen der künstlichen Intelligenz", set()),  # the phrase must appear as written
        ("Künstliche Intelligenz im Alltag", {"ki"}),
        ("FINTECH-Gründungen und Filme", {"fintech", "film"}),
        ("", set()),
    ],
)
def test_match_tags(text: str, expected: set[str]) -> None:
    assert match_tags(text, TAGGING) == expected


def test_match_tags_prefix_marker() -> None:
    rules = {"xr": ["XR*"], "vr": ["VR"]}
    assert match_tags("XR-Brillen und XRealität", rules) == {"xr"}
    assert match_tags("VRoom", rules) == set()
    assert match_tags("VR-Brillen", rules) == {"vr"}


def test_match_tags_special_characters_are_literal() -> None:
    rules = {"cpp": ["C++"], "dotnet": [".NET"]}
    assert match_tags("Programmieren in C++ und .NET", rules) == {"cpp", "dotnet"}
    assert match_tags("Programmieren in C", rules) == set()


# --- normalize_entry --------------------------------------------------------------------------------


def entry(**changes: object) -> RawEntry:
    values: dict[str, object] = {
        "link": "drehstart?utm_source=rss#top",
        "title": "Drehstart in <b>Babelsberg</b> &amp; Potsdam",
        "summary": '<p>Die Dreharbeiten beginnen.<script>alert(1)</script> <a href="/presse">Presse</a></p>',
        "published": "Fri, 20 Nov 2026 09:00:00 +0100",
    }
    values.update(changes)
    return RawEntry(**values)  # type: ignore[arg-type]


def normalize(raw: RawEntry, spec: SourceSpec = SPEC, base: str | None = BASE) -> object:
    return normalize_entry(raw, spec, base, NOW, TAGGING, BERLIN)


def test_normalize_entry_full() -> None:
    item = normalize_entry(
        entry(image="img/a.jpg", tags=("Film Festival", "IoT")), SPEC, BASE, NOW, TAGGING, BERLIN
    )
    assert item is not None
    assert item.url == "https://www.example.org/news/drehstart"
    assert item.id == item_id(item.url)
    assert item.source == "iot-hub"
    assert item.sources == ("iot-hub",)
    assert item.title == "Drehstart in Babelsberg & Potsdam"
    assert item.summary_html == (
        '<p>Die Dreharbeiten beginnen. <a href="https://www.example.org/presse" rel="noopener noreferrer">'
        "Presse</a></p>"
    )
    assert item.published_at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert item.published_at.tzinfo is UTC
    assert item.date_estimated is False
    assert item.language == "de"
    assert item.tags == ("film", "film-festival", "iot")
    assert item.image == "https://www.example.org/news/img/a.jpg"
    assert item.translations == {}


def test_entry_without_usable_link_is_skipped() -> None:
    assert normalize(entry(link=None)) is None
    assert normalize(entry(link="")) is None
    assert normalize(entry(link="javascript:alert(1)")) is None
    assert normalize(entry(link="/relative"), base=None) is None


def test_entry_base_url_wins_over_document_base() -> None:
    item = normalize_entry(entry(base_url="https://blog.example.org/2026/"), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.url == "https://blog.example.org/2026/drehstart"


def test_missing_title_comes_from_the_summary() -> None:
    long_text = (
        "Das Medieninnovationszentrum lädt zu einem Abend über Virtual Production und neue Studios ein."
    )
    item = normalize_entry(entry(title=None, summary=f"<p>{long_text}</p>"), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.title.endswith("…")
    assert len(item.title) <= 81
    assert long_text.startswith(item.title[:-1])
    short = normalize_entry(entry(title="  ", summary="Kurz."), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert short is not None and short.title == "Kurz."


def test_missing_title_and_summary_gives_the_url() -> None:
    item = normalize_entry(entry(title="<b></b>", summary=None), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.title == "https://www.example.org/news/drehstart"


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        (
            datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        ),
        (datetime(2026, 7, 20, 9, 0), datetime(2026, 7, 20, 7, 0, tzinfo=UTC)),  # naive: Berlin summer
        (datetime(2026, 1, 20, 9, 0), datetime(2026, 1, 20, 8, 0, tzinfo=UTC)),  # naive: Berlin winter
        ("16. November 2026, 14:30 Uhr", datetime(2026, 11, 16, 13, 30, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 19, 23, 0, tzinfo=UTC)),
        ("2026-12-24T18:00:00Z", datetime(2026, 12, 24, 18, 0, tzinfo=UTC)),  # future dates are kept
    ],
)
def test_published_is_utc(published: datetime | str, expected: datetime) -> None:
    item = normalize_entry(entry(published=published), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.published_at == expected
    assert item.published_at.utcoffset() == timedelta(0)
    assert item.date_estimated is False


@pytest.mark.parametrize("published", [None, "", "gestern", "demnächst"])
def test_missing_or_unparseable_date_is_estimated(published: str | None) -> None:
    item = normalize_entry(entry(published=published), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.published_at == NOW
    assert item.date_estimated is True


def test_language_from_entry_or_spec() -> None:
    de = normalize_entry(entry(), SPEC, BASE, NOW, TAGGING, BERLIN)
    en = normalize_entry(entry(language="en-GB"), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert de is not None and de.language == "de"
    assert en is not None and en.language == "en"


def test_tags_from_rules_spec_and_entry() -> None:
    raw = entry(title="FinTech trifft KI", summary="<p>Ein Abend</p>", tags=("Events", "events", " "))
    item = normalize_entry(raw, SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert item.tags == ("events", "fintech", "iot", "ki")


def test_summary_formats() -> None:
    text = normalize_entry(
        entry(summary="a < b\n\nc", summary_format="text"), SPEC, BASE, NOW, TAGGING, BERLIN
    )
    md = normalize_entry(
        entry(summary="**fett**", summary_format="markdown"), SPEC, BASE, NOW, TAGGING, BERLIN
    )
    assert text is not None and text.summary_html == "<p>a &lt; b</p><p>c</p>"
    assert md is not None and md.summary_html == "<p><strong>fett</strong></p>"


def test_image_must_be_http() -> None:
    bad = normalize_entry(entry(image="data:image/png;base64,AAAA"), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert bad is not None and bad.image is None
    js = normalize_entry(entry(image="javascript:alert(1)"), SPEC, BASE, NOW, TAGGING, BERLIN)
    assert js is not None and js.image is None


def test_translations() -> None:
    raw = entry(
        language="de",
        summary_format="markdown",
        summary="Die **Dreharbeiten** beginnen.",
        translations={
            "en": RawText(title="Shooting starts in <i>Babelsberg</i>", summary="Shooting *starts*."),
            "de": RawText(title="ignoriert", summary="die Hauptsprache"),
            "fr": RawText(title=None, summary=None),
            "pl": RawText(title=None, summary="Zdjęcia do **filmu** ruszają w Babelsbergu."),
        },
    )
    item = normalize_entry(raw, SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert set(item.translations) == {"en", "pl"}
    assert item.translations["en"].title == "Shooting starts in Babelsberg"
    assert item.translations["en"].summary_html == "<p>Shooting <em>starts</em>.</p>"
    assert item.translations["pl"].title == "Zdjęcia do filmu ruszają w Babelsbergu."
    assert item.summary_html == "<p>Die <strong>Dreharbeiten</strong> beginnen.</p>"


def test_translations_are_tagged_too() -> None:
    raw = entry(
        title="Ein Abend",
        summary=None,
        translations={"en": RawText(title="An evening on FinTech", summary=None)},
    )
    item = normalize_entry(raw, SPEC, BASE, NOW, TAGGING, BERLIN)
    assert item is not None
    assert "fintech" in item.tags


# --- normalize_all ----------------------------------------------------------------------------------


def test_normalize_all_skips_and_deduplicates() -> None:
    result = ParseResult(
        entries=(
            RawEntry(link="/a?utm_source=x", title="Erster"),
            RawEntry(link=None, title="Ohne Link"),
            RawEntry(link="https://www.example.org/a#again", title="Zweiter mit gleicher URL"),
            RawEntry(link="mailto:x@example.org", title="Mail"),
            RawEntry(link="b", title="Drittes"),
        )
    )
    items, skipped = normalize_all(result, "https://www.example.org/", SPEC, NOW, TAGGING, BERLIN)
    assert [i.title for i in items] == ["Erster", "Drittes"]
    assert [i.url for i in items] == ["https://www.example.org/a", "https://www.example.org/b"]
    assert skipped == 2


def test_normalize_all_prefers_the_parse_result_base() -> None:
    result = ParseResult(
        entries=(RawEntry(link="x", title="X"),), base_url="https://www.example.org/aktuelles/"
    )
    items, skipped = normalize_all(result, "https://www.example.org/", SPEC, NOW, TAGGING, BERLIN)
    assert skipped == 0
    assert items[0].url == "https://www.example.org/aktuelles/x"
