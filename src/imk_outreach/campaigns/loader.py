"""Campaign files (``campaigns/*.yaml``) -> validated :class:`Campaign` models.

A file is checked in two passes so that one run reports every problem of the file:

1. pydantic checks shapes, types, unknown keys and each value on its own (known tags, sources, list,
   template; cron, durations, URLs), reading the configured names from a :class:`CampaignContext`;
2. plain checks across keys that pydantic cannot place on a key path: per-language texts (every campaign
   language has a subject and a section heading, each text is valid Jinja), unique section ids, a
   newsletter has sections, YAML keys written twice.

This stage knows nothing of config.yaml or the database: the service builds the context.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from imk_outreach.campaigns.cron_syntax import check_cron
from imk_outreach.durations import to_timedelta
from imk_outreach.errors import ConfigError, ConfigErrors
from imk_outreach.models import Campaign, Section, Selection
from imk_outreach.yamlfile import YamlDocument, format_key_path, load_yaml, validation_errors

KeyPath = tuple[str | int, ...]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHOWN_CHOICES = 12
TEXT_KEYS = ("subject", "intro", "preheader")
SOCIAL_SECTION_ID = "items"


@dataclass(frozen=True)
class CampaignContext:
    """What a campaign file may refer to, from config.yaml, the templates and the stored items.

    ``canonicalize`` turns a link into the canonical URL items are stored under (None: not an http(s)
    URL); ``template_exists`` answers for a template name as a campaign writes it.
    """

    languages: tuple[str, ...]
    lists: frozenset[str]
    sources: frozenset[str]
    tags: frozenset[str]
    template_exists: Callable[[str], bool]
    canonicalize: Callable[[str], str | None]
    channels: frozenset[str] = frozenset()
    default_template: str = "newsletter/default.mjml.j2"


# -- single values ----------------------------------------------------------------------------------


def _choices(value: str, known: Collection[str], what: str) -> str:
    """``unknown tag 'flim'; did you mean 'film'? (known: film, games, ...)``."""
    message = f"unknown {what} {value!r}"
    close = difflib.get_close_matches(value, sorted(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    shown = sorted(known)[:_SHOWN_CHOICES]
    more = ", ..." if len(known) > _SHOWN_CHOICES else ""
    return message + (f" (known: {', '.join(shown)}{more})" if known else " (none are configured)")


# -- pydantic validators that read the context --------------------------------------------------------


def _ctx(info: ValidationInfo) -> CampaignContext:
    if not isinstance(info.context, CampaignContext):
        raise TypeError("campaign files are validated with a CampaignContext")
    return info.context


def _known(field: str, label: str) -> Callable[[str, ValidationInfo], str]:
    """A validator accepting only names in ``CampaignContext.<field>`` (tags, sources, lists, ...)."""

    def check(value: str, info: ValidationInfo) -> str:
        known = getattr(_ctx(info), field)
        if value not in known:
            raise ValueError(_choices(value, known, label))
        return value

    return check


_known_tag = _known("tags", "tag")
_known_source = _known("sources", "source")
_known_list = _known("lists", "list")
_known_language = _known("languages", "language")
_known_channel = _known("channels", "channel")


def _existing_template(value: str, info: ValidationInfo) -> str:
    if not _ctx(info).template_exists(value):
        raise ValueError(f"template {value!r} not found in the templates folder or the shipped templates")
    return value


def _canonical_url(value: str, info: ValidationInfo) -> str:
    canonical = _ctx(info).canonicalize(value) if value.startswith(("http://", "https://")) else None
    if canonical is None:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return canonical


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r}: use lower-case letters, digits, '-', '_' or '.'")
    return value


def _duration(value: Any) -> timedelta:
    """A campaign duration needs its unit (``since: 7`` could mean days or hours)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit; write e.g. {value}d, {value}h or {value}m")
    delta = to_timedelta(value, seconds_if_plain=False)
    if delta <= timedelta(0):
        raise ValueError(f"{value!r}: the duration must be longer than zero")
    return delta


def _texts(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("give one text per language, e.g. {de: ..., en: ...}")
    return value


def _moment(value: Any) -> str:
    """``at:`` as YAML gives it (a datetime, or text such as 2026-12-01T09:00) -> ISO 8601 text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date and time such as 2026-12-01T09:00") from None
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    if isinstance(value, date):
        raise ValueError(f"{value.isoformat()} has no time of day; write e.g. {value.isoformat()}T09:00")
    raise ValueError(f"expected a date and time such as 2026-12-01T09:00, got {value!r}")


def _some_unique(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("list at least one")
    for position, value in enumerate(values):
        if value in values[:position]:
            raise ValueError(f"{value!r} is listed twice")
    return values


Tag = Annotated[str, AfterValidator(_known_tag)]
SourceName = Annotated[str, AfterValidator(_known_source)]
LanguageCode = Annotated[str, AfterValidator(_known_language)]
ChannelName = Annotated[str, AfterValidator(_known_channel)]
Url = Annotated[str, AfterValidator(_canonical_url)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
Texts = Annotated[dict[str, str], BeforeValidator(_texts)]


# -- the file's shape -----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectFile(_Strict):
    """``select:`` of a section (or of a social campaign)."""

    tags: tuple[Tag, ...] = ()
    sources: tuple[SourceName, ...] = ()
    since: Duration | None = None
    max: Annotated[StrictInt, Field(ge=1)] | None = None
    pin: tuple[Url, ...] = ()
    exclude: tuple[Url, ...] = ()

    @model_validator(mode="after")
    def _pinned_and_excluded(self) -> SelectFile:
        both = [url for url in self.pin if url in self.exclude]
        if both:
            raise ValueError(f"{both[0]} is both pinned and excluded; keep one")
        return self

    def selection(self) -> Selection:
        return Selection(self.tags, self.sources, self.since, self.max, self.pin, self.exclude)


class SectionFile(_Strict):
    id: Annotated[str, AfterValidator(_name)]
    heading: Texts = {}
    select: SelectFile = SelectFile()


class ScheduleFile(_Strict):
    """``{cron: "0 9 1 * *"}`` or ``{at: 2026-12-01T09:00}`` (a time without offset is config.yaml's
    ``timezone``; the scheduler applies it)."""

    cron: Annotated[str, AfterValidator(check_cron)] | None = None
    at: Annotated[str, BeforeValidator(_moment)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleFile:
        if (self.cron is None) == (self.at is None):
            raise ValueError(
                'give either cron (e.g. {cron: "0 9 1 * *"}) or at (e.g. {at: 2026-12-01T09:00})'
            )
        return self

    def as_mapping(self) -> dict[str, str]:
        return {"cron": self.cron} if self.cron is not None else {"at": self.at or ""}


class _CommonFile(_Strict):
    name: Annotated[str, AfterValidator(_name)] | None = None
    kind: Literal["newsletter", "social"] = "newsletter"
    languages: Annotated[tuple[LanguageCode, ...], AfterValidator(_some_unique)] | None = None
    schedule: ScheduleFile | None = None
    late_policy: Literal["send", "hold"] = "hold"
    grace: Duration = timedelta(hours=6)
    approval: Literal["required", "auto"] = "required"
    min_items: Annotated[StrictInt, Field(ge=0)] = 1
    template: Annotated[str, AfterValidator(_existing_template)] | None = None


class NewsletterFile(_CommonFile):
    list: Annotated[str, AfterValidator(_known_list)] | None = None
    subject: Texts = {}
    intro: Texts = {}
    preheader: Texts = {}
    sections: tuple[SectionFile, ...] = ()


_PLATFORMS = ("x", "mastodon", "bluesky", "linkedin")


def _social_template(value: Any, info: ValidationInfo) -> str | dict[str, str]:
    """One template for every platform, or a mapping platform -> template (one error, naming the key)."""
    if isinstance(value, str):
        return _existing_template(value, info)
    if not isinstance(value, dict):
        raise ValueError("give a template name, or one per platform: {x: social/x-bfi.j2, mastodon: ...}")
    for platform, name in value.items():
        if platform not in _PLATFORMS:
            raise ValueError(_choices(str(platform), _PLATFORMS, "platform"))
        if not isinstance(name, str):
            raise ValueError(f"{platform}: give a template name such as social/{platform}.j2")
        try:
            _existing_template(name, info)
        except ValueError as exc:
            raise ValueError(f"{platform}: {exc}") from None
    return dict(value)


class SocialFile(_CommonFile):
    channels: Annotated[tuple[ChannelName, ...], AfterValidator(_some_unique)]
    trigger: Literal["new_items"] | None = None
    select: SelectFile
    # one template for every platform, or one per platform (the others: the shipped default)
    template: Annotated[Any, AfterValidator(_social_template)] = None


# -- checks across keys (on the raw data, so they run even where pydantic found faults) ----------------


class _Problems:
    """Collects (key path, message, hint) triples and turns them into located ConfigErrors."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.errors: list[ConfigError] = []

    def add(self, key_path: KeyPath, message: str, hint: str = "") -> None:
        where = format_key_path(key_path) or "(top level)"
        self.errors.append(ConfigError(self.doc.locate(key_path), where, message, hint))


def _campaign_languages(data: Mapping[str, Any], ctx: CampaignContext) -> tuple[str, ...] | None:
    """The campaign's languages, or None when ``languages`` is broken (pydantic reports that)."""
    value = data.get("languages", list(ctx.languages))
    if isinstance(value, list) and value and all(isinstance(v, str) and v in ctx.languages for v in value):
        return tuple(value)
    return None


def _check_texts(
    problems: _Problems,
    key_path: KeyPath,
    texts: Any,
    languages: tuple[str, ...] | None,
    ctx: CampaignContext,
    jinja: bool,
) -> None:
    """A per-language mapping: known languages, valid Jinja, a text for every campaign language."""
    if not isinstance(texts, dict):
        return  # pydantic reports the wrong type
    for language, text in texts.items():
        if str(language) not in ctx.languages:
            problems.add((*key_path, str(language)), _choices(str(language), ctx.languages, "language"))
        elif jinja and isinstance(text, str):
            _check_jinja(problems, (*key_path, str(language)), text)
    for language in languages or ():
        text = texts.get(language)
        if text is None or (isinstance(text, str) and not text.strip()):
            problems.add((*key_path, language), f"missing text for language {language!r}")


_JINJA = jinja2.Environment()


def _check_jinja(problems: _Problems, key_path: KeyPath, text: str) -> None:
    try:
        _JINJA.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        problems.add(key_path, f"Jinja syntax error in line {exc.lineno} of the text: {exc.message}")


def _check_newsletter(problems: _Problems, data: Mapping[str, Any], ctx: CampaignContext) -> None:
    languages = _campaign_languages(data, ctx)
    _check_texts(problems, ("subject",), data.get("subject", {}), languages, ctx, jinja=True)
    for key in ("intro", "preheader"):
        if data.get(key) is not None:
            _check_texts(problems, (key,), data[key], languages, ctx, jinja=True)
    if "list" not in data and "newsletter" not in ctx.lists:
        problems.add(
            ("list",), "required key is missing", f"configured lists: {', '.join(sorted(ctx.lists))}"
        )
    sections = data.get("sections", [])
    if sections == []:
        problems.add(("sections",), "a newsletter needs at least one section")
    elif isinstance(sections, list):
        _check_sections(problems, sections, languages, ctx)


def _check_sections(
    problems: _Problems, sections: list[Any], languages: tuple[str, ...] | None, ctx: CampaignContext
) -> None:
    first_use: dict[str, int] = {}
    for position, section in enumerate(sections):
        if not isinstance(section, dict):
            continue
        section_id = section.get("id")
        if isinstance(section_id, str) and section_id in first_use:
            message = f"section id {section_id!r} is already used by sections[{first_use[section_id]}]"
            problems.add(("sections", position, "id"), message)
        elif isinstance(section_id, str):
            first_use[section_id] = position
        _check_texts(
            problems, ("sections", position, "heading"), section.get("heading", {}), languages, ctx, False
        )


def _check_social(problems: _Problems, data: Mapping[str, Any]) -> None:
    if "trigger" in data and "schedule" in data:
        problems.add(("trigger",), "give trigger (a post per new item) or schedule (a digest post), not both")


def _check_name(problems: _Problems, data: Mapping[str, Any], path: Path) -> None:
    if "name" not in data and not _NAME.match(path.stem):
        message = f"the file name {path.stem!r} is not a valid campaign name"
        problems.add(
            ("name",), message, "rename the file or set name: (lower-case letters, digits, '-', '_', '.')"
        )


# -- loading --------------------------------------------------------------------------------------------


def load_campaign(path: Path, ctx: CampaignContext) -> Campaign:
    """Read and validate one campaign file.

    :param path: the YAML file; error locations name it as given.
    :param ctx: the configured names the file may refer to.
    :raises ConfigErrors: every problem of the file, each with ``file:line:col``, key path and message.
    """
    return _load(path, ctx)[0]


def _load(path: Path, ctx: CampaignContext) -> tuple[Campaign, YamlDocument]:
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else "not a mapping of keys (key: value)"
        raise ConfigErrors(
            [ConfigError(doc.locate(()), "", f"the campaign file is {what}; see campaigns/monthly.yaml")]
        )
    data: dict[str, Any] = doc.data
    model_class: type[NewsletterFile] | type[SocialFile] = (
        SocialFile if data.get("kind") == "social" else NewsletterFile
    )
    problems = _Problems(doc)
    problems.errors.extend(doc.duplicate_errors())  # YAML keeps the last of two equal keys silently
    _check_name(problems, data, path)
    if model_class is SocialFile:
        _check_social(problems, data)
    else:
        _check_newsletter(problems, data, ctx)
    model: NewsletterFile | SocialFile | None = None
    try:
        model = model_class.model_validate(data, context=ctx)
    except ValidationError as exc:
        problems.errors.extend(_kind_hints(validation_errors(exc, doc, model_class), model_class))
    if problems.errors or model is None:
        raise ConfigErrors(_in_file_order(problems.errors))
    return _campaign(model, path, ctx), doc


def _kind_hints(errors: list[ConfigError], model_class: type[BaseModel]) -> list[ConfigError]:
    """A newsletter key in a social campaign (or the other way round) says so instead of 'unknown key'."""
    other: type[BaseModel] = NewsletterFile if model_class is SocialFile else SocialFile
    kind = "a newsletter" if other is NewsletterFile else "a social"
    allowed = ", ".join(model_class.model_fields)
    return [
        ConfigError(e.location, e.key_path, f"only for {kind} campaign (allowed here: {allowed})")
        if e.key_path in other.model_fields and e.message.startswith("unknown key")
        else e
        for e in errors
    ]


def _in_file_order(errors: Iterable[ConfigError]) -> list[ConfigError]:
    unique = {str(error): error for error in errors}
    return sorted(unique.values(), key=lambda e: (e.location.line or 0, e.location.col or 0, e.key_path))


def _campaign(model: NewsletterFile | SocialFile, path: Path, ctx: CampaignContext) -> Campaign:
    common: dict[str, Any] = {
        "name": model.name or path.stem,
        "path": str(path),
        "kind": model.kind,
        "languages": model.languages or ctx.languages,
        "schedule": model.schedule.as_mapping() if model.schedule else {},
        "late_policy": model.late_policy,
        "grace": model.grace,
        "approval": model.approval,
        "min_items": model.min_items,
    }
    if isinstance(model, SocialFile):
        # An empty template means the shipped default of each platform (chosen when posts are rendered).
        section = Section(SOCIAL_SECTION_ID, {}, model.select.selection())
        templates = (
            dict(model.template)
            if isinstance(model.template, dict)
            else dict.fromkeys(("x", "mastodon", "bluesky", "linkedin"), model.template or "")
        )
        return Campaign(
            **common,
            list="",
            template=model.template if isinstance(model.template, str) else "",
            sections=(section,),
            channels=tuple(model.channels),
            trigger=model.trigger,
            templates={platform: name for platform, name in templates.items() if name},
        )
    return Campaign(
        **common,
        list=model.list or "newsletter",
        template=model.template or ctx.default_template,
        subject=dict(model.subject),
        intro=dict(model.intro),
        preheader=dict(model.preheader),
        sections=tuple(Section(s.id, dict(s.heading), s.select.selection()) for s in model.sections),
    )


def text_line(path: Path, key_path: KeyPath) -> int | None:
    """The line of ``path`` (1-based) on which the text at ``key_path`` (``("subject", "de")``) starts, so
    that a line of a campaign text can be named as a line of the file. A block scalar (``|``, ``>``)
    starts on the line after its key. None when the file cannot be read or holds no text there.
    """
    try:
        doc = load_yaml(path)
    except ConfigError:
        return None
    return _text_start(doc.root, key_path)


def _text_start(node: yaml.Node | None, key_path: KeyPath) -> int | None:
    for key in key_path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next(
            (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None
        )
    if not isinstance(node, yaml.ScalarNode):
        return None
    return node.start_mark.line + (2 if node.style in ("|", ">") else 1)


def campaign_files(folder: Path) -> list[Path]:
    """``*.yaml`` and ``*.yml`` directly in ``folder``, sorted by name; hidden files left out."""
    files = [p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")]
    return sorted(p for p in files if p.is_file())


def load_all(folder: Path, ctx: CampaignContext) -> tuple[list[Campaign], list[ConfigError]]:
    """Every campaign file of ``folder``, and every problem found in them.

    A broken file does not hide the others: its errors are returned and the rest load. A campaign whose
    name another file already uses is left out with an error naming both files. A missing folder holds
    no campaigns.
    """
    if not folder.is_dir():
        return [], []
    campaigns: list[Campaign] = []
    errors: list[ConfigError] = []
    owners: dict[str, str] = {}
    for path in campaign_files(folder):
        try:
            campaign, doc = _load(path, ctx)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        if campaign.name in owners:
            message = f"campaign name {campaign.name!r} is already used by {owners[campaign.name]}"
            errors.append(ConfigError(doc.locate(("name",)), "name", message, "names must be unique"))
            continue
        owners[campaign.name] = str(path)
        campaigns.append(campaign)
    return campaigns, errors
