"""``GET /healthz`` for uptime monitors, and the staff preview links sent in notices."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from imk_outreach.models import Edition
from imk_outreach.services import health, preview, tokens
from imk_outreach.services.compose import EditionError
from imk_outreach.web.public import state_of

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 with the scheduler's state while it runs and the database answers; 503 otherwise."""
    settings = state_of(request).settings
    state = health.health(settings, state_of(request).clock())
    body = {
        "status": "ok" if state.ok else "unavailable",
        "database": state.database,
        "scheduler": state.scheduler,
        "scheduler_process": state.leader.name if state.leader else None,
        "heartbeat_at": state.leader.heartbeat_at.astimezone(UTC).isoformat() if state.leader else None,
        "workers": sum(1 for p in state.processes if p.role == "worker"),
    }
    return JSONResponse(body, status_code=200 if state.ok else 503)


@router.get("/preview/{token}")
def preview_index(request: Request, token: str) -> HTMLResponse:
    edition, pages = _pages(request, token)
    links = "".join(f'<li><a href="{html.escape(token)}/{lang}">{lang.upper()}</a></li>' for lang in pages)
    title = html.escape(f"{edition.campaign}: edition {edition.id} ({edition.state})")
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>Vorschau je Sprache / preview per language:</p><ul>{links}</ul>"
        f"<p>Freigeben / approve: <code>imk-outreach approve {edition.id}</code></p></body></html>"
    )
    return HTMLResponse(body)


@router.get("/preview/{token}/{language}")
def preview_language(request: Request, token: str, language: str) -> HTMLResponse:
    _edition, pages = _pages(request, token)
    if language not in pages:
        raise tokens.InvalidTokenError("preview")
    return HTMLResponse(pages[language])


def _pages(request: Request, token: str) -> tuple[Edition, dict[str, str]]:
    state = state_of(request)
    now: datetime = state.clock()
    edition_id = tokens.read_edition_token(tokens.secret_key(state.settings), token, now)
    try:
        return preview.edition_pages(state.settings, edition_id)
    except EditionError:  # discarded since the notice went out
        raise tokens.InvalidTokenError("preview") from None
