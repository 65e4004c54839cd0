"""``check``: config, every campaign and every template, each campaign rendered in each of its
languages with a synthetic edition, so a broken file is caught before anything is queued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jinja2 import TemplateSyntaxError

from imk_outreach.config import Settings
from imk_outreach.errors import ConfigError, TemplateError
from imk_outreach.models import Campaign, Edition, EditionSection, NewsItem, Translation
from imk_outreach.services.compose import current_selection, load_campaigns
from imk_outreach.services.rendering import render_all, template_env

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
                image=f"https://example.org/check/{n}.jpg" if n != 1 else None,
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
    """The fallbacks of every newsletter campaign's current selection (nothing is stored)."""
    fallbacks = []
    for campaign in load_campaigns(settings)[0]:
        if campaign.kind != "newsletter":
            continue
        edition = current_selection(settings, campaign, now)
        items = {item.id: item for item in edition.items}
        try:
            rendered = render_all(settings, campaign, edition, now)
        except TemplateError:
            continue  # reported as a problem by run_checks
        for language, message in rendered.items():
            for item_id in message.fallbacks:
                item = items[item_id]
                fallbacks.append(Fallback(campaign.name, language, item_id, item.title, item.language))
    return fallbacks


def run_checks(settings: Settings) -> list[Problem]:
    """Every problem found; empty when all is well. (The config itself was checked when it loaded.)"""
    template_env(settings, fresh=True)  # see templates as they are on disk now
    campaigns, errors = load_campaigns(settings)
    problems = [_from_config_error(e) for e in errors]
    problems += _check_staff_templates(settings)
    for campaign in campaigns:
        if campaign.kind != "newsletter":
            continue
        edition = synthetic_edition(campaign, settings.languages)
        for language in campaign.languages:
            one = _only(campaign, language)
            try:
                render_all(settings, one, edition, SYNTHETIC_DATE)
            except TemplateError as exc:
                problems.append(_from_template_error(exc, campaign, language))
    return _unique(problems)


def _only(campaign: Campaign, language: str) -> Campaign:
    from dataclasses import replace

    return replace(campaign, languages=(language,))


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
