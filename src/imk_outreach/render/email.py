"""Edition -> email: Jinja renders MJML per (edition, language), mjml-python compiles it once, per-recipient
values are filled into the compiled HTML and text by :func:`personalize`.

What a newsletter template sees (the shipped ``newsletter/default.mjml.j2`` and ``default.txt.j2`` use
exactly this; staff templates may use all of it):

``language`` ("de"), ``edition`` (:class:`~imk_outreach.models.Edition`), ``campaign``, ``brand``, ``now``
(the render time, aware), ``brand_name``, ``imprint`` (text) and ``imprint_lines``, ``social_links``
((label, url) pairs), ``subject``, ``preheader``, ``intro`` (plain text) and ``intro_paragraphs`` (a
tuple of paragraphs, each a tuple of lines), ``sections`` (:class:`SectionView`: ``id``, ``heading``,
``cards``; only sections with at least one item, so no heading stands alone), ``item_count`` (distinct
items in the edition), ``fallbacks`` (ids of items shown in their original language) and ``ph``
(the per-recipient placeholders: ``ph.greeting``, ``ph.unsubscribe_url``, ``ph.preferences_url``,
``ph.email``). Each :class:`Card` has ``id``, ``url``, ``title``, ``summary_html`` (sanitised, marked
safe; use ``|teaser`` / ``|plaintext(240)``), ``published_at`` (None for an undated item: the source gave
no date, so none is shown), ``image`` (the absolute URL of the stored copy under ``public_url``, or None;
never a third-party URL), ``language`` (of the text shown), ``fallback`` (True when shown in the
original language for lack of a translation), ``language_name`` (that language's name in the render's
language, "Englisch"), ``source``, ``tags`` and ``item`` (the :class:`~imk_outreach.models.NewsItem`).

The text part is rendered from the same context by the text template beside the MJML one
(``newsletter/monthly.mjml.j2`` -> ``newsletter/monthly.txt.j2``, else ``newsletter/default.txt.j2``)
and wrapped at 76 columns (URLs are never broken).
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from babel import Locale
from jinja2 import Environment, TemplateNotFound
from markupsafe import Markup
from mjml import mjml2html

from imk_outreach.errors import TemplateError
from imk_outreach.models import Brand, Campaign, Edition, NewsItem, RenderedEmail
from imk_outreach.render.env import render_string, render_template, translations

# Tokens that survive Jinja autoescape, MJML, HTML, line wrapping and quoted-printable unchanged: plain
# upper-case letters and underscores, and none is a prefix of another.
PLACEHOLDERS: Mapping[str, str] = MappingProxyType(
    {
        "greeting": "IMKPH_GREETING_X",
        "unsubscribe_url": "IMKPH_UNSUBSCRIBE_URL_X",
        "preferences_url": "IMKPH_PREFERENCES_URL_X",
        "email": "IMKPH_EMAIL_X",
    }
)
DEFAULT_TEXT_TEMPLATE = "newsletter/default.txt.j2"
TEXT_WIDTH = 76
PREHEADER_LENGTH = 150

# The line of the campaign file on which the text of (key, language) starts, when known.
TextLocator = Callable[[str, str], int | None]

_TOKEN = re.compile("(" + "|".join(re.escape(token) for token in PLACEHOLDERS.values()) + ")")
_KEY_OF_TOKEN = {token: key for key, token in PLACEHOLDERS.items()}


@dataclass(frozen=True)
class Card:
    """One item as a newsletter shows it in one language."""

    id: str
    url: str
    title: str
    summary_html: Markup
    published_at: datetime | None
    image: str | None
    language: str
    fallback: bool
    language_name: str
    source: str
    tags: tuple[str, ...]
    item: NewsItem


@dataclass(frozen=True)
class SectionView:
    id: str
    heading: str
    cards: tuple[Card, ...]


# -- the render ----------------------------------------------------------------------------------------


def render_email(
    env: Environment,
    campaign: Campaign,
    edition: Edition,
    language: str,
    brand: Brand,
    now: datetime,
    *,
    locate_text: TextLocator | None = None,
) -> RenderedEmail:
    """Render ``edition`` of ``campaign`` in ``language``: MJML compiled once, placeholders left in.

    :param now: the render time (aware), shown as the footer's year.
    :param locate_text: the line of the campaign file where the text of (key, language) starts; with it,
        an error in a campaign text names ``file:line: key.language``, the line counted in the file.
    :raises TemplateError: naming the template (or campaign file, key and line) of any Jinja or MJML
        problem.
    """
    texts = _CampaignTexts(env, campaign, language, locate_text)
    context = _base_context(campaign, edition, language, brand, now)
    intro = texts.render("intro", context)
    subject = _one_line(texts.render("subject", context))
    if not subject:
        raise texts.error("subject", "the subject is empty")
    context.update(_content(edition, language, brand.public_url))
    context.update(
        subject=subject,
        preheader=_preheader(texts, context, intro),
        intro=intro.strip(),
        intro_paragraphs=_paragraphs(intro),
    )
    mjml_source = render_template(env, campaign.template, language, context)
    html_part = _set_lang(_compile_rendered(mjml_source, campaign.template), language)
    text_part = wrap_text(render_template(env, _text_template(env, campaign.template), language, context))
    return RenderedEmail(language, subject, context["preheader"], html_part, text_part, context["fallbacks"])


def _content(edition: Edition, language: str, public_url: str) -> dict[str, Any]:
    """Sections with at least one item (an empty one would show a bare heading), the item count."""
    sections = tuple(
        _section_view(s.id, s.heading, s.items, language, public_url) for s in edition.sections if s.items
    )
    cards = [card for section in sections for card in section.cards]
    return {
        "sections": sections,
        "item_count": len({card.id for card in cards}),
        "fallbacks": tuple(dict.fromkeys(card.id for card in cards if card.fallback)),
    }


def _base_context(
    campaign: Campaign, edition: Edition, language: str, brand: Brand, now: datetime
) -> dict[str, Any]:
    imprint = _pick(brand.imprint, language).strip()
    return {
        "edition": edition,
        "campaign": campaign,
        "brand": brand,
        "now": now,
        "brand_name": _pick(brand.name, language),
        "imprint": imprint,
        "imprint_lines": tuple(line.strip() for line in imprint.splitlines() if line.strip()),
        "social_links": brand.social_links,
        "ph": PLACEHOLDERS,
    }


class _CampaignTexts:
    """A campaign's per-language Jinja texts (subject, intro, preheader), rendered as plain text; an error
    names the campaign file, the line in it (when ``locate`` knows where the text starts) and the key."""

    def __init__(
        self, env: Environment, campaign: Campaign, language: str, locate: TextLocator | None
    ) -> None:
        self.env = env
        self.campaign = campaign
        self.language = language
        self.locate = locate

    def render(self, key: str, context: Mapping[str, Any]) -> str:
        source = getattr(self.campaign, key).get(self.language, "")
        if not source:
            return ""
        name = self._name(key)
        try:
            return render_string(self.env, source, name, self.language, context)
        except TemplateError as exc:
            if exc.template != name:  # a template the text includes is at fault: it is named already
                raise
            raise self.error(key, exc.message, exc.line) from exc

    def error(self, key: str, message: str, text_line: int | None = None) -> TemplateError:
        """``campaigns/m.yaml:14: subject.de: message``: ``text_line`` (of the text) counted in the file.

        Without a known start line: ``campaigns/m.yaml (subject.de):2: message`` (the text's own line).
        """
        start = self.locate(key, self.language) if self.locate is not None else None
        if start is None:
            return TemplateError(self._name(key), message, text_line)
        line = start + (text_line - 1 if text_line else 0)
        return TemplateError(self._file, f"{key}.{self.language}: {message}", line)

    @property
    def _file(self) -> str:
        return self.campaign.path or self.campaign.name

    def _name(self, key: str) -> str:
        return f"{self._file} ({key}.{self.language})"


def _pick(texts: Mapping[str, str], language: str) -> str:
    """The text in ``language``, else English, else any: brand texts must never break a render."""
    for key in (language, "en"):
        if texts.get(key):
            return texts[key]
    return next((text for text in texts.values() if text), "")


def _preheader(texts: _CampaignTexts, context: Mapping[str, Any], intro: str) -> str:
    """The campaign's preheader, else the intro's first sentence, else the first titles."""
    text = texts.render("preheader", context) or first_sentence(intro)
    if not text.strip():
        text = " · ".join(card.title for section in context["sections"] for card in section.cards[:1])
    return _shorten(_one_line(text), PREHEADER_LENGTH)


def _text_template(env: Environment, mjml_name: str) -> str:
    """The text template beside the MJML one, else the shipped default."""
    stem = mjml_name.removesuffix(".j2").removesuffix(".mjml")
    if env.loader is not None and stem != mjml_name:
        try:
            env.loader.get_source(env, f"{stem}.txt.j2")
            return f"{stem}.txt.j2"
        except TemplateNotFound:
            pass
    return DEFAULT_TEXT_TEMPLATE


# -- items in a language -------------------------------------------------------------------------------


def _section_view(
    section_id: str,
    heading: Mapping[str, str],
    items: tuple[NewsItem, ...],
    language: str,
    public_url: str,
) -> SectionView:
    cards = tuple(_card(item, language, public_url) for item in items)
    return SectionView(section_id, _pick(heading, language), cards)


def _card(item: NewsItem, language: str, public_url: str) -> Card:
    translation = item.translations.get(language)
    if item.language == language or translation is None:
        title, summary, shown = item.title, item.summary_html, item.language
    else:
        title, summary, shown = translation.title, translation.summary_html, language
    return Card(
        id=item.id,
        url=item.url,
        title=title,
        summary_html=Markup(summary),  # sanitised by the gather stage (allow-list sanitiser)
        published_at=None if item.date_estimated else item.published_at,
        image=image_url(item.image, public_url),
        language=shown,
        fallback=shown != language,
        language_name=language_name(shown, language),
        source=item.source,
        tags=item.tags,
        item=item,
    )


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def image_url(image: str | None, public_url: str) -> str | None:
    """The absolute URL of an item's stored image: ``media/3f2a.jpg`` -> ``{public_url}/media/3f2a.jpg``.

    An image is shown only from our own ``public_url``: a value that is itself a URL (``https://...``,
    ``//host/...``, ``data:``; a legacy row whose image was not fetched yet) gives None, never a
    hot-link that tells a third party who opened the mail.
    """
    path = (image or "").strip()
    base = public_url.strip().rstrip("/")
    if not path or not base or path.startswith("//") or _SCHEME.match(path):
        return None
    return f"{base}/{quote(path.lstrip('/'), safe='/%-._~')}"


@cache
def language_name(code: str, in_language: str) -> str:
    """The name of language ``code`` in ``in_language`` ("Englisch"), or the code itself."""
    try:
        return str(Locale.parse(in_language).languages.get(code, code))
    except (ValueError, LookupError):
        return code


def greeting(language: str, name: str | None = None) -> str:
    """The greeting line for a recipient ("Hallo Anna," / "Hello,"): the value for ``greeting``."""
    catalog = translations(language)
    if name and name.strip():
        return catalog.gettext("Hello %(name)s,") % {"name": name.strip()}
    return catalog.gettext("Hello,")


# -- MJML ----------------------------------------------------------------------------------------------


def compile_mjml(source: str | bytes, template_name: str) -> str:
    """Compile MJML to HTML with mjml-python. Bytes are UTF-8 (a BOM is fine); CRLF is accepted.

    :raises TemplateError: naming ``template_name`` (and the line where mjml-python gives a position) when
        the MJML is invalid or compiles to nothing.
    """
    text = _decode(source, template_name).replace("\r\n", "\n").replace("\r", "\n")
    try:
        result = mjml2html(text)
    except ValueError as exc:
        raise TemplateError(template_name, f"invalid MJML: {exc}", _mjml_error_line(str(exc), text)) from exc
    if not result.strip():
        raise TemplateError(template_name, "invalid MJML: the result is empty")
    return result


def _decode(source: str | bytes, template_name: str) -> str:
    if isinstance(source, str):
        return source.removeprefix("\ufeff")
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = source[: exc.start].count(b"\n") + 1
        raise TemplateError(template_name, f"not UTF-8: {exc.reason} at byte {exc.start}", line) from exc


def _mjml_error_line(message: str, text: str) -> int | None:
    """mjml-python reports "... at position START:END" as byte offsets; turn START into a line number."""
    match = re.search(r"at position (\d+):\d+", message)
    if match is None:
        return None
    return text.encode("utf-8")[: int(match.group(1))].count(b"\n") + 1


def _compile_rendered(source: str, template_name: str) -> str:
    """Compile MJML rendered from a template; a line number is one of the rendered MJML, so say so."""
    try:
        return compile_mjml(source, template_name)
    except TemplateError as exc:
        if exc.line is None:
            raise
        raise TemplateError(template_name, f"{exc.message} (line {exc.line} of the rendered MJML)") from exc


_HTML_TAG = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_LANG_ATTRIBUTE = re.compile(r'\blang="[^"]*"')


def _set_lang(document: str, language: str) -> str:
    """Make ``<html lang>`` (and MJML's wrapper ``<div role="article" lang>``) the render's language."""
    match = _HTML_TAG.search(document)
    if match is None:
        return document
    tag = match.group(0)
    if _LANG_ATTRIBUTE.search(tag):
        fixed = _LANG_ATTRIBUTE.sub(f'lang="{language}"', tag, count=1)
    else:
        fixed = f'<html lang="{language}"{tag[5:]}'
    document = document[: match.start()] + fixed + document[match.end() :]
    return document.replace('role="article" lang="und"', f'role="article" lang="{language}"', 1)


# -- text ----------------------------------------------------------------------------------------------

_BULLET = re.compile(r"^(\s*(?:[*•-]|\d+[.)])?\s*)")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s*(?:$|[\"“„'(]?[A-ZÄÖÜ0-9])")
_ABBREVIATIONS = frozenset("bzw ca dr ggf inkl mr mrs ms nr prof sog st u.a usw vgl z.b evtl".split())


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap lines longer than ``width`` at spaces (indent and bullets kept); URLs and other long words
    are never broken. Trailing spaces go, runs of blank lines become one, the text ends with a newline."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) <= width:
            lines.append(line)
            continue
        lead = _BULLET.match(line)
        first = lead.group(1) if lead else ""
        lines.extend(
            textwrap.wrap(
                line[len(first) :],
                width,
                initial_indent=first,
                subsequent_indent=" " * len(first),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    joined = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return joined.strip("\n") + "\n"


def first_sentence(text: str) -> str:
    """The first sentence of ``text``. A full stop after a one- or two-digit number ("1. Dezember"), a
    single letter ("z. B.") or a common abbreviation does not end one."""
    flat = _one_line(text)
    for match in _SENTENCE_END.finditer(flat):
        word = flat[: match.start()].rsplit(" ", 1)[-1]
        if (word.isdigit() and len(word) <= 2) or len(word) <= 1 or word.lower() in _ABBREVIATIONS:
            continue
        if _NEXT_STARTS_SENTENCE.match(flat, match.end()):
            return flat[: match.end()]
    return flat


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    head = text[: length + 1].rsplit(" ", 1)[0] if " " in text[:length] else text[:length]
    return head.rstrip(" ,;:–-") + "…"


def _paragraphs(text: str) -> tuple[tuple[str, ...], ...]:
    blocks = re.split(r"\n\s*\n", text.strip())
    return tuple(
        tuple(line.strip() for line in block.splitlines() if line.strip())
        for block in blocks
        if block.strip()
    )


# -- per recipient -------------------------------------------------------------------------------------


class Personalizer:
    """Fills the placeholders of one :class:`RenderedEmail` for many recipients.

    The HTML and text are split at the placeholders once; :meth:`fill` only joins strings. Values are
    HTML-escaped for the HTML part and used as they are in the text part.
    """

    def __init__(self, rendered: RenderedEmail) -> None:
        self._html = _split(rendered.html)
        self._text = _split(rendered.text)
        self._needed = frozenset(self._html[1]) | frozenset(self._text[1])

    def fill(self, values: Mapping[str, str]) -> tuple[str, str]:
        """Return (html, text) for one recipient.

        :raises ValueError: when a value for a placeholder in use is missing, or a key is unknown.
        """
        unknown = values.keys() - PLACEHOLDERS.keys()
        missing = self._needed - values.keys()
        if unknown or missing:
            raise ValueError(
                f"personalize: unknown keys {sorted(unknown)}, missing values for {sorted(missing)}"
            )
        escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
        return _join(self._html, escaped), _join(self._text, values)


def _split(document: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(literal pieces, placeholder keys between them); there is one more piece than keys."""
    parts = _TOKEN.split(document)
    return tuple(parts[0::2]), tuple(_KEY_OF_TOKEN[token] for token in parts[1::2])


def _join(split: tuple[tuple[str, ...], tuple[str, ...]], values: Mapping[str, str]) -> str:
    pieces, keys = split
    out = [pieces[0]]
    for key, piece in zip(keys, pieces[1:], strict=True):
        out.append(values[key])
        out.append(piece)
    return "".join(out)


@lru_cache(maxsize=16)
def _personalizer(rendered: RenderedEmail) -> Personalizer:
    return Personalizer(rendered)


def personalize(rendered: RenderedEmail, values: Mapping[str, str]) -> tuple[str, str]:
    """(html, text) of ``rendered`` for one recipient; ``values`` maps each key of :data:`PLACEHOLDERS`.

    The split of each RenderedEmail is cached, so calling this per recipient is cheap.

    :raises ValueError: as :meth:`Personalizer.fill`.
    """
    return _personalizer(rendered).fill(values)
