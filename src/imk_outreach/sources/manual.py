"""The ``manual`` source: news items written by staff in YAML (one file, or a folder of ``*.yaml``).

A file holds a list of items::

    - url: https://example.org/news/drehstart
      published: 2026-11-20            # a date, a datetime or text such as "20.11.2026 14:30"
      tags: [film]
      image: https://example.org/img/drehstart.jpg   # or a path relative to this file: drehstart.jpg
      title: {de: Drehstart in Babelsberg, en: Shooting starts in Babelsberg}   # or plain text
      summary: {de: "...", en: "..."}   # Markdown; or plain text in the source's language

``url`` and ``title`` are required; other keys are errors. A language code is two lower-case letters.
Plain text for ``title``/``summary`` is in the source's ``language``. The primary text is the one in the
source's language, else the first language given for ``title``; the others become translations.

``published`` without an offset is local time in the configured zone (normalisation applies it); a bare
date means midnight local time. Without ``published`` the item is dated when it is first gathered.

Each invalid item is skipped with one warning per problem, naming file, line and key path
(``cluster-news.yaml:14: [2].title: required``; a key written twice in an item is one); the valid items
of the file are kept. A file with a YAML syntax error, or past the limits of :mod:`imk_outreach.yamlfile`
(over a megabyte, an alias bomb), is skipped with a warning; the source fails only when no file could be
read at all.
"""

from __future__ import annotations

import difflib
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from imk_outreach.errors import ConfigError, Location, SourceError
from imk_outreach.models import Document, ParseResult, RawEntry, RawText, SourceSpec
from imk_outreach.sources.dates import parse_date
from imk_outreach.sources.normalize import absolute_url
from imk_outreach.yamlfile import YamlDocument, format_key_path, load_yaml

log = logging.getLogger(__name__)

ITEM_KEYS = ("url", "published", "tags", "image", "title", "summary")
YAML_SUFFIXES = (".yaml", ".yml")
_LANGUAGE_RE = re.compile(r"^[a-z]{2}$")
_TEXT_HINT = "expected text, or language codes with text such as {de: ..., en: ...}"

KeyPath = tuple[str | int, ...]


class ManualSource:
    """Reads staff-written YAML items (see the module docstring for the shape)."""

    def parse(self, doc: Document, spec: SourceSpec) -> ParseResult:
        """The valid items of every YAML file in ``doc``; problems become warnings.

        :raises SourceError: no file could be read (every one has a syntax error or is not a list).
        """
        files = _yaml_files(doc, spec)
        if not files:
            log.warning("source %s: no *.yaml or *.yml files found", spec.name)
            return ParseResult(
                entries=(), warnings=("no *.yaml or *.yml files found",), base_url=doc.base_url
            )
        entries: list[RawEntry] = []
        warnings: list[str] = []
        readable = 0
        for name, data in files:
            file_entries, problems, ok = read_file(name, data, spec.language)
            entries.extend(file_entries)
            warnings.extend(problems)
            readable += ok
        if not readable:
            raise SourceError(spec.name, spec.url, "no file could be read: " + "; ".join(warnings))
        for warning in warnings:
            log.warning("source %s: %s", spec.name, warning)
        return ParseResult(entries=tuple(entries), warnings=tuple(warnings), base_url=doc.base_url)


def _yaml_files(doc: Document, spec: SourceSpec) -> list[tuple[str, bytes]]:
    """(name, bytes) of each YAML file: the folder's ``*.yaml``/``*.yml`` sorted by name, or the body."""
    if doc.files:
        return sorted((name, data) for name, data in doc.files if name.lower().endswith(YAML_SUFFIXES))
    return [(_file_name(doc, spec), doc.body)]


def _file_name(doc: Document, spec: SourceSpec) -> str:
    """The name to show in warnings for a single-file document: the last part of its URL or path."""
    for url in (doc.base_url, spec.url):
        name = PurePosixPath(unquote(urlsplit(url).path)).name
        if name:
            return name
    return f"{spec.name}.yaml"


def read_file(name: str, data: bytes, language: str) -> tuple[list[RawEntry], list[str], bool]:
    """The valid items of one YAML file.

    :param name: the file name shown in warnings.
    :param language: the source's language (for plain-text titles and the choice of primary text).
    :returns: the entries, the warnings (``file:line: key.path: message``), and whether the file could be
        read at all (False for a YAML syntax error or a top level that is not a list).
    """
    try:
        yaml_doc = load_yaml(Path(name), text=data)
    except ConfigError as exc:
        return [], [str(exc)], False
    if yaml_doc.data is None:
        return [], [], True
    if not isinstance(yaml_doc.data, list):
        error = _error(yaml_doc, (), "expected a list of items, each starting with '- url:'")
        return [], [str(error)], False
    entries: list[RawEntry] = []
    problems: list[str] = []
    for index, raw in enumerate(yaml_doc.data):
        reader = _ItemReader(yaml_doc, index, language)
        reader.errors += [_located(e) for e in yaml_doc.duplicate_errors((index,))]
        entry = reader.read(raw)
        problems.extend(str(error) for error in reader.errors)
        if entry is not None:
            entries.append(entry)
    return entries, problems, True


def _error(doc: YamlDocument, path: KeyPath, message: str) -> ConfigError:
    """A problem at ``path``, located as ``file:line`` (the line of the deepest key that exists)."""
    found = doc.locate(path)
    return ConfigError(Location(found.path, found.line), format_key_path(path), message)


def _located(error: ConfigError) -> ConfigError:
    """The error as ``file:line`` (without the column), like the other warnings of this source."""
    where = Location(error.location.path, error.location.line)
    return ConfigError(where, error.key_path, error.message, error.hint)


@dataclass
class _ItemReader:
    """Validates one item; collects every problem so staff can fix them in one go."""

    doc: YamlDocument
    index: int
    language: str
    errors: list[ConfigError] = field(default_factory=list)

    def fail(self, path: KeyPath, message: str) -> None:
        self.errors.append(_error(self.doc, (self.index, *path), message))

    def read(self, raw: Any) -> RawEntry | None:
        """The entry, or None when the item has any problem (listed in ``errors``)."""
        if not isinstance(raw, Mapping):
            self.fail((), "expected an item with keys such as url: and title:")
            return None
        for key in raw:
            if key not in ITEM_KEYS:
                self.fail((str(key),), _unknown_key_message(str(key)))
        url = self.url("url", raw.get("url"), required=True)
        titles = self.texts("title", raw.get("title"), required=True)
        summaries = self.texts("summary", raw.get("summary"), required=False)
        published = self.published(raw.get("published"))
        tags = self.tags(raw.get("tags"))
        image = self.image(raw.get("image"))
        if self.errors or url is None or not titles:
            return None
        return _entry(url, titles, summaries, published, tags, image, self.language)

    def url(self, key: str, value: Any, required: bool) -> str | None:
        if value is None:
            if required:
                self.fail((key,), "required")
            return None
        if not isinstance(value, str) or absolute_url(value) is None:
            self.fail((key,), f"not an http(s) URL: {value!r}")
            return None
        return value.strip()

    def image(self, value: Any) -> str | None:
        """An http(s) URL, or a path relative to this YAML file (an image file beside it)."""
        if value is None:
            return None
        if isinstance(value, str) and (absolute_url(value) is not None or _relative_path(value)):
            return value.strip()
        self.fail(("image",), f"not an http(s) URL or a path relative to this file: {value!r}")
        return None

    def texts(self, key: str, value: Any, required: bool) -> dict[str, str]:
        """``{language: text}``; plain text is in the source's language. Empty texts are left out."""
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail((key,), "required")
            return {}
        if isinstance(value, str):
            return {self.language: value.strip()}
        if not isinstance(value, Mapping) or not value:
            self.fail((key,), _TEXT_HINT)
            return {}
        result: dict[str, str] = {}
        before = len(self.errors)
        for code, text in value.items():
            if not isinstance(code, str) or not _LANGUAGE_RE.match(code):
                self.fail((key, str(code)), "language code must be two lower-case letters, e.g. de or en")
            elif text is not None and not isinstance(text, str):
                self.fail((key, code), "expected text (put it in quotes)")
            elif text and text.strip():
                result[code] = text.strip()
        if required and not result and len(self.errors) == before:
            self.fail((key,), "required")
        return result

    def published(self, value: Any) -> datetime | str | None:
        """An aware datetime as is; a date or naive datetime as ISO text (the zone is applied later)."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str) and parse_date(value, UTC) is not None:
            return value.strip()
        self.fail(("published",), f"not a date: {value!r} (write e.g. 2026-11-20 or 2026-11-20 14:30)")
        return None

    def tags(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(("tags",), "expected a list, e.g. [film, ki]")
            return ()
        tags: list[str] = []
        for position, tag in enumerate(value):
            if isinstance(tag, str) and tag.strip():
                tags.append(tag.strip())
            else:
                self.fail(("tags", position), f"expected a tag name, got {tag!r}")
        return tuple(tags)


def _unknown_key_message(key: str) -> str:
    """``unknown key`` with the likely intended key (``titel`` -> ``title``) or the allowed ones."""
    close = difflib.get_close_matches(key.lower(), ITEM_KEYS, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key (allowed: {', '.join(ITEM_KEYS)})"


def _entry(
    url: str,
    titles: Mapping[str, str],
    summaries: Mapping[str, str],
    published: datetime | str | None,
    tags: tuple[str, ...],
    image: str | None,
    language: str,
) -> RawEntry:
    """The RawEntry: the text in ``language`` (else the first title's language) first, others translated.

    Titles are escaped, since normalisation reads a title as HTML and staff write plain text.
    """
    primary = language if language in titles else next(iter(titles))
    others = [code for code in (*titles, *summaries) if code != primary]
    translations = {
        code: RawText(title=_escape(titles.get(code)), summary=summaries.get(code))
        for code in dict.fromkeys(others)
    }
    return RawEntry(
        link=url,
        title=_escape(titles[primary]),
        summary=summaries.get(primary),
        published=published,
        image=image,
        tags=tags,
        language=primary,
        translations=translations,
        summary_format="markdown",
    )


def _relative_path(value: str) -> bool:
    """``bild.jpg``, ``bilder/bild.jpg``: no scheme, not absolute."""
    path = value.strip()
    return bool(path) and ":" not in path and not path.startswith(("/", "\\"))


def _escape(text: str | None) -> str | None:
    return html.escape(text, quote=False) if text is not None else None
