"""``/admin/subscribers``: search by a part of the address or name, status and list; one subscriber's
status, consent evidence and what was sent to them; erasure (the address must be typed again); and
``/admin/subscribers/export.csv``, the CSV of ``subscribers export`` (streamed, formula cells
neutralised)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from imk_outreach.config import Settings
from imk_outreach.services import subscriber_search, subscriptions
from imk_outreach.services.staff import StaffSession
from imk_outreach.services.subscriber_search import ErasureNotConfirmedError, NoSuchSubscriberError
from imk_outreach.web.admin import i18n
from imk_outreach.web.admin.common import clock_of, form_with_csrf, redirect_done, render, settings_of, staff

router = APIRouter()

Staff = Annotated[StaffSession, Depends(staff)]

PAGE_SIZE = 50
EXPORT_CHUNK = 64_000  # characters of CSV sent at a time

TEXTS: dict[str, dict[str, str]] = {
    "subs.title": {"de": "Abonnenten", "en": "Subscribers"},
    "subs.text": {"de": "Adresse oder Name (Teil)", "en": "Address or name (part)"},
    "subs.status": {"de": "Status", "en": "Status"},
    "subs.list": {"de": "Liste", "en": "List"},
    "subs.any": {"de": "alle", "en": "any"},
    "subs.search": {"de": "Suchen", "en": "Search"},
    "subs.reset": {"de": "Zurücksetzen", "en": "Reset"},
    "subs.export": {"de": "Alle als CSV exportieren", "en": "Export all as CSV"},
    "subs.count": {"de": "{first}–{last} von {total}", "en": "{first}–{last} of {total}"},
    "subs.none": {"de": "Keine Abonnenten gefunden.", "en": "No subscribers found."},
    "subs.previous": {"de": "Vorige Seite", "en": "Previous page"},
    "subs.next": {"de": "Nächste Seite", "en": "Next page"},
    "subs.col_email": {"de": "Adresse", "en": "Address"},
    "subs.col_name": {"de": "Name", "en": "Name"},
    "subs.col_status": {"de": "Status", "en": "Status"},
    "subs.col_language": {"de": "Sprache", "en": "Language"},
    "subs.col_lists": {"de": "Listen", "en": "Lists"},
    "subs.col_signup": {"de": "Angemeldet", "en": "Signed up"},
    "subs.status_pending": {"de": "unbestätigt", "en": "pending"},
    "subs.status_confirmed": {"de": "bestätigt", "en": "confirmed"},
    "subs.status_unsubscribed": {"de": "abgemeldet", "en": "unsubscribed"},
    "subs.status_bounced": {"de": "unzustellbar", "en": "bounced"},
    # one subscriber
    "sub.back": {"de": "Zurück zur Suche", "en": "Back to the search"},
    "sub.record": {"de": "Stand", "en": "Record"},
    "sub.signed_up": {"de": "Angemeldet", "en": "Signed up"},
    "sub.via": {"de": "über {source}", "en": "via {source}"},
    "sub.confirmed": {"de": "Bestätigt", "en": "Confirmed"},
    "sub.unsubscribed": {"de": "Abgemeldet", "en": "Unsubscribed"},
    "sub.bounce": {"de": "Grund der Unzustellbarkeit", "en": "Bounce reason"},
    "sub.consent_text": {"de": "Einwilligungstext", "en": "Consent text"},
    "sub.ip_hash": {"de": "IP-Hash", "en": "IP hash"},
    "sub.created": {"de": "Datensatz angelegt", "en": "Record created"},
    "sub.none": {"de": "keine", "en": "none"},
    "sub.evidence": {"de": "Nachweis der Einwilligung", "en": "Consent evidence"},
    "sub.evidence_none": {"de": "Keine Ereignisse aufgezeichnet.", "en": "No events recorded."},
    "sub.col_when": {"de": "Wann", "en": "When"},
    "sub.col_event": {"de": "Ereignis", "en": "Event"},
    "sub.col_details": {"de": "Angaben", "en": "Details"},
    "sub.event_text": {"de": "Text {version} ({code})", "en": "text {version} ({code})"},
    "sub.event_ip": {"de": "IP-Hash gespeichert", "en": "IP hash kept"},
    "sub.event_note": {"de": "Notiz: {note}", "en": "note: {note}"},
    "sub.kind_signup": {"de": "Anmeldung (Web)", "en": "sign-up (web)"},
    "sub.kind_confirm": {"de": "Bestätigung", "en": "confirmation"},
    "sub.kind_preferences": {"de": "Einstellungen geändert", "en": "preferences changed"},
    "sub.kind_unsubscribe": {"de": "Abmeldung", "en": "unsubscribe"},
    "sub.kind_bounce": {"de": "unzustellbar", "en": "bounce"},
    "sub.kind_import": {"de": "Import", "en": "import"},
    "sub.kind_add": {"de": "von Hand hinzugefügt", "en": "added by hand"},
    "sub.texts": {"de": "Gezeigte Einwilligungstexte", "en": "Consent texts shown"},
    "sub.sent": {"de": "Was ihnen gesendet wurde", "en": "What was sent to them"},
    "sub.sent_none": {"de": "Noch nichts gesendet.", "en": "Nothing sent to this address yet."},
    "sub.col_edition": {"de": "Ausgabe", "en": "Edition"},
    "sub.col_state": {"de": "Stand", "en": "State"},
    "sub.col_updated": {"de": "Zuletzt", "en": "Last change"},
    "sub.col_reply": {"de": "Antwort des Servers", "en": "Server's reply"},
    "sub.erase": {"de": "Endgültig löschen", "en": "Erase for good"},
    "sub.erase_explain": {
        "de": "Datensatz, Listen und Einwilligungsnachweise werden gelöscht; nur ein Schlüssel-Hash der "
        "Adresse bleibt, damit kein Import sie wieder hinzufügt. Das lässt sich nicht rückgängig machen.",
        "en": "Their record, lists and consent evidence are deleted; only a keyed hash of the address "
        "stays, so no import adds it again. This cannot be undone.",
    },
    "sub.erase_confirm": {
        "de": "Zur Bestätigung die Adresse ({email}) eintippen",
        "en": "Type the address ({email}) to confirm",
    },
    "sub.erase_mismatch": {
        "de": "Die eingetippte Adresse stimmt nicht; es wurde nichts gelöscht.",
        "en": "The address typed does not match; nothing was erased.",
    },
    "sub.unknown": {
        "de": "Diesen Abonnenten gibt es nicht (mehr).",
        "en": "There is no such subscriber (any more).",
    },
    "done.subscriber_erased": {
        "de": "Abonnent gelöscht; nur ein Schlüssel-Hash der Adresse bleibt.",
        "en": "Subscriber erased; only a keyed hash of the address stays.",
    },
}
for _key, _texts in TEXTS.items():  # this page's texts join the others (a test checks none clashes)
    i18n.STRINGS.setdefault(_key, _texts)


# -- search ----------------------------------------------------------------------------------------


def _page_number(value: str) -> int:
    return int(value) if value.isdigit() and 0 < int(value) < 1_000_000 else 1


def _listing(settings: Settings, params: Mapping[str, str]) -> dict[str, Any]:
    filters = {name: params.get(name, "").strip() for name in ("q", "status", "list")}
    page = _page_number(params.get("page", "1"))
    found, total = subscriber_search.search_subscribers(
        settings,
        text=filters["q"],
        status=filters["status"],
        list_name=filters["list"],
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    kept = {key: value for key, value in filters.items() if value}
    return {
        "filters": filters,
        "subscribers": found,
        "total": total,
        "first": (page - 1) * PAGE_SIZE + 1 if found else 0,
        "last": (page - 1) * PAGE_SIZE + len(found),
        "previous": _page_link(kept, page - 1) if page > 1 else None,
        "next": _page_link(kept, page + 1) if page * PAGE_SIZE < total else None,
        "statuses": subscriber_search.STATUSES,
        "lists": sorted(settings.lists),
        "error": None,
    }


def _page_link(filters: Mapping[str, str], page: int) -> str:
    return "/admin/subscribers?" + urlencode({**filters, "page": str(page)})


@router.get("/subscribers", response_class=HTMLResponse)
def subscribers_page(request: Request, session: Staff) -> HTMLResponse:
    context = _listing(settings_of(request), request.query_params)
    return render(request, session, "subscribers.html.j2", context)


# -- export (before /subscribers/{id}, which would take the name for an id) --------------------------


def _csv_lines(settings: Settings) -> Iterator[str]:
    """The CSV of ``subscribers export``, a row at a time (memory stays flat)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=subscriptions.EXPORT_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in subscriptions.export(settings):
        writer.writerow(subscriptions.csv_cells(record))
        if buffer.tell() > EXPORT_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/subscribers/export.csv", response_model=None)
def export_csv(request: Request, session: Staff) -> StreamingResponse:
    settings = settings_of(request)
    day = clock_of(request).astimezone(settings.tz).date().isoformat()
    headers = {
        "Content-Disposition": f'attachment; filename="subscribers-{day}.csv"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_csv_lines(settings), media_type="text/csv; charset=utf-8", headers=headers)


# -- one subscriber --------------------------------------------------------------------------------


def _subscriber_context(settings: Settings, subscriber_id: int) -> dict[str, Any]:
    found = subscriber_search.subscriber_page(settings, subscriber_id)
    return {
        "record": found.record,
        "sub": found.record.subscriber,
        "evidence": found.evidence,
        "event_kinds": [key for key in TEXTS if key.startswith("sub.kind_")],
    }


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(request: Request, subscriber_id: int, session: Staff) -> HTMLResponse:
    try:
        context = _subscriber_context(settings_of(request), subscriber_id)
    except NoSuchSubscriberError:
        return _unknown(request, session)
    return render(request, session, "subscriber.html.j2", {**context, "error": None})


def _unknown(request: Request, session: StaffSession) -> HTMLResponse:
    context = _listing(settings_of(request), {})
    return render(request, session, "subscribers.html.j2", {**context, "error": "sub.unknown"}, status=404)


@router.post("/subscribers/{subscriber_id}/erase", response_model=None)
async def erase(request: Request, subscriber_id: int, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    settings, now = settings_of(request), clock_of(request)
    typed = form.get("confirm_email", "")
    try:
        await run_in_threadpool(subscriber_search.erase_confirmed, settings, subscriber_id, typed, now)
    except NoSuchSubscriberError:
        return await run_in_threadpool(_unknown, request, session)
    except ErasureNotConfirmedError:
        context = await run_in_threadpool(_subscriber_context, settings, subscriber_id)
        page = {**context, "error": "sub.erase_mismatch"}
        return render(request, session, "subscriber.html.j2", page, status=400)
    return redirect_done("/admin/subscribers", "subscriber_erased")
