"""The one Jinja2 environment of the product, its message catalogs and its filters.

Decisions, so that templates behave the same everywhere:

* ``StrictUndefined``: a misspelt variable is an error naming ``template:line``, never an empty string.
* Autoescape for templates whose name ends in ``.html``, ``.htm``, ``.xml`` or ``.mjml`` (also followed by
  ``.j2``, e.g. ``newsletter/default.mjml.j2``) and for strings; plain-text templates (``*.txt.j2`` and
  any other name) are not escaped.
* ``jinja2.ext.i18n`` with new-style gettext. The catalogs are ``render/locale/<lang>/LC_MESSAGES/
  messages.po``, read with Babel and compiled in memory (no ``.mo`` build step).
* One Environment serves every language: the language of a render is chosen by the render context, not
  by the Environment. :func:`language_context` returns ``language`` plus the ``gettext``/``ngettext``/
  ``pgettext``/``npgettext`` callables bound to that language's catalog; ``{% trans %}``, ``_()`` and
  the Babel filters look them up in the context. No lock, no Environment per render, so renders of
  different languages may run in parallel threads. The Environment's global gettext callables raise, so
  a template that lost the context (a macro imported without ``with context``) fails loudly instead of
  silently rendering English.
* Filters (locale = the render's language): ``date`` (Babel format, default ``long``: "1. Dezember
  2026" / "December 1, 2026"), ``month`` ("Dezember 2026" / "December 2026"), ``number``,
  ``teaser`` (sanitised HTML shortened at a word boundary, inline markup kept, tags balanced) and
  ``plaintext`` (HTML to one line of text, optionally shortened). Datetimes are shown in the
  Environment's timezone (default Europe/Berlin).

:func:`render_template` and :func:`render_string` turn every Jinja problem into
:class:`~imk_outreach.errors.TemplateError` with the template name and line.
"""

from __future__ import annotations

import gettext as gettext_module
import html
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, tzinfo
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateRuntimeError,
    TemplateSyntaxError,
    pass_context,
    select_autoescape,
)
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.runtime import Context
from markupsafe import Markup

from imk_outreach.errors import TemplateError

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_TIMEZONE = "Europe/Berlin"
AUTOESCAPE_EXTENSIONS = ("html", "htm", "xml", "mjml", "html.j2", "htm.j2", "xml.j2", "mjml.j2")
TEASER_LENGTH = 240
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")

# Errors a template expression can raise besides Jinja's own (a filter given the wrong type, ...).
_EXPRESSION_ERRORS = (TypeError, ValueError, LookupError, AttributeError, ArithmeticError)


# -- where templates live ------------------------------------------------------------------------------


def shipped_templates_dir() -> Path:
    """The folder of default templates shipped with the package.

    In a built wheel the repository's top-level ``templates/`` is package data at
    ``imk_outreach/_templates`` (see ``[tool.setuptools] package-dir`` in pyproject.toml). In a source
    checkout and an editable install it is the repository's ``templates/`` itself.

    :raises TemplateError: when neither exists (a broken installation).
    """
    installed = Path(__file__).resolve().parents[1] / "_templates"
    checkout = Path(__file__).resolve().parents[3] / "templates"
    for candidate in (installed, checkout):
        if candidate.is_dir():
            return candidate
    raise TemplateError("<shipped templates>", f"not found at {installed} or {checkout}")


def make_env(template_dirs: Sequence[Path], *, timezone: str = DEFAULT_TIMEZONE) -> Environment:
    """Build the Environment: the staff folders first, in order, and the shipped defaults last.

    A template found in a staff folder overrides the shipped one of the same name; any other name falls
    back to the shipped default. ``timezone`` is the zone dates are shown in.
    """
    ZoneInfo(timezone)  # fail now, not at the first date shown
    loaders: list[BaseLoader] = [FileSystemLoader(str(d)) for d in template_dirs]
    loaders.append(FileSystemLoader(str(shipped_templates_dir())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(
            enabled_extensions=AUTOESCAPE_EXTENSIONS, default_for_string=True, default=False
        ),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_no_language,
        ngettext=_no_language,
        pgettext=_no_language,
        npgettext=_no_language,
        newstyle=True,
    )
    env.globals["timezone"] = timezone
    env.filters.update(
        date=date_filter, month=month_filter, number=number_filter, teaser=teaser, plaintext=plaintext
    )
    return env


def template_dirs_of(env: Environment) -> list[Path]:
    """The folders the Environment searches, in order (staff folders first, shipped defaults last)."""
    loader = env.loader
    sub_loaders = loader.loaders if isinstance(loader, ChoiceLoader) else [loader]
    return [Path(p) for sub in sub_loaders if isinstance(sub, FileSystemLoader) for p in sub.searchpath]


# -- catalogs ------------------------------------------------------------------------------------------


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"


def available_languages() -> tuple[str, ...]:
    """The languages with a message catalog, sorted."""
    return tuple(sorted(p.parents[1].name for p in LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")))


@cache
def translations(language: str) -> gettext_module.GNUTranslations:
    """The catalog of ``language``, read from its ``.po`` file with Babel and compiled in memory.

    :raises TemplateError: when there is no catalog for the language or it cannot be read.
    """
    path = catalog_path(language)
    if not _LANGUAGE_CODE.fullmatch(language) or not path.is_file():
        have = ", ".join(available_languages())
        raise TemplateError(str(path), f"no message catalog for language {language!r} (have: {have})")
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language, abort_invalid=True)
    except Exception as exc:  # babel raises PoFileError and others; name the file either way
        raise TemplateError(str(path), f"cannot read catalog: {exc}") from exc
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext_module.GNUTranslations(buffer)


def language_context(language: str) -> dict[str, Any]:
    """What a render context needs for ``language``: the language and its gettext callables.

    :raises TemplateError: when there is no catalog for the language.
    """
    return dict(_callables(language))


@cache
def _callables(language: str) -> tuple[tuple[str, Any], ...]:
    catalog = translations(language)
    return (
        ("language", language),
        ("gettext", _newstyle_gettext(catalog.gettext)),
        ("ngettext", _newstyle_ngettext(catalog.ngettext)),
        ("pgettext", _newstyle_pgettext(catalog.pgettext)),
        ("npgettext", _newstyle_npgettext(catalog.npgettext)),
    )


def _no_language(*args: Any, **kwargs: Any) -> str:
    raise TemplateRuntimeError(
        "no language in this render context (import macros 'with context'; render through render.env)"
    )


# The four wrappers do what jinja2.ext does for newstyle gettext (its helpers are private): mark the
# translation safe when autoescaping, and always %-format it with the keyword arguments.


def _finish(context: Context, text: Any, variables: Mapping[str, Any]) -> str:
    if context.eval_ctx.autoescape:
        return Markup(text) % variables
    return str(text % variables)


def _newstyle_gettext(func: Callable[[str], str]) -> Callable[..., str]:
    @pass_context
    def gettext(__context: Context, __string: str, **variables: Any) -> str:
        return _finish(__context, __context.call(func, __string), variables)

    return gettext


def _newstyle_ngettext(func: Callable[[str, str, int], str]) -> Callable[..., str]:
    @pass_context
    def ngettext(__context: Context, __singular: str, __plural: str, __num: int, **variables: Any) -> str:
        variables.setdefault("num", __num)
        return _finish(__context, __context.call(func, __singular, __plural, __num), variables)

    return ngettext


def _newstyle_pgettext(func: Callable[[str, str], str]) -> Callable[..., str]:
    @pass_context
    def pgettext(__context: Context, __string_ctx: str, __string: str, **variables: Any) -> str:
        variables.setdefault("context", __string_ctx)
        return _finish(__context, __context.call(func, __string_ctx, __string), variables)

    return pgettext


def _newstyle_npgettext(func: Callable[[str, str, str, int], str]) -> Callable[..., str]:
    @pass_context
    def npgettext(
        __context: Context, __string_ctx: str, __singular: str, __plural: str, __num: int, **variables: Any
    ) -> str:
        variables.setdefault("context", __string_ctx)
        variables.setdefault("num", __num)
        text = __context.call(func, __string_ctx, __singular, __plural, __num)
        return _finish(__context, text, variables)

    return npgettext


# -- rendering with errors that name template and line ------------------------------------------------


def render_template(env: Environment, name: str, language: str, context: Mapping[str, Any]) -> str:
    """Render the template ``name`` in ``language`` with ``context``.

    :raises TemplateError: naming the template (or the partial) and line of any problem.
    """
    with _template_errors(env, name):
        template = env.get_template(name)
        return template.render({**context, **language_context(language)})


def render_string(
    env: Environment,
    source: str,
    name: str,
    language: str,
    context: Mapping[str, Any],
    *,
    autoescape: bool = False,
) -> str:
    """Render a template string (a campaign's subject or intro); ``name`` is what errors call it.

    The result is plain text unless ``autoescape`` is set: the string is wrapped in an
    ``{% autoescape %}`` block on its first line, so line numbers stay those of ``source``.
    """
    flag = "true" if autoescape else "false"
    with _template_errors(env, name):
        template = env.from_string(f"{{% autoescape {flag} %}}{source}{{% endautoescape %}}")
        return template.render({**context, **language_context(language)})


class _template_errors:
    """Context manager turning Jinja (and template expression) errors into TemplateError."""

    def __init__(self, env: Environment, name: str) -> None:
        self.env = env
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, TemplateError):
            return
        if isinstance(exc, TemplateNotFound):
            missing = exc.name if isinstance(exc.name, str) else self.name
            where, line = _template_frame(self.env, tb, "")
            message = _not_found_message(self.env)
            if where and line is not None:  # an {% include %} or {% extends %} names a missing template
                message += f"; used at {where}:{line}"
            raise TemplateError(missing, message) from exc
        if isinstance(exc, TemplateSyntaxError):
            raise TemplateError(exc.name or self.name, exc.message or str(exc), exc.lineno) from exc
        if isinstance(exc, (JinjaTemplateError, *_EXPRESSION_ERRORS)):
            where, line = _template_frame(self.env, tb, self.name)
            message = str(exc) if isinstance(exc, JinjaTemplateError) else f"{type(exc).__name__}: {exc}"
            raise TemplateError(where, message, line) from exc


def _not_found_message(env: Environment) -> str:
    searched = ", ".join(str(d) for d in template_dirs_of(env))
    return f"template not found (searched {searched})"


def _template_frame(env: Environment, tb: TracebackType | None, default: str) -> tuple[str, int | None]:
    """The innermost template frame of a traceback Jinja rewrote: (template name, line)."""
    found: tuple[str, int | None] = (default, None)
    for frame_tb in _walk(tb):
        frame_globals = frame_tb.tb_frame.f_globals
        if "__jinja_exception__" in frame_globals:  # a frame Jinja made to point at template source
            found = (_template_name(env, frame_tb.tb_frame.f_code.co_filename, default), frame_tb.tb_lineno)
    return found


def _walk(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _template_name(env: Environment, filename: str, default: str) -> str:
    path = Path(filename)
    for folder in template_dirs_of(env):
        if path.is_relative_to(folder):
            return path.relative_to(folder).as_posix()
    return default


# -- filters -------------------------------------------------------------------------------------------


def _locale_of(context: Context) -> str:
    language = context.resolve_or_missing("language")
    if not isinstance(language, str):
        raise TemplateRuntimeError("no language in this render context (render through render.env)")
    return language


def _local_date(context: Context, value: date | datetime) -> date:
    if not isinstance(value, datetime):
        if isinstance(value, date):
            return value
        raise TypeError(f"expected a date or datetime, got {type(value).__name__}")
    zone: tzinfo = ZoneInfo(str(context.environment.globals.get("timezone", DEFAULT_TIMEZONE)))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(zone).date()


@pass_context
def date_filter(context: Context, value: date | datetime, format: str = "long") -> str:
    """``{{ item.published_at|date }}``: "1. Dezember 2026" / "December 1, 2026" (Babel format)."""
    return format_date(_local_date(context, value), format, locale=_locale_of(context))


@pass_context
def month_filter(context: Context, value: date | datetime) -> str:
    """``{{ edition.date|month }}``: "Dezember 2026" / "December 2026"."""
    return format_date(_local_date(context, value), "LLLL y", locale=_locale_of(context))


@pass_context
def number_filter(context: Context, value: float | int, format: str | None = None) -> str:
    """``{{ 1234.5|number }}``: "1.234,5" / "1,234.5"."""
    return format_decimal(value, format, locale=_locale_of(context))


def teaser(value: str, length: int = TEASER_LENGTH) -> Markup:
    """Sanitised HTML shortened to about ``length`` characters of text at a word boundary, with "…".

    Inline markup (links, emphasis, ...) is kept with its tags balanced; blocks, images and lists become
    plain running text. The input must already be sanitised (items' ``summary_html`` is).
    """
    return Markup(_Shortener(length, keep_tags=True).run(str(value)))


def plaintext(value: str, length: int | None = None) -> str:
    """HTML as one line of plain text (entities decoded), shortened like :func:`teaser` when given."""
    return _Shortener(length, keep_tags=False).run(str(value))


_INLINE_TAGS = frozenset(
    (
        "a abbr b bdi bdo cite code del dfn em i ins kbd mark q s samp small span strong sub sup time u var"
    ).split()
)
_SKIPPED_TAGS = frozenset("script style template head title noscript iframe object svg math".split())
_KEPT_ATTRIBUTES = {"a": ("href", "title", "hreflang"), "abbr": ("title",), "time": ("datetime",)}
_SAFE_HREF = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


class _Shortener(HTMLParser):
    """Walks HTML, keeps inline tags (balanced) and text, stops after ``limit`` characters of text."""

    def __init__(self, limit: int | None, *, keep_tags: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.limit = limit
        self.keep_tags = keep_tags
        self.out: list[str] = []
        self.open: list[str] = []
        self.count = 0
        self.skipping = 0
        self.space = False
        self.done = False

    def run(self, source: str) -> str:
        self.feed(source)
        self.close()
        self.out.extend(f"</{tag}>" for tag in reversed(self.open))
        return "".join(self.out).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif self.done or self.skipping:
            return
        elif tag in _INLINE_TAGS:
            self._open_tag(tag, attrs)
        else:  # a block, a line break, an image: a word boundary
            self.space = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS and not self.skipping:
            self.space = True

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif self.done or self.skipping:
            return
        elif tag in self.open:
            while self.open:
                closed = self.open.pop()
                self._emit_tag(f"</{closed}>")
                if closed == tag:
                    break
        elif tag not in _INLINE_TAGS:
            self.space = True

    def handle_data(self, data: str) -> None:
        if self.done or self.skipping:
            return
        text = _SPACE.sub(" ", data)
        if text.startswith(" "):
            self.space = True
            text = text[1:]
        if not text:
            return
        if self.space and self.count:
            text = " " + text
        self.space = text.endswith(" ")
        text = text.rstrip(" ")
        if self.limit is not None and self.count + len(text) > self.limit:
            text = self._cut(text, self.limit - self.count)
            self.done = True
        self.count += len(text)
        self.out.append(html.escape(text, quote=False) if self.keep_tags else text)

    def _cut(self, text: str, room: int) -> str:
        """Cut at the last word boundary within ``room``; a lone first word longer than that is cut hard."""
        head = text[: room + 1]
        boundary = head.rfind(" ")
        head = head[: max(boundary, 0)] if boundary >= 0 or self.count else head[:room]
        return head.rstrip(" ,;:–-") + "…"

    def _open_tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.space and self.count:
            self.out.append(" ")
            self.count += 1
            self.space = False
        attributes = "".join(
            f' {key}="{html.escape(value)}"'
            for key, value in attrs
            if value is not None
            and key in _KEPT_ATTRIBUTES.get(tag, ())
            and (key != "href" or _SAFE_HREF.match(value.strip()))
        )
        self._emit_tag(f"<{tag}{attributes}>")
        self.open.append(tag)

    def _emit_tag(self, text: str) -> None:
        if self.keep_tags:
            self.out.append(text)
