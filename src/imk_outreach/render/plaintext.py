"""Summaries (sanitised HTML) as a short HTML teaser or as clean plain text: the ``teaser`` and
``plaintext`` filters.

Both read the HTML into tokens first (text with whitespace collapsed, and balanced inline tags), then cut
the text, so a cut never falls inside a tag, an entity or a word that markup splits (``Fra<em>gen</em>``).

Some feeds escape their HTML twice (``&lt;em&gt;`` in the text, ``&amp;amp;``) or wrap it in a CDATA
section; such a summary is unwrapped one level at a time (at most :data:`UNWRAP_LEVELS`), so neither the
plain text nor the teaser shows tags or entities. What unwrapping brings to light is not sanitised, but
only the allow-listed inline tags with allow-listed attributes (and safe links) ever reach a teaser, and
plain text has no tags at all.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from markupsafe import Markup

TEASER_LENGTH = 240
UNWRAP_LEVELS = 4
ELLIPSIS = "…"

_INLINE_TAGS = frozenset(
    (
        "a abbr b bdi bdo cite code del dfn em i ins kbd mark q s samp small span strong sub sup time u var"
    ).split()
)
_SKIPPED_TAGS = frozenset("script style template head title noscript iframe object svg math".split())
_KEPT_ATTRIBUTES = {"a": ("href", "title", "hreflang"), "abbr": ("title",), "time": ("datetime",)}
_SAFE_HREF = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_TRIMMED_BEFORE_ELLIPSIS = " ,;:–-"
# What HTMLParser would read as markup rather than text: a tag, an end tag, a declaration or comment, a PI.
_MARKUP_START = re.compile(r"<(?:/?[A-Za-z]|!|\?)")


def teaser(value: str, length: int = TEASER_LENGTH) -> Markup:
    """Sanitised HTML shortened to about ``length`` characters of text at a word boundary, with "…".

    Inline markup (links, emphasis, ...) is kept with its tags balanced; blocks, images and lists become
    plain running text. A first word longer than ``length`` is cut.
    """
    tokens = _tokens(_unwrapped(str(value)))
    return Markup(_join(tokens, _cut_at(tokens, length), keep_tags=True))


def plaintext(value: str, length: int | None = None) -> str:
    """HTML as one line of plain text (entities decoded, no tags), shortened like :func:`teaser` when
    ``length`` is given."""
    tokens = _tokens(_unwrapped(str(value)))
    return _join(tokens, _cut_at(tokens, length), keep_tags=False)


# -- summaries escaped twice ---------------------------------------------------------------------------


def _unwrapped(source: str) -> str:
    """``source`` with markup that its text still holds (escaped twice, or in CDATA) made markup again."""
    for _ in range(UNWRAP_LEVELS):
        rebuilt, text = _Unwrapper().run(source)
        if not _holds_markup(text) or rebuilt == source:
            return source
        source = rebuilt
    return source


def _holds_markup(text: str) -> bool:
    return bool(_MARKUP_START.search(text)) or html.unescape(text) != text


class _Unwrapper(HTMLParser):
    """Rebuilds HTML with tags as they are and text decoded once (so escaped markup becomes markup);
    CDATA sections give their content, comments and declarations go."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rebuilt: list[str] = []
        self.text: list[str] = []

    def run(self, source: str) -> tuple[str, str]:
        self.feed(source)
        self.close()
        return "".join(self.rebuilt), "".join(self.text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.rebuilt.append(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.rebuilt.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        self.rebuilt.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.rebuilt.append(data)
        self.text.append(data)

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA["):
            self.handle_data(data.removeprefix("CDATA["))


# -- tokens --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """Text (``tag`` empty), an opening tag (``markup`` is the tag as written out) or a closing tag."""

    text: str = ""
    tag: str = ""
    markup: str = ""
    closing: bool = False


def _tokens(source: str) -> list[_Token]:
    reader = _Reader()
    reader.feed(source)
    reader.close()
    return reader.finish()


class _Reader(HTMLParser):
    """Walks HTML into tokens: text with whitespace collapsed to single spaces (none at either end) and
    the inline tags, balanced; blocks, line breaks and images become a space, skipped elements vanish."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[_Token] = []
        self.open: list[str] = []
        self.skipping = 0
        self.pending_space = False
        self.has_text = False
        self.ends_with_space = False

    def finish(self) -> list[_Token]:
        self.tokens.extend(_Token(tag=tag, closing=True) for tag in reversed(self.open))
        self.open.clear()
        return self.tokens

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif self.skipping:
            return
        elif tag in _INLINE_TAGS:
            self._space()
            self.tokens.append(_Token(tag=tag, markup=f"<{tag}{_attributes(tag, attrs)}>"))
            self.open.append(tag)
        else:  # a block, a line break, an image: a word boundary
            self.pending_space = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS and not self.skipping:
            self.pending_space = True

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif self.skipping:
            return
        elif tag in self.open:
            while self.open:
                closed = self.open.pop()
                self.tokens.append(_Token(tag=closed, closing=True))
                if closed == tag:
                    break
        elif tag not in _INLINE_TAGS:
            self.pending_space = True

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        text = _SPACE.sub(" ", data)
        if text.startswith(" "):
            self.pending_space = True
        text = text.strip(" ")
        if not text:
            return
        self._space()
        self.tokens.append(_Token(text=text))
        self.has_text = True
        self.ends_with_space = False
        self.pending_space = data[-1:].isspace()

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA["):  # left after unwrapping: its content is text
            self.handle_data(data.removeprefix("CDATA["))

    def _space(self) -> None:
        if self.pending_space and self.has_text and not self.ends_with_space:
            self.tokens.append(_Token(text=" "))
            self.ends_with_space = True
        self.pending_space = False


def _attributes(tag: str, attrs: list[tuple[str, str | None]]) -> str:
    return "".join(
        f' {key}="{html.escape(value)}"'
        for key, value in attrs
        if value is not None
        and key in _KEPT_ATTRIBUTES.get(tag, ())
        and (key != "href" or _SAFE_HREF.match(value.strip()))
    )


# -- cutting and writing out ---------------------------------------------------------------------------


def _cut_at(tokens: list[_Token], limit: int | None) -> int | None:
    """Where the text is cut (characters of text kept), or None when it fits.

    At the last space within ``limit`` (punctuation before it dropped); a first word longer than
    ``limit`` is cut at ``limit``.
    """
    flat = "".join(token.text for token in tokens)
    if limit is None or len(flat) <= limit:
        return None
    limit = max(limit, 1)
    boundary = flat.rfind(" ", 0, limit + 1)
    position = boundary if boundary > 0 else limit
    while position > 0 and flat[position - 1] in _TRIMMED_BEFORE_ELLIPSIS:
        position -= 1
    return position if position > 0 else limit


def _join(tokens: list[_Token], cut: int | None, *, keep_tags: bool) -> str:
    out: list[str] = []
    open_tags: list[str] = []
    count = 0
    for token in tokens:
        if cut is not None and count >= cut:
            break
        if token.tag:
            if token.closing:
                open_tags.pop()
            else:
                open_tags.append(token.tag)
            if keep_tags:
                out.append(f"</{token.tag}>" if token.closing else token.markup)
            continue
        text = token.text if cut is None else token.text[: cut - count]
        count += len(text)
        out.append(html.escape(text, quote=False) if keep_tags else text)
    if cut is not None:
        out.append(ELLIPSIS)
        if keep_tags:
            out.extend(f"</{tag}>" for tag in reversed(open_tags))
    return "".join(out).strip()
