"""``preview``: an edition as subscribers will see it, per language, written to files staff open in a
browser: the HTML, the text part, and an index.html with all languages side by side."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Edition, RenderedEmail
from imk_outreach.render.email import greeting, personalize
from imk_outreach.services.compose import ComposeResult, compose, get_campaign, get_edition
from imk_outreach.services.database import engine_for
from imk_outreach.services.rendering import render_all

SAMPLE_NAME = "Erika Mustermann"


@dataclass(frozen=True)
class PreviewResult:
    result: ComposeResult
    index: Path
    files: dict[str, tuple[Path, Path]]  # language -> (html, text)
    rendered: dict[str, RenderedEmail]
    recipients: dict[str, int]  # confirmed subscribers of the campaign's list per language


def sample_values(settings: Settings, language: str) -> dict[str, str]:
    """What a real recipient's placeholders would hold, for a sample subscriber."""
    base = settings.public_url.rstrip("/")
    return {
        "greeting": greeting(language, SAMPLE_NAME),
        "unsubscribe_url": f"{base}/unsubscribe/PREVIEW",
        "preferences_url": f"{base}/preferences/PREVIEW",
        "email": "erika.mustermann@example.org",
    }


def preview(
    settings: Settings, name: str, out: Path | None = None, now: datetime | None = None
) -> PreviewResult:
    """Compose a draft edition of ``name`` now and write its preview files under ``out``.

    :raises UnknownCampaignError, ConfigErrors, TemplateError: as for compose.
    """
    now = now or datetime.now(UTC)
    result = compose(settings, name, now, keep_short=True)
    assert result.edition is not None  # keep_short always composes
    edition = result.edition
    rendered = render_all(settings, result.campaign, edition, edition.date)
    folder = (out or settings.resolve_path("var/preview")) / name
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for language, message in rendered.items():
        page, text = personalize(message, sample_values(settings, language))
        html_path, text_path = folder / f"{language}.html", folder / f"{language}.txt"
        html_path.write_text(page, encoding="utf-8")
        text_path.write_text(text, encoding="utf-8")
        files[language] = (html_path, text_path)
    index = folder / "index.html"
    with engine_for(settings).connect() as conn:
        recipients = store.recipients_by_language(conn, result.campaign.list)
    index.write_text(_index_page(result, edition, rendered, recipients), encoding="utf-8")
    return PreviewResult(result, index, files, rendered, recipients)


def _index_page(
    result: ComposeResult, edition: Edition, rendered: dict[str, RenderedEmail], recipients: dict[str, int]
) -> str:
    titles = {item.id: item.title for item in edition.items}
    columns = []
    for language, message in rendered.items():
        fallbacks = "".join(f"<li>{html.escape(titles.get(i, i))}</li>" for i in message.fallbacks)
        columns.append(
            f'<section class="lang" lang="{language}"><h2>{language.upper()}</h2>'
            f'<p class="subject"><b>Subject:</b> <span data-subject="{language}">'
            f"{html.escape(message.subject)}</span></p>"
            f'<p class="preheader"><b>Preheader:</b> {html.escape(message.preheader)}</p>'
            f'<p><b>Recipients:</b> <span data-recipients="{language}">{recipients.get(language, 0)}</span> '
            f"confirmed subscribers of {html.escape(result.campaign.list)} read {language.upper()}</p>"
            f"<p><b>Fallbacks</b> (shown in the original language): {len(message.fallbacks)}</p>"
            f'<ul class="fallbacks">{fallbacks}</ul>'
            f'<p><a href="{language}.html">HTML</a> · <a href="{language}.txt">text part</a></p>'
            f'<iframe src="{language}.html" title="{language} newsletter" width="640" height="1600"></iframe>'
            "</section>"
        )
    notice = (
        f'<p class="warning">{html.escape(result.skipped)}: this edition would be skipped.</p>'
        if result.skipped
        else ""
    )
    approval = html.escape(edition.state)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Preview: {html.escape(result.campaign.name)} edition {edition.id}</title>"
        "<style>body{font-family:sans-serif;margin:1rem}main{display:flex;gap:1rem;flex-wrap:wrap}"
        ".lang{flex:1 1 640px}iframe{border:1px solid #ccc;width:100%;max-width:640px}"
        ".warning{background:#fff3cd;padding:.5rem}</style></head><body>"
        f"<h1>{html.escape(result.campaign.name)}: edition {edition.id} ({approval})</h1>"
        f"<p>{len(edition.items)} items, {result.new_items} new; "
        f"{sum(recipients.get(lang, 0) for lang in rendered)} recipients.</p>"
        f"{notice}<main>{''.join(columns)}</main></body></html>"
    )


def edition_pages(settings: Settings, edition_id: int) -> tuple[Edition, dict[str, str]]:
    """A stored edition's newsletter HTML per language, as a sample subscriber would see it (for the
    preview link in staff notices).

    :raises EditionError: no such edition.
    :raises UnknownCampaignError, ConfigErrors, TemplateError: its campaign cannot be rendered.
    """
    edition = get_edition(settings, edition_id)
    campaign = get_campaign(settings, edition.campaign)
    rendered = render_all(settings, campaign, edition, edition.date)
    pages = {
        lang: personalize(message, sample_values(settings, lang))[0] for lang, message in rendered.items()
    }
    return edition, pages
