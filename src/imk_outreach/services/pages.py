"""The public web pages, rendered through the one template environment (``templates/web/*.html.j2``,
staff overrides first). The web layer says which page, in which language, with which page data; this
module adds what every page shows (brand, imprint, languages, lists) and renders it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError

from imk_outreach.config import Settings
from imk_outreach.render.env import render_template
from imk_outreach.services.rendering import template_env
from imk_outreach.services.subscriptions import list_labels
from imk_outreach.services.tokens import CONFIRM_MAX_AGE

PAGES = ("subscribe", "confirm", "preferences", "unsubscribe", "message")
MESSAGE_KINDS = ("check_inbox", "confirmed", "invalid_link", "unavailable", "error", "bad_request")


@cache
def native_name(language: str) -> str:
    """A language's name in that language ("Deutsch", "English"), for the language choices."""
    try:
        name = Locale.parse(language).get_display_name(language)
    except (UnknownLocaleError, ValueError):
        return language
    return (name or language)[:1].upper() + (name or language)[1:]


def pick_language(settings: Settings, candidates: Sequence[str | None]) -> str:
    """The first candidate that is a configured language, else the first configured language."""
    for candidate in candidates:
        if candidate and candidate.lower() in settings.languages:
            return candidate.lower()
    return settings.default_language


def _localized(values: Mapping[str, str], language: str) -> str:
    return values.get(language) or next(iter(values.values()), "")


def page_context(settings: Settings, language: str) -> dict[str, Any]:
    """What every page shows: brand, imprint, the languages with their own names, the lists."""
    return {
        "brand_name": _localized(settings.name, language),
        "imprint_lines": _localized(settings.imprint, language).splitlines(),
        "languages": [(code, native_name(code)) for code in settings.languages],
        "list_choices": list(list_labels(settings, language).items()),
        "consent_version": settings.consent_version,
        "valid_days": CONFIRM_MAX_AGE.days,
        "subscribe_url": f"{settings.public_url.rstrip('/')}/subscribe?lang={language}",
        "switch_language": False,
    }


def render_page(settings: Settings, page: str, language: str, context: Mapping[str, Any]) -> str:
    """The HTML of ``web/{page}.html.j2`` in ``language``.

    :raises ValueError: an unknown page.
    :raises TemplateError: the template is broken (names template and line).
    """
    if page not in PAGES:
        raise ValueError(f"no page {page!r} (pages: {', '.join(PAGES)})")
    full = {**page_context(settings, language), **context}
    return render_template(template_env(settings), f"web/{page}.html.j2", language, full)
