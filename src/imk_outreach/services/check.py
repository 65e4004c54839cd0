"""``check``: config, every campaign and every template, each campaign rendered in each of its
languages with a synthetic edition, so a broken file is caught before anything is queued.

The verdict (problems and warnings) is judged against the files alone: campaigns against the sources'
tags and the ``tagging:`` rules of config.yaml, never against what the database holds today, so
``check`` answers the same before and after a ``gather``. Only the informational fallback notes look at
stored items.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from imk_outreach.campaigns.loader import CampaignContext, campaign_files, load_all
from imk_outreach.config import SecretRef, Settings, not_set
from imk_outreach.config_lint import config_problems
from imk_outreach.errors import ConfigError, ImkError, TemplateError
from imk_outreach.models import Campaign, Edition, EditionSection, NewsItem, Selection, Translation
from imk_outreach.services import social
from imk_outreach.services.compose import campaigns_dir, current_selection
from imk_outreach.services.database import sqlite_folder_problem, sqlite_path
from imk_outreach.services.rendering import render_all, template_env, template_exists
from imk_outreach.sources.normalize import canonical_url
from imk_outreach.yamlfile import YamlDocument, format_key_path, load_yaml

log = logging.getLogger(__name__)
KeyPath = tuple[str | int, ...]
SYNTHETIC_DATE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Problem:
    """One line of ``check`` output: ``file:line: key.path: message`` or ``template:line: message``."""

    file: str
    message: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


def _from_config_error(error: ConfigError) -> Problem:
    loc = error.location
    where = str(loc.path) if loc.col is None or loc.line is None else f"{loc.path}"
    return Problem(
        where, error.message + (f" ({error.hint})" if error.hint else ""), loc.line, error.key_path or None
    )


def _from_template_error(
    error: TemplateError, campaign: Campaign | None = None, language: str = ""
) -> Problem:
    context = f" (campaign {campaign.name}, language {language})" if campaign else ""
    return Problem(error.template, error.message + context, error.line)


def synthetic_items(languages: tuple[str, ...]) -> list[NewsItem]:
    """Items that exercise every part of a template: with and without image and translation."""
    first, *others = languages
    other = others[0] if others else first
    base = SYNTHETIC_DATE - timedelta(days=2)
    items = []
    for n in range(4):
        translated = n % 2 == 0
        items.append(
            NewsItem(
                id=f"synthetic{n}",
                url=f"https://example.org/check/{n}",
                source="check",
                title=f"Check item {n} <&>",
                summary_html=f"<p>Summary of check item {n}, <a href='https://example.org'>a link</a></p>",
                published_at=base - timedelta(days=n),
                language=first if n < 3 else other,
                tags=("check",),
                image=f"media/{n:064x}.jpg" if n != 1 else None,
                translations={other: Translation(f"Translated item {n}", "<p>Translated summary.</p>")}
                if translated and other != first
                else {},
            )
        )
    return items


def synthetic_edition(campaign: Campaign, languages: tuple[str, ...]) -> Edition:
    items = synthetic_items(languages)
    sections = tuple(
        EditionSection(
            section.id, section.heading, tuple(items[i % len(items)] for i in range(index, index + 2))
        )
        for index, section in enumerate(campaign.sections)
    )
    return Edition(
        id=0, campaign=campaign.name, created_at=SYNTHETIC_DATE, date=SYNTHETIC_DATE, sections=sections
    )


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found: problems fail it (exit 1), warnings are shown but do not."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def run_checks(settings: Settings) -> list[Problem]:
    """Every problem found; empty when all is well (see :func:`inspect` for the warnings too)."""
    return inspect(settings).problems


def inspect(settings: Settings) -> CheckReport:
    """Every problem and warning of config, campaigns and templates. Reads files only, never the
    database, so the answer is the same before and after a ``gather``. (The config's shape was checked
    when it loaded; what loading lets through but ``check`` refuses, such as a plain-text secret, comes
    from :func:`config_problems`.)"""
    template_env(settings, fresh=True)  # see templates as they are on disk now
    campaigns, errors = load_judged_campaigns(settings)
    problems = [_from_config_error(e) for e in config_problems(settings)]
    problems += [_from_config_error(e) for e in errors]
    problems += _database_problems(settings)
    problems += _check_staff_templates(settings)
    for campaign in campaigns:
        if campaign.kind == "social":
            problems += [
                Problem(campaign.path, message, None, "template")
                for message in social.fixed_text_problems(settings, campaign, SYNTHETIC_DATE)
            ]
            continue
        edition = synthetic_edition(campaign, settings.languages)
        for language in campaign.languages:
            one = replace(campaign, languages=(language,))
            try:
                render_all(settings, one, edition, SYNTHETIC_DATE)
            except TemplateError as exc:
                problems.append(_from_template_error(exc, campaign, language))
    # Unset is a warning (check runs where production secrets are not exported); set but empty is a
    # slip and one of config_problems.
    unset = [ref for ref in settings.unresolved() if not ref.empty()]
    # a channel that cannot post is a failed check: posts would queue up and wait for ever
    problems += [_unset_channel(settings, ref) for ref in unset if ref.key.startswith("channels")]
    warnings = [_unset_warning(ref) for ref in unset if not ref.key.startswith("channels")]
    warnings += _selection_warnings(settings, campaigns)
    return CheckReport(_unique(problems), _unique(warnings))


# -- campaigns judged against config.yaml ------------------------------------------------------------


def _tag_name(tag: str) -> str:
    """A tag as gathering stores it: lower case, inner spaces as ``-`` (see sources/normalize.py)."""
    return "-".join(tag.lower().split())


@dataclass(frozen=True)
class TagSources:
    """The tags config.yaml can give items: every item of a source gets its ``tags``; a ``tagging``
    rule can give its tag to an item of any source."""

    by_source: Mapping[str, frozenset[str]]
    by_rule: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> TagSources:
        by_source = {s.name: frozenset(_tag_name(t) for t in s.tags) for s in settings.sources}
        return cls(by_source, frozenset(_tag_name(t) for t in settings.tagging))

    @property
    def all(self) -> frozenset[str]:
        return self.by_rule.union(*self.by_source.values())

    def can_give(self, tag: str, sources: tuple[str, ...]) -> bool:
        """Whether an item of one of ``sources`` (empty: any source) can get ``tag`` from the config."""
        names = sources or tuple(self.by_source)
        return tag in self.by_rule or any(tag in self.by_source.get(name, ()) for name in names)


def load_judged_campaigns(settings: Settings) -> tuple[list[Campaign], list[ConfigError]]:
    """Every campaign file loaded against config.yaml alone. A tag no source or rule gives is not
    refused here (feeds may carry it as a category): :func:`inspect` warns about it instead."""
    folder = campaigns_dir(settings)
    if not folder.is_dir():
        return [], []
    written = {tag for path in campaign_files(folder) for _, tag in _written_tags(_document(path))}
    context = CampaignContext(
        languages=settings.languages,
        lists=frozenset(settings.lists),
        sources=frozenset(s.name for s in settings.sources),
        tags=TagSources.of(settings).all | written,
        template_exists=lambda name: template_exists(settings, name),
        canonicalize=canonical_url,
        channels=frozenset(channel.name for channel in settings.channels),
    )
    return load_all(folder, context)


def _document(path: Path) -> YamlDocument | None:
    try:
        return load_yaml(path)
    except ConfigError:
        return None  # the loader reports it


def _select_paths(data: Any) -> Iterator[tuple[KeyPath, Any]]:
    """(key path, value) of each ``select`` of a campaign file: each section's, or a social campaign's."""
    if not isinstance(data, dict):
        return
    if data.get("kind") == "social":
        yield ("select",), data.get("select")
        return
    sections = data.get("sections")
    for position, section in enumerate(sections if isinstance(sections, list) else []):
        if isinstance(section, dict):
            yield ("sections", position, "select"), section.get("select")


def _written_tags(doc: YamlDocument | None) -> Iterator[tuple[KeyPath, str]]:
    for key_path, select in _select_paths(doc.data if doc else None):
        tags = select.get("tags") if isinstance(select, dict) else None
        for position, tag in enumerate(tags if isinstance(tags, list) else []):
            if isinstance(tag, str):
                yield (*key_path, "tags", position), tag


def _selection_warnings(settings: Settings, campaigns: list[Campaign]) -> list[Problem]:
    """A section no configured source or tagging rule can ever fill, and a tag none gives."""
    tags = TagSources.of(settings)
    warnings = []
    for campaign in campaigns:
        doc = _document(Path(campaign.path))
        if doc is None:
            continue
        paths = [key_path for key_path, _ in _select_paths(doc.data)]
        for section, key_path in zip(campaign.sections, paths, strict=False):
            label = f"section {section.id!r}" if campaign.kind == "newsletter" else "the selection"
            for at, message in _selection_faults(section.select, tags, label):
                where = doc.locate((*key_path, *at))
                warnings.append(
                    Problem(campaign.path, message, where.line, format_key_path((*key_path, *at)))
                )
    return warnings


def _selection_faults(select: Selection, tags: TagSources, label: str) -> list[tuple[KeyPath, str]]:
    """(key path below ``select``, message) for what in ``select`` the config can never satisfy."""
    if select.pin or not select.tags:
        return []  # pinned items fill it; without tags any item of its sources does
    feeds = "only items whose own feed or file carries the tag would match"
    if not any(tags.can_give(tag, select.sources) for tag in select.tags):
        given = ", ".join(repr(t) for t in select.tags)
        why = f"no configured source (sources.tags) and no tagging rule gives {given}"
        if select.sources:
            why = (
                f"its sources ({', '.join(select.sources)}) carry none of {given}, no tagging rule gives them"
            )
        message = f"{label} can never be filled from the config: {why}{_suggest(select.tags, tags)}; {feeds}"
        return [(("tags",), message)]
    return [
        (
            ("tags", n),
            f"tag {tag!r} is given by no configured source or tagging rule{_suggest((tag,), tags)}; {feeds}",
        )
        for n, tag in enumerate(select.tags)
        if tag not in tags.all
    ]


def _suggest(written: tuple[str, ...], tags: TagSources) -> str:
    known = sorted(tags.all)
    close = [(tag, difflib.get_close_matches(tag, known, n=1)) for tag in written if tag not in tags.all]
    hints = [f"{match[0]!r} for {tag!r}" for tag, match in close if match]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


# -- secrets and the database --------------------------------------------------------------------------

_NEEDED_BY = {
    "database_url": "every command that reads or writes the database needs it",
    "smtp": "sending mail needs it (send, deliver, worker, run, subscription mails)",
    "secret_key": "signed links need it (send, deliver, worker, run, the web app)",
}


def _unset_channel(settings: Settings, ref: SecretRef) -> Problem:
    index = int(ref.key.split("[", 1)[1].split("]", 1)[0]) if "[" in ref.key else -1
    name = settings.channels[index].name if 0 <= index < len(settings.channels) else ref.key
    message = f"{not_set(ref.missing())}; channel {name} cannot post without it (export it before running)"
    return Problem(str(ref.location.path), message, ref.location.line, ref.key)


def _unset_warning(ref: SecretRef) -> Problem:
    needed_by = _NEEDED_BY.get(ref.key.split(".")[0], "the commands that use this key need it")
    message = f"{not_set(ref.missing())}; {needed_by} (export it before running)"
    return Problem(str(ref.location.path), message, ref.location.line, ref.key)


def _database_problems(settings: Settings) -> list[Problem]:
    """A SQLite path whose folder does not exist (a typo would otherwise make a new, empty database)."""
    if any(ref.key == "database_url" for ref in settings.unresolved()):
        return []  # warned about; the path is not known yet
    reason = sqlite_folder_problem(settings)
    if reason is None:
        return []
    doc = _document(settings.config_path)
    written = doc is not None and isinstance(doc.data, dict) and "database_url" in doc.data
    line = doc.locate(("database_url",)).line if doc is not None and written else None
    return [Problem(str(settings.config_path), reason, line, "database_url")]


# -- informational: what the current selection would show in another language -----------------------


@dataclass(frozen=True)
class Fallback:
    """An item the campaign would show now in its original language, lacking a translation."""

    campaign: str
    language: str
    item_id: str
    title: str
    original: str

    def __str__(self) -> str:
        return (
            f"note: campaign {self.campaign}: {self.title!r} has no {self.language} text; "
            f"shown in {self.original} (fallback)"
        )


def current_fallbacks(settings: Settings, now: datetime) -> list[Fallback]:
    """The fallbacks of every newsletter campaign's current selection (nothing is stored). Notes only:
    empty when there is no database yet (none is created for this) or it cannot be read."""
    try:
        path = sqlite_path(settings)
        if path is not None and not path.exists():
            return []
        return _fallbacks(settings, now)
    except ImkError as exc:
        log.info("fallbacks not listed: %s", exc)
        return []


def _fallbacks(settings: Settings, now: datetime) -> list[Fallback]:
    fallbacks = []
    for campaign in load_judged_campaigns(settings)[0]:
        if campaign.kind != "newsletter":
            continue
        edition = current_selection(settings, campaign, now)
        items = {item.id: item for item in edition.items}
        try:
            rendered = render_all(settings, campaign, edition, now)
        except TemplateError:
            continue  # reported as a problem by inspect
        for language, message in rendered.items():
            for item_id in message.fallbacks:
                item = items[item_id]
                fallbacks.append(Fallback(campaign.name, language, item_id, item.title, item.language))
    return fallbacks


def _check_staff_templates(settings: Settings) -> list[Problem]:
    """Syntax of every staff template, also those no campaign uses yet."""
    env = template_env(settings)
    folder = settings.resolve_path(settings.templates_dir)
    problems: list[Problem] = []
    if not folder.is_dir():
        return problems
    for path in sorted(folder.rglob("*.j2")):  # partials (_*.j2) too: a syntax error is an error anywhere
        try:
            env.parse(path.read_text(encoding="utf-8"), name=str(path.relative_to(folder)))
        except TemplateSyntaxError as exc:
            problems.append(Problem(str(path), exc.message or str(exc), exc.lineno))
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(path), f"not UTF-8 text (byte {exc.start})"))
    return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique
