"""Items -> social posts: the shipped templates per platform, fitting to the limit, Bluesky facets and
cards, languages and fallbacks, hashtags, images, and the errors a template can cause.

Every expected length is counted by hand in the comment beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import Environment

from imk_outreach.errors import TemplateError
from imk_outreach.models import Facet, LinkCard, NewsItem, Post, PostImage, Translation
from imk_outreach.render.env import make_env
from imk_outreach.render.social import (
    PostSpec,
    PostTooLongError,
    check_template,
    default_template,
    fixed_length,
    render_post,
)

DATE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
URL = "https://www.bfi.de/news/2026/11/drehstart-in-babelsberg"
LONG_URL = "https://example.org/news/" + "a" * 200  # 225 characters
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, 18 bytes of UTF-8


@pytest.fixture(scope="module")
def env() -> Environment:
    return make_env([])


def _staff_env(folder: Path, templates: dict[str, str]) -> Environment:
    for name, text in templates.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return make_env([folder])


def _item(**fields: object) -> NewsItem:
    values: dict[str, object] = {
        "id": "item-1",
        "url": URL,
        "source": "bfi",
        "title": "Drehstart in Babelsberg",
        "summary_html": "<p>Die Dreharbeiten haben begonnen.</p>",
        "published_at": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        "language": "de",
    }
    values.update(fields)
    return NewsItem(**values)  # type: ignore[arg-type]


def _spec(**fields: object) -> PostSpec:
    values: dict[str, object] = {
        "channel": "social-de",
        "platform": "x",
        "language": "de",
        "languages": ("de", "en"),
        "key": "item-1",
        "template": "",
    }
    values.update(fields)
    return PostSpec(**values)  # type: ignore[arg-type]


def _no_image(item: NewsItem) -> PostImage | None:
    return None


def _render(
    env: Environment,
    spec: PostSpec,
    *items: NewsItem,
    image_for: Callable[[NewsItem], PostImage | None] = _no_image,
) -> Post:
    return render_post(env, spec, items or (_item(),), date=DATE, image_for=image_for)


def _words(word: str, n: int) -> str:
    return " ".join([word] * n)


BILINGUAL = _item(
    tags=("film",),
    translations={"en": Translation("Shooting starts in Babelsberg", "<p>Filming has <em>begun</em>.</p>")},
)


# -- the shipped templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "digest", "expected"),
    [
        ("x", False, "social/x.j2"),
        ("x", True, "social/x_digest.j2"),
        ("linkedin", True, "social/linkedin_digest.j2"),
    ],
)
def test_default_template_names(platform: str, digest: bool, expected: str) -> None:
    assert default_template(platform, digest) == expected


def test_x_item_post_is_title_teaser_link_hashtags(env: Environment) -> None:
    item = _item(tags=("fintech", "ki"))
    post = _render(env, _spec(hashtags={"fintech": "FinTech", "ki": "KI"}), item)
    assert post.text == f"Drehstart in Babelsberg\nDie Dreharbeiten haben begonnen.\n\n{URL}\n\n#FinTech #KI"
    # 23 + 1 + 32 + 2 + 23 (the URL) + 2 + 12
    assert (post.length, post.limit) == (95, 280)
    assert (post.link, post.template, post.key, post.shortened) == (URL, "social/x.j2", "item-1", False)
    assert (post.channel, post.platform, post.language, post.card, post.facets) == (
        "social-de",
        "x",
        "de",
        None,
        (),
    )


def test_mastodon_both_is_german_then_english_with_one_link(env: Environment) -> None:
    post = _render(env, _spec(platform="mastodon", language="both", hashtags={"film": "Film"}), BILINGUAL)
    assert post.text == (
        "Drehstart in Babelsberg\nDie Dreharbeiten haben begonnen.\n\n"
        "Shooting starts in Babelsberg\nFilming has begun.\n\n"
        f"{URL}\n\n#Film"
    )
    assert post.text.count(URL) == 1
    # 23+1+32+2 + 29+1+18+2 + 23 + 2+5
    assert post.length == 138
    assert (post.language, post.fallbacks) == ("both", ())


def test_linkedin_keeps_the_whole_teaser_and_gets_a_card(env: Environment) -> None:
    summary = _words("Förderung", 150)  # 150 * 9 + 149 = 1499 characters
    post = _render(env, _spec(platform="linkedin"), _item(summary_html=f"<p>{summary}</p>"))
    assert summary in post.text
    # 23 + 2 + 1499 + 2 + 55 (the URL, counted in full)
    assert (post.length, post.shortened) == (1581, False)
    assert post.card is not None
    assert (post.card.url, post.card.title) == (URL, "Drehstart in Babelsberg")
    assert post.card.description.endswith("…") and len(post.card.description) <= 301


# -- X: exact fit and shortening -----------------------------------------------------------------------


def test_x_exactly_280_fits_and_a_long_url_counts_23(env: Environment) -> None:
    teaser = _words("Kamera", 33) + "s"  # 33 * 6 + 32 spaces + 1 = 231 characters
    post = _render(env, _spec(), _item(url=LONG_URL, summary_html=teaser))
    # 23 (title) + 1 + 231 + 2 + 23 (a 225-character URL) = 280
    assert (post.length, post.shortened) == (280, False)
    assert len(post.text) == 23 + 1 + 231 + 2 + 225
    assert teaser in post.text


def test_x_281_is_shortened_at_a_word_with_the_link_kept(env: Environment) -> None:
    teaser = _words("Kamera", 33) + "ss"  # 232 characters: the post would be 281
    post = _render(env, _spec(), _item(url=LONG_URL, summary_html=teaser))
    # the last word goes: 32 * 6 + 31 = 223 characters and "…" (weight 2 on X): 23 + 1 + 225 + 2 + 23
    shown = _words("Kamera", 32) + "…"
    assert post.text == f"Drehstart in Babelsberg\n{shown}\n\n{LONG_URL}"
    assert (post.length, post.shortened, post.link) == (274, True, LONG_URL)


def test_x_emoji_and_cjk_weigh_two_in_a_post(env: Environment) -> None:
    post = _render(env, _spec(), _item(title="🎬 映画 Kino", summary_html=""))
    # 2 + 1 + 4 + 1 + 4, then 2 + 23
    assert post.text == f"🎬 映画 Kino\n\n{URL}"
    assert post.length == 37


def test_a_title_too_long_is_cut_at_a_word_keeping_link_and_hashtags(env: Environment) -> None:
    title = _words("Wort", 60)  # 299 characters
    post = _render(env, _spec(hashtags={"film": "Film"}), _item(title=title, summary_html="", tags=("film",)))
    # fixed: 2 + 23 + 2 + 5 = 32, so the title may weigh 248: 49 words (244) and "…" (2)
    assert post.text == f"{_words('Wort', 49)}…\n\n{URL}\n\n#Film"
    assert (post.length, post.shortened) == (278, True)


def test_both_shortens_every_teaser_alike(env: Environment) -> None:
    item = _item(
        title="Titel",
        summary_html=_words("Wort", 200),
        translations={"en": Translation("Title", _words("Word", 200))},
    )
    post = _render(env, _spec(platform="mastodon", language="both"), item)
    # fixed: 5+1 +2 + 5+1 +2 + 23 = 39, so 461 for two teasers: 46 words (229) and "…" each
    assert post.text == (f"Titel\n{_words('Wort', 46)}…\n\nTitle\n{_words('Word', 46)}…\n\n{URL}")
    assert (post.length, post.shortened) == (499, True)


# -- Bluesky: display link, facets, card ---------------------------------------------------------------


def test_bluesky_link_facet_offsets_are_utf8_bytes(env: Environment) -> None:
    item = _item(title=f"Grüße {FAMILY}", summary_html="", tags=("film",))
    post = _render(env, _spec(platform="bluesky", hashtags={"film": "Film"}), item)
    assert post.text == f"Grüße {FAMILY}\n\nbfi.de/news/2026/11/dreh…\n\n#Film"
    # "Grüße " is 8 bytes (ü, ß: 2 each), the family 18, two newlines 2: the link starts at byte 28;
    # the display text is 24 ASCII + "…" (3 bytes) = 27 bytes; "#Film" starts 2 bytes after it
    assert post.facets == (
        Facet(28, 55, "link", URL),
        Facet(57, 62, "tag", "Film"),
    )
    encoded = post.text.encode()
    assert encoded[28:55].decode() == "bfi.de/news/2026/11/dreh…"
    assert encoded[57:62].decode() == "#Film"
    # graphemes: 6 + 1 + 2 + 25 + 2 + 5
    assert post.length == 41
    assert post.card == LinkCard(URL, f"Grüße {FAMILY}", "")


def test_bluesky_counts_the_display_link_not_the_url(env: Environment) -> None:
    post = _render(env, _spec(platform="bluesky"), _item(url=LONG_URL, summary_html="Kurz."))
    # "example.org/news/aaaaaaa…" (25) stands for 225 characters: 23 + 1 + 5 + 2 + 25
    assert post.text.endswith("\n\nexample.org/news/aaaaaaa…")
    assert post.length == 56
    (link,) = post.facets
    assert link.value == LONG_URL
    assert post.text.encode()[link.byte_start : link.byte_end].decode() == "example.org/news/aaaaaaa…"


def test_bluesky_card_uses_the_first_language_of_a_bilingual_post(env: Environment) -> None:
    post = _render(env, _spec(platform="bluesky", language="both"), BILINGUAL)
    assert post.card == LinkCard(URL, "Drehstart in Babelsberg", "Die Dreharbeiten haben begonnen.")
    assert [f.kind for f in post.facets] == ["link"]  # no hashtags mapped


def test_bluesky_digest_links_every_item(env: Environment) -> None:
    items = [_item(id=f"item-{n}", url=f"https://bfi.de/{n}", title=f"Ä{n}") for n in range(1, 4)]
    post = _render(env, _spec(platform="bluesky", key="digest"), *items)
    assert post.text == "Ä1\nbfi.de/1\n\nÄ2\nbfi.de/2\n\nÄ3\nbfi.de/3"
    encoded = post.text.encode()
    # each block: "Äk\n" (4 bytes), the link (8 bytes), two newlines
    assert post.facets == (
        Facet(4, 12, "link", "https://bfi.de/1"),
        Facet(18, 26, "link", "https://bfi.de/2"),
        Facet(32, 40, "link", "https://bfi.de/3"),
    )
    assert [encoded[f.byte_start : f.byte_end] for f in post.facets] == [
        b"bfi.de/1",
        b"bfi.de/2",
        b"bfi.de/3",
    ]
    assert (post.link, post.card) == (None, None)


# -- languages and fallbacks ---------------------------------------------------------------------------


def test_missing_translation_falls_back_to_the_original_and_is_marked(env: Environment) -> None:
    post = _render(env, _spec(language="en"), _item())
    assert post.text.startswith("Drehstart in Babelsberg\nDie Dreharbeiten haben begonnen.")
    assert post.fallbacks == ("item-1",)
    translated = _render(env, _spec(language="en"), BILINGUAL)
    assert translated.text.startswith("Shooting starts in Babelsberg\nFilming has begun.")
    assert translated.fallbacks == ()


def test_both_with_a_missing_translation_shows_the_original_once(env: Environment) -> None:
    post = _render(env, _spec(platform="mastodon", language="both"), _item())
    assert post.text == f"Drehstart in Babelsberg\nDie Dreharbeiten haben begonnen.\n\n{URL}"
    assert post.fallbacks == ("item-1",)


def test_an_english_item_in_a_german_post(env: Environment) -> None:
    item = _item(language="en", title="Record funding", summary_html="<p>More than ever.</p>")
    post = _render(env, _spec(platform="mastodon", language="both"), item)
    assert post.text == f"Record funding\nMore than ever.\n\n{URL}"
    assert post.fallbacks == ("item-1",)


# -- plain text, hashtags ------------------------------------------------------------------------------


def test_no_html_escaping_and_entities_decoded(env: Environment) -> None:
    item = _item(title="A & B <C>", summary_html="<p>Forschung &amp; Entwicklung &lt;3</p>")
    post = _render(env, _spec(platform="mastodon"), item)
    assert post.text == f"A & B <C>\nForschung & Entwicklung <3\n\n{URL}"


def test_a_template_name_that_turns_on_escaping_is_refused(tmp_path: Path) -> None:
    env = _staff_env(tmp_path, {"social/x.html.j2": "{{ item.title['de'] }}"})
    with pytest.raises(TemplateError, match=r"^social/x\.html\.j2: a social post is plain text"):
        _render(env, _spec(template="social/x.html.j2"))


@pytest.mark.parametrize(
    ("tags", "mapping", "expected"),
    [
        (("fintech", "ki"), {"fintech": "FinTech", "ki": "KI"}, "#FinTech #KI"),
        (("ki", "fintech"), {"fintech": "FinTech", "ki": "KI"}, "#KI #FinTech"),  # in tag order
        (("ki", "KI", "ai"), {"ki": "KI", "ai": "#ki"}, "#KI"),  # one hashtag, whatever its case or '#'
        (("film", "unmapped"), {"film": "Film"}, "#Film"),
        (("ai",), {"ai": "Künstliche Intelligenz"}, "#KünstlicheIntelligenz"),
        (("unmapped",), {"film": "Film"}, ""),
    ],
)
def test_hashtags_mapped_and_deduplicated(
    env: Environment, tags: tuple[str, ...], mapping: dict[str, str], expected: str
) -> None:
    post = _render(env, _spec(platform="mastodon", hashtags=mapping), _item(tags=tags, summary_html=""))
    assert post.text == f"Drehstart in Babelsberg\n\n{URL}" + (f"\n\n{expected}" if expected else "")


# -- digests -------------------------------------------------------------------------------------------


def test_digest_drops_items_from_the_end_until_it_fits(env: Environment) -> None:
    title = _words("Kinofilm", 5) + "xxxxxx"  # 5 * 8 + 4 + 6 = 50 characters
    items = [_item(id=f"item-{n}", title=title, url=f"https://bfi.de/{n}") for n in range(1, 6)]
    post = _render(env, _spec(key="digest"), *items)
    # each item is 50 + 1 + 23 = 74, two newlines between: 76n - 2 <= 280 gives n = 3 (226)
    assert post.text == "\n\n".join(f"{title}\nhttps://bfi.de/{n}" for n in range(1, 4))
    assert (post.length, post.shortened, post.key, post.link) == (226, True, "digest", None)
    assert post.template == "social/x_digest.j2"


def test_digest_hashtags_are_those_of_the_items_shown(env: Environment) -> None:
    items = [_item(id="a", tags=("film",)), _item(id="b", tags=("ki", "film"))]
    post = _render(
        env, _spec(platform="mastodon", key="digest", hashtags={"film": "Film", "ki": "KI"}), *items
    )
    assert post.text.endswith(f"{URL}\n\n#Film #KI")
    assert post.shortened is False


def test_digest_keeps_one_item_and_cuts_its_title(env: Environment) -> None:
    items = [_item(id="a", title=_words("Wort", 80)), _item(id="b")]
    post = _render(env, _spec(key="digest"), *items)
    # one item: title + 1 + 23; the title may weigh 256: 51 words (5 * 51 - 1 = 254) and "…" (2)
    assert post.text == f"{_words('Wort', 51)}…\n{URL}"
    assert (post.length, post.shortened) == (280, True)


def test_digest_fallbacks_count_only_items_shown(env: Environment) -> None:
    items = [BILINGUAL, _item(id="b", title=_words("Wort", 80))]
    post = _render(env, _spec(language="en", key="digest"), *items)
    assert "Wort" not in post.text
    assert post.fallbacks == ()
    both = _render(env, _spec(platform="linkedin", language="en", key="digest"), *items)
    assert both.fallbacks == ("b",)


# -- images --------------------------------------------------------------------------------------------


def test_image_of_the_first_item_with_its_title_as_alt(env: Environment) -> None:
    seen: list[str] = []

    def image_for(item: NewsItem) -> PostImage | None:
        seen.append(item.id)
        return PostImage(f"/media/{item.id}.png", "image/png", alt="")

    post = _render(env, _spec(language="both", platform="mastodon"), BILINGUAL, image_for=image_for)
    assert post.image == PostImage("/media/item-1.png", "image/png", "Drehstart in Babelsberg")
    english = _render(env, _spec(language="en"), BILINGUAL, image_for=image_for)
    assert english.image is not None and english.image.alt == "Shooting starts in Babelsberg"
    digest = _render(env, _spec(key="digest"), _item(id="a"), _item(id="b"), image_for=image_for)
    assert digest.image is not None and digest.image.path == "/media/a.png"
    assert seen == ["item-1", "item-1", "a"]


# -- staff templates: context, errors, fixed length ----------------------------------------------------


def test_template_context(tmp_path: Path) -> None:
    env = _staff_env(
        tmp_path,
        {
            "social/post.j2": (
                "{{ post.channel }} {{ post.platform }} {{ post.language }} {{ post.limit }}\n"
                "{{ languages|join(',') }} {{ edition_date|date }} {{ item.source }}"
                " {{ item.tags|join(',') }}\n"
                "{% for l in languages %}{{ item.fallback[l] }} {% endfor %}{{ _('Read more') }}  \n\n\n\n"
                "{{ item.link }}   "
            )
        },
    )
    spec = _spec(platform="mastodon", language="both", template="social/post.j2")
    post = _render(env, spec, _item(tags=("film", "ki")))
    assert post.text == (
        "social-de mastodon both 500\nde,en 1. Dezember 2026 bfi film,ki\nFalse True Weiterlesen\n\n" + URL
    )
    english = _render(env, _spec(language="en", template="social/post.j2"), BILINGUAL)
    assert english.text.startswith("social-de x en 280\nen December 1, 2026 bfi film\nFalse Read more\n\n")


def test_fixed_text_too_long_names_template_platform_and_length(tmp_path: Path) -> None:
    env = _staff_env(tmp_path, {"social/x.j2": "{{ item.title['de'] }} " + "A" * 289 + "\n{{ item.link }}"})
    spec = _spec()
    # 289 + newline + a 23-character link = 313 (the empty title and the space after it are tidied away)
    assert fixed_length(env, spec, date=DATE) == 313
    expected = (
        "social/x.j2: the fixed text alone is 313 of 280 characters on x (weighted) — shorten the template"
    )
    with pytest.raises(PostTooLongError) as raised:
        _render(env, spec, _item(title="Kurz"))
    assert str(raised.value) == expected
    error = raised.value
    assert (error.template, error.platform, error.length, error.limit) == ("social/x.j2", "x", 313, 280)
    with pytest.raises(PostTooLongError, match="313 of 280"):
        check_template(env, spec, date=DATE)


def test_fixed_length_of_the_shipped_templates(env: Environment) -> None:
    # the shipped templates have no words of their own: the 23-character link alone
    for platform in ("x", "mastodon", "bluesky", "linkedin"):
        for key in ("item-1", "digest"):
            spec = _spec(platform=platform, key=key, language="both")
            assert fixed_length(env, spec, date=DATE) == 23
            assert check_template(env, spec, date=DATE) == 23


def test_fixed_length_counts_per_language_text(tmp_path: Path) -> None:
    env = _staff_env(
        tmp_path, {"social/x.j2": "{% for l in item.languages %}[{{ l }}] {{ item.title[l] }}\n{% endfor %}"}
    )
    # "[de]" and "[en]" lines, joined by a newline: 4 + 1 + 4 (the trailing spaces tidied away)
    assert fixed_length(env, _spec(language="both"), date=DATE) == 9


def test_broken_template_names_template_and_line(tmp_path: Path) -> None:
    env = _staff_env(tmp_path, {"social/x.j2": "{{ item.title['de'] }}\n{{ item.link }\n"})
    with pytest.raises(TemplateError) as raised:
        _render(env, _spec())
    assert (raised.value.template, raised.value.line) == ("social/x.j2", 2)
    assert str(raised.value).startswith("social/x.j2:2: ")


def test_misspelt_name_names_template_line_and_nearest(tmp_path: Path) -> None:
    env = _staff_env(tmp_path, {"social/m.j2": "{{ item.link }}\n\n{{ item.titel['de'] }}\n"})
    with pytest.raises(TemplateError) as raised:
        _render(env, _spec(platform="mastodon", template="social/m.j2"))
    assert (raised.value.template, raised.value.line) == ("social/m.j2", 3)
    assert "did you mean 'title'?" in str(raised.value)


def test_missing_template_is_named(env: Environment) -> None:
    with pytest.raises(TemplateError, match=r"^social/nope\.j2: template not found"):
        _render(env, _spec(template="social/nope.j2"))


def test_bad_calls_say_what_is_wrong(env: Environment) -> None:
    with pytest.raises(ValueError, match="no item with the id 'other'"):
        _render(env, _spec(key="other"))
    with pytest.raises(ValueError, match="unknown platform 'myspace'"):
        _render(env, _spec(platform="myspace"))
    with pytest.raises(ValueError, match="needs the campaign's languages"):
        _render(env, _spec(language="both", languages=()))
