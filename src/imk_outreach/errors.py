"""The ImkError tree. Every error builds its message from its fields, so the CLI can print one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """Where in a file a problem sits; line and column are 1-based."""

    path: str | Path
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.line is not None:
            text += f":{self.line}"
            if self.col is not None:
                text += f":{self.col}"
        return text


class ImkError(Exception):
    """Base of every error the product raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(ImkError):
    """A problem in config.yaml (or another staff-written YAML file) at a key path."""

    def __init__(self, location: Location, key_path: str, message: str, hint: str = "") -> None:
        self.location = location
        self.key_path = key_path
        self.message = message
        self.hint = hint
        text = f"{location}: {key_path}: {message}" if key_path else f"{location}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class ConfigErrors(ImkError):
    """Several configuration problems found at once; the message lists one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class SourceError(ImkError):
    """A source could not be fetched or read. Fails that source alone."""

    def __init__(self, source: str, url: str, reason: str) -> None:
        self.source = source
        self.url = url
        self.reason = reason
        super().__init__(f"source {source!r} ({url}): {reason}")


class UnsafeDocumentError(ImkError):
    """A document tried something we never process (entity declarations, external entities)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DatabaseError(ImkError):
    """The database cannot be opened or migrated."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url}: {reason}")


class TemplateError(ImkError):
    """A template (Jinja or MJML) cannot be rendered; names the template and, where known, the line."""

    def __init__(self, template: str, message: str, line: int | None = None) -> None:
        self.template = template
        self.line = line
        self.message = message
        where = f"{template}:{line}" if line is not None else template
        super().__init__(f"{where}: {message}")
