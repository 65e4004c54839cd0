"""Jinja problems as :class:`~imk_outreach.errors.TemplateError`: the template (or partial) and line, and
for a misspelt filter, test, variable or attribute the nearest known name and the names available.

``'edtion' is undefined; did you mean 'edition'? (variables: brand, brand_name, campaign, edition, ...)``
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2.filters
import jinja2.tests
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    nodes,
)
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.utils import missing

from imk_outreach.errors import TemplateError

# Errors a template expression can raise besides Jinja's own (a filter given the wrong type, ...).
_EXPRESSION_ERRORS = (TypeError, ValueError, LookupError, AttributeError, ArithmeticError)
# Context entries that are machinery rather than something to show: the i18n callables.
_HIDDEN_VARIABLES = frozenset(("gettext", "ngettext", "pgettext", "npgettext", "_"))
_SHOWN_NAMES = 40

_UNKNOWN_NAME = (
    ("filter", r"^No filter named '(?P<name>[^']+)'(?: found)?\.$"),
    ("test", r"^No test named '(?P<name>[^']+)'(?: found)?\.$"),
    ("variable", r"^'(?P<name>[^']+)' is undefined$"),
)


class SuggestingUndefined(StrictUndefined):
    """``StrictUndefined`` whose message for a missing attribute or key names the nearest one there is."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        message = str(super()._undefined_message)
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint or obj is missing or not isinstance(name, str):
            return message
        return message + suggestion(name, attribute_names(obj), "attributes")


def attribute_names(obj: Any) -> list[str]:
    """What ``obj.x`` can name in a template: a mapping's keys, a dataclass's fields and properties,
    else the public attributes."""
    if isinstance(obj, Mapping):
        return sorted(str(key) for key in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        properties = [n for n in dir(type(obj)) if isinstance(getattr(type(obj), n, None), property)]
        return sorted({f.name for f in fields(obj)} | {n for n in properties if not n.startswith("_")})
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def suggestion(name: str, known: Collection[str], what: str, shown: Iterable[str] | None = None) -> str:
    """``; did you mean 'month'? (filters: date, month, ...)``; ``shown`` (default: ``known``) is listed."""
    return did_you_mean(name, known) + listing(what, sorted(known) if shown is None else shown)


def did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def listing(what: str, names: Iterable[str]) -> str:
    """`` (what: a, b, c)``, at most :data:`_SHOWN_NAMES` names; empty for no names."""
    listed = list(names)
    if not listed:
        return ""
    more = ", ..." if len(listed) > _SHOWN_NAMES else ""
    return f" ({what}: {', '.join(listed[:_SHOWN_NAMES])}{more})"


def template_dirs_of(env: Environment) -> list[Path]:
    """The folders the Environment searches, in order (staff folders first, shipped defaults last)."""
    loader = env.loader
    sub_loaders = loader.loaders if isinstance(loader, ChoiceLoader) else [loader]
    return [Path(p) for sub in sub_loaders if isinstance(sub, FileSystemLoader) for p in sub.searchpath]


class template_errors:
    """Context manager turning Jinja (and template expression) errors into TemplateError.

    :param name: what the template (or template string) is called in messages.
    :param context: the render context, whose names a misspelt variable is compared with.
    :param source: the source of a template string (for the names it sets itself).
    """

    def __init__(
        self, env: Environment, name: str, context: Mapping[str, Any], source: str | None = None
    ) -> None:
        self.env = env
        self.name = name
        self.context = context
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, TemplateError):
            return
        if isinstance(exc, TemplateNotFound):
            missing_name = exc.name if isinstance(exc.name, str) else self.name
            where, line = _template_frame(self.env, tb, "")
            message = _not_found_message(self.env)
            if where and line is not None:  # an {% include %} or {% extends %} names a missing template
                message += f"; used at {where}:{line}"
            raise TemplateError(missing_name, message) from exc
        if isinstance(exc, TemplateSyntaxError):
            where = exc.name or self.name
            message = self._explained(exc.message or str(exc), where)
            raise TemplateError(where, message, exc.lineno) from exc
        if isinstance(exc, (JinjaTemplateError, *_EXPRESSION_ERRORS)):
            where, line = _template_frame(self.env, tb, self.name)
            text = str(exc) if isinstance(exc, JinjaTemplateError) else f"{type(exc).__name__}: {exc}"
            raise TemplateError(where, self._explained(text, where), line) from exc

    def _explained(self, message: str, where: str) -> str:
        """A message about an unknown filter, test or variable, with the nearest name and the choices."""
        for what, pattern in _UNKNOWN_NAME:
            match = re.match(pattern, message)
            if match is None:
                continue
            name = match.group("name")
            if what == "variable":
                return f"{name!r} is undefined" + self._variable_suggestion(name, where)
            return f"unknown {what} {name!r}" + _filter_or_test_suggestion(self.env, what, name)
        return message

    def _variable_suggestion(self, name: str, where: str) -> str:
        variables = sorted(
            str(key) for key in self.context if key not in _HIDDEN_VARIABLES and not str(key).startswith("_")
        )
        candidates = {*variables, *self.env.globals, *_assigned_names(self.env, where, self.source)}
        return suggestion(name, candidates - _HIDDEN_VARIABLES, "variables", variables)


def _filter_or_test_suggestion(env: Environment, what: str, name: str) -> str:
    """The nearest filter (or test), listing the product's own before Jinja's built-in ones."""
    available = env.filters if what == "filter" else env.tests
    builtin = jinja2.filters.FILTERS if what == "filter" else jinja2.tests.TESTS
    own = sorted(n for n in available if n not in builtin)
    jinja_own = sorted(n for n in available if n in builtin)
    listed = ", ".join(own) + ("; " if own else "") + "Jinja's built-in: " + ", ".join(jinja_own)
    return f"{did_you_mean(name, available)} ({what}s: {listed})"


def _assigned_names(env: Environment, where: str, source: str | None) -> set[str]:
    """Names a template sets itself (``{% for x in ... %}``, ``{% set x %}``, macro arguments)."""
    if source is None:
        try:
            source = env.loader.get_source(env, where)[0] if env.loader is not None else None
        except TemplateNotFound:
            return set()
    if source is None:
        return set()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError:
        return set()
    return {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}


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
