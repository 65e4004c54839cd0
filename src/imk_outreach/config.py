"""config.yaml (plus ``IMK_*`` environment overrides) loaded once into frozen, strict Settings.

Every key but ``sources`` has a default. Secrets are ``${ENV_NAME}`` references, expanded here from the
environment; a missing variable is an error naming the key. Paths are relative to config.yaml.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imk_outreach.durations import parse_duration
from imk_outreach.errors import ConfigError, ConfigErrors, Location
from imk_outreach.yamlfile import YamlDocument, format_key_path, load_yaml, validation_errors

DEFAULT_CONFIG = Path("config.yaml")
ENV_PREFIX = "IMK_"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LANG = re.compile(r"^[a-z]{2}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _language(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError(f"{value!r} is not a two-letter language code such as de or en")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Language = Annotated[str, AfterValidator(_language)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(Strict):
    name: str = "Cluster IMK"
    email: str = "newsletter@example.org"
    reply_to: str | None = None


class SocialLink(Strict):
    name: str
    url: str

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r}: use an http(s) URL")
        return value


class RetrySettings(Strict):
    """Exponential back-off for transient delivery failures (SMTP 4xx, connection lost)."""

    base_delay: Duration = timedelta(minutes=1)
    max_delay: Duration = timedelta(hours=6)
    max_attempts: int = Field(8, ge=1, le=100)


class DkimSettings(Strict):
    """DKIM signing; the private key file is read at start (never commit it)."""

    key_file: Path
    selector: str
    domain: str | None = None


class SmtpSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(1025, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = Field(30.0, gt=0)
    connections: int = Field(4, ge=1, le=64)
    rate_per_second: float = Field(0, ge=0)
    batch_size: int = Field(200, ge=1, le=10_000)
    # A claim's lease; a live worker renews it every third of it, so a dead worker's rows come back
    # after at most this long (at once when a process on the same host sees that it is gone).
    lease: Duration = timedelta(seconds=30)
    # On a stop (SIGTERM): how long the messages in flight may still take before the rest is released.
    stop_grace: Duration = timedelta(seconds=5)
    retry: RetrySettings = RetrySettings()
    dkim: DkimSettings | None = None


class GatherSettings(Strict):
    """HTTP behaviour of gathering."""

    concurrency: int = Field(8, ge=1, le=64)
    timeout: float = Field(20.0, gt=0)
    max_bytes: int = Field(5_000_000, ge=1024)
    max_redirects: int = Field(5, ge=0, le=20)
    user_agent: str = "imk-outreach/0.1 (news gathering for a regional technology and media cluster)"


class SchedulerSettings(Strict):
    """How ``run`` paces itself (the jobs' times come from sources and campaigns)."""

    tick: Duration = timedelta(seconds=30)
    reload: Duration = timedelta(seconds=5)
    heartbeat: Duration = timedelta(seconds=5)
    standby_poll: Duration = timedelta(seconds=5)
    stop_timeout: Duration = timedelta(seconds=8)


class SourceSettings(Strict):
    """One configured news source."""

    name: str
    type: Literal["rss", "html", "jsonfeed", "manual"]
    url: str
    language: Language | None = None
    tags: tuple[str, ...] = ()
    every: Duration = timedelta(hours=1)
    selectors: dict[str, str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits, '-', '_' or '.'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if "://" in value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: only http(s) URLs or paths relative to config.yaml")
        return value

    @model_validator(mode="after")
    def _selectors(self) -> SourceSettings:
        if self.type == "html" and not (self.selectors and self.selectors.get("item")):
            raise ValueError("an html source needs selectors with at least 'item' (e.g. item: article.news)")
        if self.type != "html" and self.selectors is not None:
            raise ValueError(f"selectors are only for html sources, not {self.type}")
        allowed = {"item", "title", "link", "summary", "date", "image"}
        unknown = set(self.selectors or {}) - allowed
        if unknown:
            raise ValueError(
                f"unknown selector {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(allowed))})"
            )
        return self


class Settings(Strict):
    """The whole configuration. ``config_path`` and ``base_dir`` are set by :func:`load_settings`."""

    config_path: Path = Path("config.yaml")
    base_dir: Path = Path(".")
    timezone: str = "Europe/Berlin"
    languages: tuple[Language, ...] = ("de", "en")
    database_url: str = "sqlite:///var/imk-outreach.db"
    public_url: str = "http://127.0.0.1:8000"
    name: dict[Language, str] = Field(
        default_factory=lambda: {
            "de": "Cluster IKT, Medien und Kreativwirtschaft",
            "en": "Cluster ICT, Media and Creative Industries",
        }
    )
    sender: Sender = Sender()
    social_links: tuple[SocialLink, ...] = ()
    imprint: dict[Language, str] = Field(
        default_factory=lambda: {
            "de": "Cluster IKT, Medien und Kreativwirtschaft Berlin-Brandenburg",
            "en": "Cluster ICT, Media and Creative Industries Berlin-Brandenburg",
        }
    )
    lists: dict[str, dict[Language, str]] = Field(
        default_factory=lambda: {"newsletter": {"de": "Newsletter", "en": "Newsletter"}}
    )
    sources: tuple[SourceSettings, ...]
    tagging: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    gather: GatherSettings = GatherSettings()
    smtp: SmtpSettings = SmtpSettings()
    secret_key: str | None = None
    consent_version: str = "2026-11"
    unsubscribe_mailto: str | None = None
    campaigns_dir: Path = Path("campaigns")
    notify: tuple[str, ...] = ()
    scheduler: SchedulerSettings = SchedulerSettings()
    templates_dir: Path = Path("templates")
    # Item images fetched at gather time, served by the web app under public_url/media/ (no hot-linking).
    media_dir: Path = Path("var/media")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one language; the first is the default")
        return value

    @field_validator("notify")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            local, at, domain = address.strip().rpartition("@")
            if not (at and local and "." in domain) or any(c.isspace() for c in address.strip()):
                raise ValueError(f"{address!r} is not an email address such as redaktion@example.org")
        return tuple(address.strip() for address in value)

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: tuple[SourceSettings, ...]) -> tuple[SourceSettings, ...]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice; names must be unique")
            seen.add(source.name)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def source(self, name: str) -> SourceSettings:
        """The source called ``name``.

        :raises KeyError: no such source.
        """
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        return (self.base_dir / Path(path)).resolve()

    def source_location(self, source: SourceSettings) -> str:
        """Absolute URL or absolute path of a source."""
        if source.url.startswith(("http://", "https://")):
            return source.url
        return str(self.resolve_path(source.url))

    def source_language(self, source: SourceSettings) -> str:
        return source.language or self.default_language


def _expand_env(
    data: Any, path: tuple[str | int, ...], errors: list[tuple[tuple[str | int, ...], str]]
) -> Any:
    if isinstance(data, dict):
        return {k: _expand_env(v, (*path, k), errors) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, (*path, i), errors) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                errors.append((path, f"environment variable {name} is not set"))
                return ""
            return os.environ[name]

        return _ENV_REF.sub(replace, data)
    return data


def _env_overrides(data: dict[str, Any]) -> dict[str, Any]:
    """``IMK_DATABASE_URL`` etc. override top-level scalar keys (handy for operators and tests)."""
    for key in ("timezone", "database_url", "public_url"):
        value = os.environ.get(ENV_PREFIX + key.upper())
        if value:
            data[key] = value
    return data


def _errors_from(exc: ValidationError, doc: YamlDocument) -> ConfigErrors:
    return ConfigErrors(validation_errors(exc, doc, Settings, hidden=("config_path", "base_dir")))


def load_settings(path: str | Path | None = None) -> Settings:
    """Read config.yaml once into Settings.

    :param path: the config file; ``./config.yaml`` when None.
    :raises ConfigError: the file cannot be read or parsed.
    :raises ConfigErrors: one or more keys are wrong; each names the file, key path and line.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        hint = "pass --config PATH or run from the folder that holds config.yaml"
        raise ConfigError(Location(config_path), "", "config file not found", hint)
    doc = load_yaml(config_path)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(doc.locate([]), "", "the config file must be a mapping of keys (key: value)")
    env_errors: list[tuple[tuple[str | int, ...], str]] = []
    data = _env_overrides(_expand_env(data, (), env_errors))
    if env_errors:
        raise ConfigErrors(
            [
                ConfigError(doc.locate(loc), format_key_path(loc), msg, "export it before running")
                for loc, msg in env_errors
            ]
        )
    for reserved in ("config_path", "base_dir"):
        data.pop(reserved, None)
    absolute = config_path.resolve()
    try:
        return Settings(config_path=absolute, base_dir=absolute.parent, **data)
    except ValidationError as exc:
        raise _errors_from(exc, doc) from None


def database_url(settings: Settings) -> str:
    """The database URL with a relative SQLite path made relative to config.yaml's folder."""
    url = settings.database_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(settings.resolve_path(url[len(prefix) :]))
    return url
