"""The one Jinja2 environment of the product, its message catalogs and its filters.

Decisions, so that templates behave the same everywhere:

* ``StrictUndefined``: a misspelt variable is an error naming ``template:line``, never an empty string;
  errors about an unknown filter, test, variable or attribute name the nearest one and those available
  (see :mod:`imk_outreach.render.diagnostics`).
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
  ``plaintext`` (HTML to one line of clean text, optionally shortened; see
  :mod:`imk_outreach.render.plaintext`). Datetimes are shown in the
  Environment's timezone (default Europe/Berlin).

:func:`render_template` and :func:`render_string` turn every Jinja problem into
:class:`~imk_outreach.errors.TemplateError` with the template name and line.
"""

from __future__ import annotations

import gettext as gettext_module
import io
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, tzinfo
from functools import cache
from pathlib import Path
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
    TemplateRuntimeError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context, Undefined
from markupsafe import Markup

from imk_outreach.errors import TemplateError
from imk_outreach.render.diagnostics import SuggestingUndefined, template_dirs_of, template_errors
from imk_outreach.render.plaintext import TEASER_LENGTH, plaintext, teaser

__all__ = [
    "TEASER_LENGTH",
    "available_languages",
    "catalog_path",
    "date_filter",
    "language_context",
    "make_env",
    "month_filter",
    "number_filter",
    "plaintext",
    "render_string",
    "render_template",
    "shipped_templates_dir",
    "teaser",
    "template_dirs_of",
    "translations",
]

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_TIMEZONE = "Europe/Berlin"
AUTOESCAPE_EXTENSIONS = ("html", "htm", "xml", "mjml", "html.j2", "htm.j2", "xml.j2", "mjml.j2")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")


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
        undefined=SuggestingUndefined,
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
    full = {**context, **language_context(language)}
    with template_errors(env, name, full):
        return env.get_template(name).render(full)


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
    full = {**context, **language_context(language)}
    with template_errors(env, name, full, source):
        template = env.from_string(f"{{% autoescape {flag} %}}{source}{{% endautoescape %}}")
        return template.render(full)


# -- filters -------------------------------------------------------------------------------------------


def _locale_of(context: Context) -> str:
    language = context.resolve_or_missing("language")
    if not isinstance(language, str):
        raise TemplateRuntimeError("no language in this render context (render through render.env)")
    return language


_NO_DATE = (
    "expected a date or datetime, got None (an undated item has no published_at: "
    "write {% if card.published_at %}...{% endif %})"
)


def _defined(value: Any) -> None:
    """An undefined value given to a filter fails as undefined (naming what is missing), not as a type."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()


def _local_date(context: Context, value: date | datetime) -> date:
    _defined(value)
    if not isinstance(value, datetime):
        if isinstance(value, date):
            return value
        if value is None:
            raise TypeError(_NO_DATE)
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
    _defined(value)
    return format_decimal(value, format, locale=_locale_of(context))
