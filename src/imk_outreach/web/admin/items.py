"""``/admin/items``: search the gathered items (text, source, tag, language, from/to date) page by page,
exclude an item from editions or take it back in, and ``/admin/items/new``: add a manual item with
German and English text (written as a YAML file of a manual source and gathered at once; see
:mod:`imk_outreach.services.items_admin`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from imk_outreach.config import Settings
from imk_outreach.services import items_admin
from imk_outreach.services.items_admin import ManualItemError, UnknownItemError
from imk_outreach.services.staff import StaffSession
from imk_outreach.web.admin import i18n
from imk_outreach.web.admin.common import clock_of, form_with_csrf, redirect_done, render, settings_of, staff

router = APIRouter()

Staff = Annotated[StaffSession, Depends(staff)]

PAGE_SIZE = 50
FILTERS = ("text", "source", "tag", "language", "from", "to", "hide_excluded")

TEXTS: dict[str, dict[str, str]] = {
    "items.title": {"de": "Beiträge", "en": "Items"},
    "items.search": {"de": "Suchen", "en": "Search"},
    "items.reset": {"de": "Zurücksetzen", "en": "Reset"},
    "items.text": {"de": "Text", "en": "Text"},
    "items.source": {"de": "Quelle", "en": "Source"},
    "items.tag": {"de": "Schlagwort", "en": "Tag"},
    "items.language": {"de": "Sprache", "en": "Language"},
    "items.from": {"de": "Von (Datum)", "en": "From (date)"},
    "items.to": {"de": "Bis (Datum)", "en": "To (date)"},
    "items.any": {"de": "alle", "en": "any"},
    "items.hide_excluded": {"de": "Ausgeschlossene ausblenden", "en": "Hide excluded items"},
    "items.col_title": {"de": "Titel", "en": "Title"},
    "items.col_source": {"de": "Quelle", "en": "Source"},
    "items.col_language": {"de": "Sprache", "en": "Language"},
    "items.col_tags": {"de": "Schlagwörter", "en": "Tags"},
    "items.col_date": {"de": "Datum", "en": "Date"},
    "items.col_editions": {"de": "In Ausgaben", "en": "In editions"},
    "items.estimated": {"de": "(Datum des Abrufs)", "en": "(date gathered)"},
    "items.excluded": {"de": "ausgeschlossen", "en": "excluded"},
    "items.excluded_by": {"de": "von {name}, {when}", "en": "by {name}, {when}"},
    "items.included": {"de": "ja", "en": "yes"},
    "items.exclude": {"de": "Ausschließen", "en": "Exclude"},
    "items.include": {"de": "Wieder aufnehmen", "en": "Include again"},
    "items.count": {"de": "{first}–{last} von {total}", "en": "{first}–{last} of {total}"},
    "items.none": {"de": "Keine Beiträge gefunden.", "en": "No items found."},
    "items.previous": {"de": "Vorige Seite", "en": "Previous page"},
    "items.next": {"de": "Nächste Seite", "en": "Next page"},
    "items.bad_date": {
        "de": "„{value}“ ist kein Datum (JJJJ-MM-TT); dieser Filter wurde nicht angewandt.",
        "en": "“{value}” is not a date (YYYY-MM-DD); this filter was not applied.",
    },
    "items.unknown": {"de": "Diesen Beitrag gibt es nicht.", "en": "There is no such item."},
    "items.add": {"de": "Beitrag von Hand hinzufügen", "en": "Add an item by hand"},
    # the form of a new item
    "item_new.title": {"de": "Neuer Beitrag", "en": "New item"},
    "item_new.intro": {
        "de": "Der Beitrag wird als Datei der gewählten Quelle gespeichert und sofort übernommen; "
        "spätere Abrufe behalten ihn.",
        "en": "The item is saved as a file of the chosen source and taken in at once; later gathers keep it.",
    },
    "item_new.no_sources": {
        "de": "Keine Quelle nimmt Beiträge von Hand an: Dafür braucht config.yaml eine Quelle mit "
        "type: manual, deren url ein Ordner ist.",
        "en": "No source takes items by hand: config.yaml needs a source with type: manual whose url "
        "is a folder.",
    },
    "item_new.source": {"de": "Quelle", "en": "Source"},
    "item_new.url": {"de": "Adresse (URL) des Beitrags", "en": "Address (URL) of the item"},
    "item_new.title_in": {"de": "Titel ({code})", "en": "Title ({code})"},
    "item_new.summary_in": {"de": "Text ({code})", "en": "Text ({code})"},
    "item_new.summary_hint": {
        "de": "Markdown: **fett**, *kursiv*, [Link](https://…)",
        "en": "Markdown: **bold**, *italic*, [link](https://…)",
    },
    "item_new.tags": {"de": "Schlagwörter", "en": "Tags"},
    "item_new.tags_hint": {
        "de": "durch Kommas getrennt, z. B. film, ki",
        "en": "separated by commas, e.g. film, ai",
    },
    "item_new.published": {"de": "Datum", "en": "Date"},
    "item_new.published_hint": {
        "de": "leer: das Datum von heute",
        "en": "empty: today's date",
    },
    "item_new.image": {"de": "Bild (URL, optional)", "en": "Image (URL, optional)"},
    "item_new.submit": {"de": "Beitrag speichern", "en": "Save item"},
    "item_new.error": {"de": "Bitte prüfen: {field}: {message}", "en": "Please check: {field}: {message}"},
    "done.item_excluded": {
        "de": "Beitrag aus künftigen Ausgaben ausgeschlossen.",
        "en": "Item excluded from future editions.",
    },
    "done.item_included": {"de": "Beitrag wieder aufgenommen.", "en": "Item included again."},
    "done.item_added": {"de": "Beitrag hinzugefügt.", "en": "Item added."},
}
for _key, _texts in TEXTS.items():  # this page's texts join the others (a test checks none clashes)
    i18n.STRINGS.setdefault(_key, _texts)


# -- the list --------------------------------------------------------------------------------------


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        return None


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1


def _listing(settings: Settings, params: Mapping[str, str]) -> dict[str, Any]:
    """The search form's values, the page of items and the links to the pages beside it."""
    filters = {name: params.get(name, "").strip() for name in FILTERS}
    bad_dates = [filters[key] for key in ("from", "to") if filters[key] and _day(filters[key]) is None]
    since, until = items_admin.day_range(settings, _day(filters["from"]), _day(filters["to"]))
    page = _page_number(params.get("page", "1"))
    rows, total = items_admin.search_items(
        settings,
        text=filters["text"],
        source=filters["source"],
        tag=filters["tag"],
        language=filters["language"],
        since=since,
        until=until,
        include_excluded=not filters["hide_excluded"],
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    kept = {key: value for key, value in filters.items() if value}
    return {
        "filters": filters,
        "bad_dates": bad_dates,
        "rows": rows,
        "total": total,
        "first": (page - 1) * PAGE_SIZE + 1 if rows else 0,
        "last": (page - 1) * PAGE_SIZE + len(rows),
        "previous": _page_link(kept, page - 1) if page > 1 else None,
        "next": _page_link(kept, page + 1) if page * PAGE_SIZE < total else None,
        "sources": [source.name for source in settings.sources],
        "item_languages": list(settings.languages),
        "can_add": bool(items_admin.manual_sources(settings)),
    }


def _page_link(filters: Mapping[str, str], page: int) -> str:
    return "/admin/items?" + urlencode({**filters, "page": str(page)})


@router.get("/items", response_class=HTMLResponse)
def items_page(request: Request, session: Staff) -> HTMLResponse:
    context = _listing(settings_of(request), request.query_params)
    return render(request, session, "items.html.j2", {**context, "error": None})


@router.post("/items/{item_id}/exclude", response_model=None)
async def exclude(request: Request, item_id: str, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    settings, now = settings_of(request), clock_of(request)
    try:
        await run_in_threadpool(items_admin.exclude_item, settings, item_id, session.user.name, now)
    except UnknownItemError:
        return await _unknown_item(request, session)
    return redirect_done(_back(form), "item_excluded")


@router.post("/items/{item_id}/include", response_model=None)
async def include(request: Request, item_id: str, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    try:
        await run_in_threadpool(items_admin.include_item, settings_of(request), item_id, session.user.name)
    except UnknownItemError:
        return await _unknown_item(request, session)
    return redirect_done(_back(form), "item_included")


def _back(form: Mapping[str, str]) -> str:
    """The list page the form came from (``next``; only /admin/items pages), else the first page."""
    target = form.get("next", "")
    return target if target == "/admin/items" or target.startswith("/admin/items?") else "/admin/items"


async def _unknown_item(request: Request, session: StaffSession) -> HTMLResponse:
    context = await run_in_threadpool(_listing, settings_of(request), {})
    return render(request, session, "items.html.j2", {**context, "error": "items.unknown"}, status=404)


# -- a new manual item -----------------------------------------------------------------------------


def _new_form(settings: Settings, values: Mapping[str, str], error: ManualItemError | None) -> dict[str, Any]:
    return {
        "sources": [source.name for source in items_admin.manual_sources(settings)],
        "item_languages": list(settings.languages),
        "values": dict(values),
        "error": error,
    }


@router.get("/items/new", response_class=HTMLResponse)
def new_item_page(request: Request, session: Staff) -> HTMLResponse:
    return render(request, session, "item_new.html.j2", _new_form(settings_of(request), {}, None))


@router.post("/items/new", response_model=None)
async def add_item(request: Request, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    settings, now = settings_of(request), clock_of(request)
    languages = settings.languages
    try:
        await run_in_threadpool(
            lambda: items_admin.add_manual_item(
                settings,
                form.get("source", ""),
                url=form.get("url", ""),
                title={language: form.get(f"title_{language}", "") for language in languages},
                summary={language: form.get(f"summary_{language}", "") for language in languages},
                tags=items_admin.parse_tags(form.get("tags", "")),
                published=form.get("published", ""),
                image=form.get("image", ""),
                now=now,
                by=session.user.name,
            )
        )
    except ManualItemError as exc:
        values = {key: value for key, value in form.items() if key != "csrf_token"}
        context = await run_in_threadpool(_new_form, settings, values, exc)
        return render(request, session, "item_new.html.j2", context, status=400)
    return redirect_done("/admin/items", "item_added")
