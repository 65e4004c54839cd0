"""Items -> one social post per (item or digest, channel, language), fitted to the platform's length.

A post is rendered from a plain-text Jinja template (no HTML escaping; whitespace tidied: trailing spaces
go, three or more newlines become two, none at either end). The shipped defaults are
``social/<platform>.j2`` (an item) and ``social/<platform>_digest.j2`` (a digest); they are
language-neutral: every word comes from the items.

What a social template sees:

``post`` (``channel``, ``platform``, ``language``: "de", "en" or "both", ``limit``), ``languages`` (the
languages of the post: ``[language]``, or every campaign language for "both"), ``item`` (an item post) or
``items`` (a digest), each a :class:`SocialItem`, ``hashtags`` (the channel's hashtags for the tags of the
item, or of the items a digest shows, as one string "#FinTech #KI": deduplicated, in tag order; "" for none)
and ``edition_date``. Texts are plain text (no markup, entities decoded). ``_()`` and the ``date`` filter
use the post's language (the first one for "both"), so a template for "both" should not rely on them.

Fitting: a post too long for its platform has its teasers shortened alike (every language, every item) at
a word boundary with "…", keeping title, link and hashtags (a binary search for the longest teaser that
fits); if even no teaser is too long, the titles are cut the same way, then hashtags dropped from the end.
A digest first drops items from its end (at least one stays). When the template's fixed text alone (empty
titles and teasers, no hashtags, a 23-character link) is over the limit, :class:`PostTooLongError`.

On Bluesky a link is shown short (:func:`~imk_outreach.render.social_length.display_link`) and carried as
a link facet over that text (UTF-8 byte offsets), hashtags get tag facets, and the item becomes the link
card (``app.bsky.embed.external``); LinkedIn gets the card too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from jinja2 import Environment

from imk_outreach.errors import TemplateError
from imk_outreach.models import Facet, LinkCard, NewsItem, Post, PostImage
from imk_outreach.render.env import render_template
from imk_outreach.render.plaintext import plaintext
from imk_outreach.render.social_length import (
    LIMITS,
    UNITS,
    URL_LENGTH,
    Cut,
    Step,
    count,
    cut_words,
    display_link,
    fit,
    limit_of,
    tidy,
)

__all__ = [
    "DIGEST_KEY",
    "LIMITS",
    "PostSpec",
    "PostTooLongError",
    "SocialItem",
    "check_template",
    "count",
    "default_template",
    "fixed_length",
    "render_post",
]

DIGEST_KEY = "digest"
BOTH = "both"
CARD_DESCRIPTION_LENGTH = 300
CARD_PLATFORMS = frozenset(("bluesky", "linkedin"))
FACET_PLATFORMS = frozenset(("bluesky",))

# A link on Bluesky is rendered between markers (private-use characters, never in item texts), so its
# place in the final text is known exactly: OPEN, one character naming the item, the display text, CLOSE.
_OPEN, _CLOSE, _FIRST_INDEX = "\ue000", "\ue001", 0xE010
_MAX_ITEMS = 0xE0FF - _FIRST_INDEX
_MARKED_LINK = re.compile("\ue000([\ue010-\ue0ff])([^\ue000-\ue0ff]*)\ue001")
_MARKERS = re.compile("[\ue000-\ue0ff]")


class PostTooLongError(TemplateError):
    """A post that cannot fit its platform: the template's fixed text alone is over the limit.

    ``social/x.j2: the fixed text alone is 301 of 280 characters on x (weighted) — shorten the template``
    """

    def __init__(self, template: str, platform: str, length: int, limit: int, *, fixed: bool = True) -> None:
        self.platform = platform
        self.length = length
        self.limit = limit
        self.fixed = fixed
        what = (
            "the fixed text alone is" if fixed else "even with titles and teasers cut and no hashtags it is"
        )
        unit = UNITS.get(platform, "")
        super().__init__(
            template, f"{what} {length} of {limit} characters on {platform}{unit} — shorten the template"
        )


@dataclass(frozen=True)
class PostSpec:
    """What to render: for ``channel`` (on ``platform``) in ``language`` ("de", "en" or "both": every
    language of ``languages``, the campaign's, in one post). ``key`` is the item id or "digest".
    ``template`` "" means :func:`default_template`. ``hashtags`` maps an item tag to hashtag text."""

    channel: str
    platform: str
    language: str
    languages: tuple[str, ...]
    key: str
    template: str = ""
    hashtags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def digest(self) -> bool:
        return self.key == DIGEST_KEY

    @property
    def post_languages(self) -> tuple[str, ...]:
        """The languages the post shows: all of ``languages`` for "both", else ``language`` alone.

        :raises ValueError: "both" without languages.
        """
        if self.language != BOTH:
            return (self.language,)
        if not self.languages:
            raise ValueError(f"channel {self.channel!r}: language 'both' needs the campaign's languages")
        return tuple(dict.fromkeys(self.languages))


@dataclass(frozen=True)
class PostView:
    """``post`` in a template."""

    channel: str
    platform: str
    language: str
    limit: int


@dataclass(frozen=True)
class SocialItem:
    """One item as a social template sees it. ``title``, ``teaser`` (plain text of the summary, may be
    "") and ``fallback`` (True: the text is the original language, a translation is missing) are keyed by
    language. ``languages``: the post's languages to show it in; a language whose text would only repeat
    an earlier one (a missing translation in a bilingual post) is left out. ``link`` is what to show for
    the link (on Bluesky the short display form, linked by a facet)."""

    id: str
    title: Mapping[str, str]
    teaser: Mapping[str, str]
    fallback: Mapping[str, bool]
    languages: tuple[str, ...]
    link: str
    tags: tuple[str, ...]
    source: str
    language: str
    published_at: datetime | None


def default_template(platform: str, digest: bool) -> str:
    """``social/x.j2`` for an item post, ``social/x_digest.j2`` for a digest.

    :raises ValueError: for an unknown platform.
    """
    limit_of(platform)
    return f"social/{platform}{'_digest' if digest else ''}.j2"


# -- the render ----------------------------------------------------------------------------------------


def render_post(
    env: Environment,
    spec: PostSpec,
    items: Sequence[NewsItem],
    *,
    date: datetime,
    image_for: Callable[[NewsItem], PostImage | None],
) -> Post:
    """Render the post ``spec`` describes from ``items`` (the item whose id is ``spec.key``, or the
    digest's items in order), fitted to the platform's limit.

    :param date: the edition's date (``edition_date`` in the template).
    :param image_for: the stored image of an item, or None; the first item's is attached, with its title
        as alt text.
    :raises PostTooLongError: when the template's fixed text alone is over the platform's limit.
    :raises TemplateError: naming the template and line of any Jinja problem.
    :raises ValueError: an unknown platform, no items, or no item with the id ``spec.key``.
    """
    job = _Job(env, spec, date, [_texts_of(item, spec.post_languages) for item in _chosen(spec, items)])
    cut, rendered = _fit(job)
    shown = job.texts[: cut.items]
    first = shown[0]
    language = spec.post_languages[0]
    return Post(
        channel=spec.channel,
        platform=spec.platform,
        language=spec.language,
        key=spec.key,
        text=rendered.text,
        length=rendered.length,
        limit=job.limit,
        link=None if spec.digest else first.item.url,
        facets=rendered.facets,
        card=None if spec.digest or spec.platform not in CARD_PLATFORMS else _card(first, language),
        image=_image(image_for(first.item), first.title[language]),
        shortened=cut != job.uncut,
        fallbacks=tuple(t.item.id for t in shown if any(t.fallback.values())),
        template=job.name,
    )


def fixed_length(env: Environment, spec: PostSpec, *, date: datetime) -> int:
    """The length of the template's fixed text alone: rendered with empty titles and teasers, no
    hashtags and a link of 23 characters (one item for a digest), counted by the platform's rule.

    :raises TemplateError: naming the template and line of any Jinja problem.
    """
    return _Job(env, spec, date, []).fixed_length()


def check_template(env: Environment, spec: PostSpec, *, date: datetime) -> int:
    """:func:`fixed_length`, failing when it is over the platform's limit (for ``check``).

    :raises PostTooLongError: naming the template, the platform, the length and the limit.
    :raises TemplateError: naming the template and line of any Jinja problem.
    """
    job = _Job(env, spec, date, [])
    length = job.fixed_length()
    if length > job.limit:
        raise PostTooLongError(job.name, spec.platform, length, job.limit)
    return length


def _chosen(spec: PostSpec, items: Sequence[NewsItem]) -> Sequence[NewsItem]:
    if spec.digest:
        if not items:
            raise ValueError(f"channel {spec.channel!r}: a digest post needs at least one item")
        return items[:_MAX_ITEMS]
    found = [item for item in items if item.id == spec.key]
    if not found:
        raise ValueError(f"channel {spec.channel!r}: no item with the id {spec.key!r} among the items given")
    return found[:1]


def _card(texts: _ItemTexts, language: str) -> LinkCard:
    description = cut_words(texts.teaser[language], CARD_DESCRIPTION_LENGTH)
    return LinkCard(url=texts.item.url, title=texts.title[language], description=description)


def _image(image: PostImage | None, alt: str) -> PostImage | None:
    return None if image is None else replace(image, alt=alt)


# -- an item's texts in the post's languages -----------------------------------------------------------


@dataclass(frozen=True)
class _ItemTexts:
    """An item's full texts per post language, before any cut."""

    item: NewsItem
    title: Mapping[str, str]
    teaser: Mapping[str, str]
    fallback: Mapping[str, bool]
    languages: tuple[str, ...]


def _texts_of(item: NewsItem, languages: tuple[str, ...]) -> _ItemTexts:
    """The translation in each language if there is one, else the original text (a fallback)."""
    title: dict[str, str] = {}
    teaser: dict[str, str] = {}
    fallback: dict[str, bool] = {}
    for language in languages:
        translation = item.translations.get(language)
        if item.language == language or translation is None:
            raw_title, summary, shown = item.title, item.summary_html, item.language
        else:
            raw_title, summary, shown = translation.title, translation.summary_html, language
        title[language] = _clean(raw_title)
        teaser[language] = _clean(plaintext(summary))
        fallback[language] = shown != language
    return _ItemTexts(item, title, teaser, fallback, _distinct_languages(languages, title, teaser))


def _clean(text: str) -> str:
    return " ".join(_MARKERS.sub("", text).split())


def _distinct_languages(
    languages: tuple[str, ...], title: Mapping[str, str], teaser: Mapping[str, str]
) -> tuple[str, ...]:
    kept: list[str] = []
    for language in languages:
        if all((title[language], teaser[language]) != (title[k], teaser[k]) for k in kept):
            kept.append(language)
    return tuple(kept)


def hashtag_list(items: Sequence[NewsItem], mapping: Mapping[str, str]) -> list[str]:
    """The hashtags (without '#') of the items' tags, in tag order, each once (case-insensitively);
    a tag without a mapping has none. Spaces in a mapped text are removed, a leading '#' too."""
    by_tag = {tag.casefold(): text for tag, text in mapping.items()}
    seen: set[str] = set()
    found: list[str] = []
    for item in items:
        for tag in item.tags:
            text = "".join(str(by_tag.get(tag.casefold(), "")).split()).lstrip("#")
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                found.append(text)
    return found


# -- rendering one variant -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    text: str
    length: int
    facets: tuple[Facet, ...] = ()


class _Job:
    """One post being fitted: renders variants of it (cached) and its fixed text."""

    def __init__(self, env: Environment, spec: PostSpec, date: datetime, texts: list[_ItemTexts]) -> None:
        self.env = env
        self.spec = spec
        self.date = date
        self.texts = texts
        self.languages = spec.post_languages
        self.limit = limit_of(spec.platform)
        self.name = spec.template or default_template(spec.platform, spec.digest)
        self.uncut = Cut(items=len(texts))
        self._cache: dict[Cut, _Rendered] = {}

    def fits(self, cut: Cut) -> bool:
        return self.render(cut).length <= self.limit

    def render(self, cut: Cut) -> _Rendered:
        if cut not in self._cache:
            shown = self.texts[: cut.items]
            views = [self._view(index, texts, cut) for index, texts in enumerate(shown)]
            tags = hashtag_list([t.item for t in shown], self.spec.hashtags)[: cut.hashtags]
            self._cache[cut] = self._finish(self._render(views, " ".join(f"#{tag}" for tag in tags)), tags)
        return self._cache[cut]

    def fixed_length(self) -> int:
        empty = {language: "" for language in self.languages}
        view = SocialItem(
            id="",
            title=empty,
            teaser=empty,
            fallback={language: False for language in self.languages},
            languages=self.languages,
            link="x" * URL_LENGTH,
            tags=(),
            source="",
            language=self.languages[0],
            published_at=None,
        )
        return self._finish(self._render([view], ""), []).length

    def _view(self, index: int, texts: _ItemTexts, cut: Cut) -> SocialItem:
        item = texts.item
        return SocialItem(
            id=item.id,
            title={k: cut_words(v, cut.title) for k, v in texts.title.items()},
            teaser={k: cut_words(v, cut.teaser) for k, v in texts.teaser.items()},
            fallback=texts.fallback,
            languages=texts.languages,
            link=self._link(index, item.url),
            tags=item.tags,
            source=item.source,
            language=item.language,
            published_at=None if item.date_estimated else item.published_at,
        )

    def _link(self, index: int, url: str) -> str:
        if self.spec.platform not in FACET_PLATFORMS:
            return url
        return f"{_OPEN}{chr(_FIRST_INDEX + index)}{display_link(url)}{_CLOSE}"

    def _render(self, views: list[SocialItem], hashtags: str) -> str:
        spec = self.spec
        context: dict[str, Any] = {
            "post": PostView(spec.channel, spec.platform, spec.language, self.limit),
            "languages": list(self.languages),
            "hashtags": hashtags,
            "edition_date": self.date,
        }
        if spec.digest:
            context["items"] = views
        else:
            context["item"] = views[0]
        _require_plain_text(self.env, self.name)
        return tidy(render_template(self.env, self.name, self.languages[0], context))

    def _finish(self, marked: str, tags: Sequence[str]) -> _Rendered:
        """The text without link markers, its length, and (Bluesky) its link and tag facets."""
        text, links = self._unmark(marked)
        facets = (*links, *_tag_facets(text, tags, links)) if self.spec.platform in FACET_PLATFORMS else ()
        return _Rendered(text, count(self.spec.platform, text), tuple(sorted(facets, key=_facet_order)))

    def _unmark(self, marked: str) -> tuple[str, list[Facet]]:
        out: list[str] = []
        facets: list[Facet] = []
        size = position = 0
        for match in _MARKED_LINK.finditer(marked):
            before = _MARKERS.sub("", marked[position : match.start()])
            shown = match.group(2)
            size += len(before.encode())
            url = self.texts[ord(match.group(1)) - _FIRST_INDEX].item.url
            facets.append(Facet(size, size + len(shown.encode()), "link", url))
            size += len(shown.encode())
            out += (before, shown)
            position = match.end()
        out.append(_MARKERS.sub("", marked[position:]))
        return "".join(out), facets


def _require_plain_text(env: Environment, name: str) -> None:
    """A social post is plain text: a name that turns on HTML escaping would show "A &amp; B"."""
    autoescape = env.autoescape
    if callable(autoescape) and autoescape(name):
        raise TemplateError(
            name,
            "a social post is plain text, but this name turns on HTML escaping: name it e.g. social/x.j2",
        )


def _tag_facets(text: str, tags: Sequence[str], links: Sequence[Facet]) -> list[Facet]:
    facets: list[Facet] = []
    for tag in tags:
        for match in re.finditer(rf"(?<![\w#]){re.escape('#' + tag)}(?!\w)", text):
            start = len(text[: match.start()].encode())
            end = start + len(match.group(0).encode())
            if not any(start < link.byte_end and link.byte_start < end for link in links):
                facets.append(Facet(start, end, "tag", tag))
    return facets


def _facet_order(facet: Facet) -> tuple[int, int]:
    return facet.byte_start, facet.byte_end


# -- fitting -------------------------------------------------------------------------------------------


def _fit(job: _Job) -> tuple[Cut, _Rendered]:
    """The fullest variant that fits: fewer digest items, then shorter teasers, then shorter titles, then
    fewer hashtags, each the most that fits.

    :raises PostTooLongError: when the fixed text alone, or the post with everything cut, is too long.
    """
    if job.fits(job.uncut):
        return job.uncut, job.render(job.uncut)
    fixed = job.fixed_length()
    if fixed > job.limit:
        raise PostTooLongError(job.name, job.spec.platform, fixed, job.limit)
    cut, fitted = fit(job.uncut, job.fits, _steps(job))
    if not fitted:
        raise PostTooLongError(job.name, job.spec.platform, job.render(cut).length, job.limit, fixed=False)
    return cut, job.render(cut)


def _steps(job: _Job) -> list[Step]:
    """The ways to shorten a post, in the order tried."""

    def longest(kind: str) -> Callable[[Cut], int]:
        def length(cut: Cut) -> int:
            shown = job.texts[: cut.items]
            texts = [t.teaser if kind == "teaser" else t.title for t in shown]
            return max((len(text) for by_language in texts for text in by_language.values()), default=0)

        return length

    def tag_count(cut: Cut) -> int:
        return len(hashtag_list([t.item for t in job.texts[: cut.items]], job.spec.hashtags))

    teaser, title = longest("teaser"), longest("title")
    steps = [Step(lambda cut, v: replace(cut, items=v), lambda cut: 1, lambda cut: cut.items - 1)]
    return (steps if job.spec.digest else []) + [
        Step(lambda cut, v: replace(cut, teaser=v), lambda cut: 0, lambda cut: teaser(cut) - 1),
        Step(lambda cut, v: replace(cut, title=v), lambda cut: 1, lambda cut: title(cut) - 1),
        Step(lambda cut, v: replace(cut, hashtags=v), lambda cut: 0, lambda cut: tag_count(cut) - 1),
        Step(lambda cut, v: replace(cut, title=v), lambda cut: 0, lambda cut: 0),
    ]
