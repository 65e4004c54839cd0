"""config.yaml (plus ``IMK_*`` environment overrides) loaded once into frozen, strict Settings.

Every key but ``sources`` has a default. Paths are relative to config.yaml. Secrets are ``${ENV_NAME}``
references, expanded here from the environment. A reference whose variable is not set (or set but
empty) is an error naming the key, except in the keys that hold credentials (:data:`SECRET_KEYS`):
there it stays a :class:`SecretRef` and is resolved by :func:`reveal` when a command needs it, so
``preview`` or ``check`` work without the SMTP password and ``send`` fails naming the variable. A
credential that breaks its rule (``secret_key`` shorter than 32 characters) waits the same way, so only
the commands that use it fail; ``check`` reports both (see :mod:`imk_outreach.config_lint`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit
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

from imk_outreach.config_channels import ChannelSettings, plain_credentials
from imk_outreach.durations import to_seconds, to_timedelta

# The secret names live in envrefs; commands and tests import them from here (hence ``X as X``).
from imk_outreach.envrefs import ENV_REF, expand, has_rule
from imk_outreach.envrefs import GENERATE_SECRET as GENERATE_SECRET
from imk_outreach.envrefs import MIN_SECRET_KEY as MIN_SECRET_KEY
from imk_outreach.envrefs import MissingVariableError as MissingVariableError
from imk_outreach.envrefs import Secret as Secret
from imk_outreach.envrefs import SecretRef as SecretRef
from imk_outreach.envrefs import SecretValueError as SecretValueError
from imk_outreach.envrefs import has_reference as has_reference
from imk_outreach.envrefs import not_set as not_set
from imk_outreach.envrefs import reveal as reveal
from imk_outreach.errors import ConfigError, ConfigErrors, Location
from imk_outreach.yamlfile import YamlDocument, format_key_path, load_yaml, validation_errors

DEFAULT_CONFIG = Path("config.yaml")
ENV_PREFIX = "IMK_"
_LANG = re.compile(r"^[a-z]{2}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# The keys typed ``Secret``: an unset variable in them waits until a command needs the value.
SECRET_KEYS = ("database_url", "smtp.username", "smtp.password", "secret_key")


def _unresolved(value: object) -> Iterator[SecretRef]:
    if isinstance(value, SecretRef):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _unresolved(getattr(value, name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _unresolved(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _unresolved(item)


# -- value types -----------------------------------------------------------------------------------------


def _duration(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return to_timedelta(value)
    return value


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        return to_seconds(value)
    return value


def _public_url(value: str) -> str:
    """An absolute http(s) URL with a host and a plain path, without a trailing slash."""
    text = value.strip()
    plain = "use an absolute http(s) URL such as https://news.example.org or https://example.org/news"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid URL; {plain}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: {plain}")
    if "@" in parts.netloc:
        raise ValueError(f"{value!r}: no user name or password in public_url")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{value!r}: no query (?...) or fragment (#...) in public_url")
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in text):
        raise ValueError(f"{value!r}: no spaces, backslashes or control characters in public_url")
    segments = unquote(parts.path).split("/")[1:]
    if any(segment in (".", "..") for segment in segments) or "" in segments[:-1]:
        raise ValueError(f"{value!r}: no '.', '..' or empty parts in the path of public_url")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def _language(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError(f"{value!r} is not a two-letter language code such as de or en")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# Seconds as a float, written as a number (20, 2.5) or a duration (20s, 2m).
Seconds = Annotated[float, BeforeValidator(_seconds)]
Language = Annotated[str, AfterValidator(_language)]
PublicUrl = Annotated[str, AfterValidator(_public_url)]


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
    username: Secret | None = None
    password: Secret | None = None
    timeout: Seconds = Field(30.0, gt=0)
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
    timeout: Seconds = Field(20.0, gt=0)
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


class SignupSettings(Strict):
    """Limits on web sign-ups (``POST /subscribe``), each ``COUNT/DURATION`` (``10/1h``, ``3/1d``; ``5/h``
    means ``5/1h``) or ``off``, counted in the database so every web process shares them; and the
    least time a sign-up's answer takes."""

    per_client: tuple[int, timedelta] | None = (10, timedelta(hours=1))
    overall: tuple[int, timedelta] | None = (200, timedelta(hours=1))
    per_mailbox: tuple[int, timedelta] | None = (3, timedelta(days=1))
    # Every sign-up that is not turned away busy is answered after at least this long, so the answer
    # time tells nobody whether the address was known (the work differs by some milliseconds).
    answer_time: Seconds = Field(0.25, ge=0, le=10)

    @field_validator("per_client", "overall", "per_mailbox", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if value is None or value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return None  # YAML reads a bare off as false
        if isinstance(value, tuple):
            return value
        if not isinstance(value, str):
            raise ValueError(f"{value!r}: write COUNT/DURATION such as 10/1h or 3/1d, or off")
        count, slash, per = (part.strip() for part in value.partition("/"))
        if not (slash and count.isdigit() and int(count) > 0 and per):
            raise ValueError(f"{value!r}: write COUNT/DURATION such as 10/1h or 3/1d, or off")
        window = to_timedelta(per if per[0].isdigit() else f"1{per}", seconds_if_plain=False)
        if window <= timedelta(0):
            raise ValueError(f"{value!r}: the duration must be longer than zero")
        return int(count), window


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
    database_url: Secret = "sqlite:///var/imk-outreach.db"
    public_url: PublicUrl = "http://127.0.0.1:8000"
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
    secret_key: Secret | None = None
    consent_version: str = "2026-11"
    unsubscribe_mailto: str | None = None
    campaigns_dir: Path = Path("campaigns")
    notify: tuple[str, ...] = ()
    scheduler: SchedulerSettings = SchedulerSettings()
    templates_dir: Path = Path("templates")
    # Item images fetched at gather time, served by the web app under public_url/media/ (no hot-linking).
    media_dir: Path = Path("var/media")
    signup: SignupSettings = SignupSettings()
    channels: tuple[ChannelSettings, ...] = ()  # social accounts (config_channels.py)

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

    @model_validator(mode="after")
    def _channels(self) -> Settings:
        seen: set[str] = set()
        for channel in self.channels:
            if channel.name in seen:
                raise ValueError(f"channel name {channel.name!r} is used twice; names must be unique")
            seen.add(channel.name)
            if channel.language != "both" and channel.language not in self.languages:
                choices = ", ".join([*self.languages, "both"])
                raise ValueError(
                    f"channel {channel.name}: language {channel.language!r} is not one of {choices}"
                )
        return self

    def channel(self, name: str) -> ChannelSettings:
        """:raises KeyError: no channel of that name."""
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

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

    def unresolved(self) -> list[SecretRef]:
        """The ``Secret`` values whose variables are not set now (``check`` warns about them)."""
        return [ref for ref in _unresolved(self) if ref.missing()]

    def deferred(self) -> list[SecretRef]:
        """Every ``Secret`` value kept as a SecretRef: unset variables and values breaking their rule."""
        return list(_unresolved(self))


def _expand_env(data: Any, path: tuple[str | int, ...], doc: YamlDocument, refs: dict[str, SecretRef]) -> Any:
    """Every ``${ENV}`` of ``data`` expanded; a value naming an unset variable becomes a SecretRef
    (recorded in ``refs`` by key path), which only ``Secret`` keys accept."""
    if isinstance(data, dict):
        return {k: _expand_env(v, (*path, k), doc, refs) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, (*path, i), doc, refs) for i, v in enumerate(data)]
    if isinstance(data, str) and (ENV_REF.search(data) or has_rule(format_key_path(path))):
        ref = SecretRef(data, format_key_path(path), doc.locate(path))
        if not ref.missing() and ref.fault() is None:
            return expand(data)
        refs[ref.key] = ref
        return ref
    return data


def _env_overrides(data: dict[str, Any]) -> dict[str, Any]:
    """``IMK_DATABASE_URL`` etc. override top-level scalar keys (handy for operators and tests)."""
    for key in ("timezone", "database_url", "public_url"):
        value = os.environ.get(ENV_PREFIX + key.upper())
        if value:
            data[key] = value
    return data


def _errors_from(exc: ValidationError, doc: YamlDocument, refs: dict[str, SecretRef]) -> ConfigErrors:
    """The validation errors; a key that refused a SecretRef (not a ``Secret`` key) names the variable."""
    errors = []
    named: set[str] = set()
    for error in validation_errors(exc, doc, Settings, hidden=("config_path", "base_dir")):
        ref = _ref_at(refs, error)
        if ref is None:
            errors.append(error)
        elif ref.key not in named:
            named.add(ref.key)
            hint = (
                f"export it before running; only {', '.join(SECRET_KEYS)} may wait until a command needs them"
            )
            errors.append(ConfigError(ref.location, ref.key, not_set(ref.missing()), hint))
    return ConfigErrors(errors)


def _ref_at(refs: dict[str, SecretRef], error: ConfigError) -> SecretRef | None:
    """The SecretRef an error is about (its key refused it), None for other errors."""
    if error.message.startswith("unknown key"):
        return None
    for key, ref in refs.items():
        if error.key_path == key or error.key_path.startswith((key + ".", key + "[")):
            return ref
    return None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read config.yaml once into Settings.

    :param path: the config file; ``./config.yaml`` when None.
    :raises ConfigError: the file cannot be read or parsed.
    :raises ConfigErrors: one or more keys are wrong or written twice; each names the file, key path and
        line.
    """
    config_path = Path(path) if path is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        hint = "pass --config PATH or run from the folder that holds config.yaml"
        raise ConfigError(Location(config_path), "", "config file not found", hint)
    doc = load_yaml(config_path)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(doc.locate([]), "", "the config file must be a mapping of keys (key: value)")
    refs: dict[str, SecretRef] = {}
    data = _env_overrides(_expand_env(data, (), doc, refs))
    for reserved in ("config_path", "base_dir"):
        data.pop(reserved, None)
    absolute = config_path.resolve()
    errors = doc.duplicate_errors()  # a key written twice is an error even where the last value is fine
    for key_path, message in plain_credentials(doc.data):
        errors.append(ConfigError(doc.locate(key_path), format_key_path(key_path), message))
    settings: Settings | None = None
    try:
        settings = Settings(config_path=absolute, base_dir=absolute.parent, **data)
    except ValidationError as exc:
        errors += _errors_from(exc, doc, refs).errors
    if errors or settings is None:
        raise ConfigErrors(sorted(errors, key=lambda e: (e.location.line or 0, e.location.col or 0)))
    return settings


def database_url(settings: Settings) -> str:
    """The database URL with a relative SQLite path made relative to config.yaml's folder.

    :raises MissingVariableError: it names an environment variable that is not set.
    """
    url = reveal(settings.database_url)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(settings.resolve_path(url[len(prefix) :]))
    return url
