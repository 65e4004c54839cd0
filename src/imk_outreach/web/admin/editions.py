"""``/admin/editions/{id}``: one edition as its recipients will see it, and what to do with it.

The page shows each language's newsletter in an ``<iframe sandbox>`` without ``allow-scripts`` (its
``src`` is ``/admin/editions/{id}/html/{lang}``, answered with a CSP of its own: ``sandbox``, no
script, images and inline styles only), a desktop/mobile width toggle made of two links
(``?width=mobile``), the text part, the items shown in their original language (fallbacks), who gets
which language, the social posts per channel with their counted length and limit, and once queued the
rows per state and the failed recipients with the server's reply (:mod:`services.edition_review`).

Buttons, each a POST with the CSRF token, answered 303 back to the page with a done-message:
approve ("Freigeben"; a held edition is released at once, as ``imk-outreach approve`` does), queue
an approved edition now (as ``imk-outreach send --yes``), cancel a queued one, and send a test to the
signed-in user's address (while the edition is not queued yet: the test is of the current draft), and
hold one not yet queued (its approval is withdrawn until someone approves again). A refusal of a
service (an :class:`ImkError`) is shown on the page inside a translated sentence, with the status 409;
a refusal for too few items offers "approve anyway" / "send anyway".
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from imk_outreach.errors import ImkError
from imk_outreach.services import compose, dispatch, edition_review, editions_admin, schedule
from imk_outreach.services.compose import EditionError, ShortEditionError
from imk_outreach.services.staff import StaffSession
from imk_outreach.web.admin.common import (
    clock_of,
    form_with_csrf,
    language_for,
    redirect_done,
    render,
    settings_of,
    staff,
    t,
)

router = APIRouter()

Staff = Annotated[StaffSession, Depends(staff)]

FRAME_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data: https: http:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'"
)
WIDTHS = ("desktop", "mobile")


# -- the page ----------------------------------------------------------------------------------------


@router.get("/editions/{edition_id}", response_class=HTMLResponse)
def edition_page(request: Request, edition_id: int, session: Staff) -> HTMLResponse:
    return _page(request, session, edition_id)


def _page(
    request: Request,
    session: StaffSession,
    edition_id: int,
    error: str | None = None,
    short: bool = False,
    status: int = 200,
) -> HTMLResponse:
    settings = settings_of(request)
    try:
        review = edition_review.review(settings, edition_id)
    except EditionError:
        return _not_found(request, session)
    width = request.query_params.get("width", "desktop")
    context: dict[str, Any] = {
        "r": review,
        "edition": review.edition,
        "width": width if width in WIDTHS else "desktop",
        "error": error,
        "short": short,
        "can_approve": _can_approve(review),
        "can_send": review.approval == "approved",
        "can_cancel": review.edition.state in ("queued", "sending"),
        "can_hold": review.edition.state in ("draft", "approved"),
        "can_test": review.kind == "newsletter"
        and review.problem is None
        and review.edition.state in ("draft", "approved", "held"),
    }
    return render(request, session, "edition.html.j2", context, status=status)


def _can_approve(review: edition_review.EditionReview) -> bool:
    return review.problem is None and (
        review.edition.state in ("draft", "held") or review.approval.startswith("approval void")
    )


def _not_found(request: Request, session: StaffSession) -> HTMLResponse:
    language = language_for(request, session)
    context = {"title": t(language, "ed.back"), "body": t(language, "error.not_found")}
    return render(request, session, "refused.html.j2", context, status=404)


@router.get("/editions/{edition_id}/html/{language}", response_class=HTMLResponse)
def edition_html(request: Request, edition_id: int, language: str, session: Staff) -> HTMLResponse:
    """The newsletter of one language for the preview frame: sandboxed by its own CSP as well."""
    try:
        html = edition_review.edition_html(settings_of(request), edition_id, language)
    except EditionError:
        return _not_found(request, session)
    response = HTMLResponse(html)
    response.headers["Content-Security-Policy"] = FRAME_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


# -- actions -----------------------------------------------------------------------------------------


def _back(edition_id: int) -> str:
    return f"/admin/editions/{edition_id}"


async def _act(request: Request, session: StaffSession, edition_id: int, action: Any, *args: Any) -> Response:
    """Run ``action(*args)`` in a worker thread; its done-key redirects back to the page, a service's
    refusal is shown on the page."""
    try:
        done = await run_in_threadpool(action, *args)
    except ShortEditionError as exc:
        return await run_in_threadpool(_refused, request, session, edition_id, exc, True)
    except ImkError as exc:
        return await run_in_threadpool(_refused, request, session, edition_id, exc, False)
    return redirect_done(_back(edition_id), done)


def _refused(
    request: Request, session: StaffSession, edition_id: int, exc: ImkError, short: bool
) -> HTMLResponse:
    language = language_for(request, session)
    message = t(language, "error.service", message=str(exc))
    return _page(request, session, edition_id, error=message, short=short, status=409)


@router.post("/editions/{edition_id}/approve", response_model=None)
async def approve(request: Request, edition_id: int, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    force = form.get("force") == "1"
    settings, now, by = settings_of(request), clock_of(request), session.user.name

    def run() -> str:
        _edition, released = schedule.approve_and_release(settings, edition_id, by, now, force=force)
        return "released" if released is not None else "approved"

    return await _act(request, session, edition_id, run)


@router.post("/editions/{edition_id}/send", response_model=None)
async def send(request: Request, edition_id: int, session: Staff) -> Response:
    form = await form_with_csrf(request, session)
    force = form.get("force") == "1"  # "send anyway": below min_items, after a person saw the refusal
    settings, now = settings_of(request), clock_of(request)

    def run() -> str:
        edition = compose.get_edition(settings, edition_id)
        report = dispatch.send(settings, edition.campaign, now, force=force, edition_id=edition_id)
        return "nothing" if report.already_queued else "queued"

    return await _act(request, session, edition_id, run)


@router.post("/editions/{edition_id}/cancel", response_model=None)
async def cancel(request: Request, edition_id: int, session: Staff) -> Response:
    await form_with_csrf(request, session)
    settings, now, by = settings_of(request), clock_of(request), session.user.name

    def run() -> str:
        editions_admin.cancel(settings, edition_id, by, now)
        return "cancelled"

    return await _act(request, session, edition_id, run)


@router.post("/editions/{edition_id}/hold", response_model=None)
async def hold(request: Request, edition_id: int, session: Staff) -> Response:
    await form_with_csrf(request, session)
    settings, now, by = settings_of(request), clock_of(request), session.user.name

    def run() -> str:
        editions_admin.hold(settings, edition_id, by, now)
        return "held"

    return await _act(request, session, edition_id, run)


@router.post("/editions/{edition_id}/test", response_model=None)
async def send_test(request: Request, edition_id: int, session: Staff) -> Response:
    await form_with_csrf(request, session)
    settings, now, email = settings_of(request), clock_of(request), session.user.email
    if not email:
        language = language_for(request, session)
        message = t(language, "ed.test_no_email")
        return await run_in_threadpool(_page, request, session, edition_id, message, False, 409)

    def run() -> str:
        edition = compose.get_edition(settings, edition_id)
        dispatch.send_test(settings, edition.campaign, email, now)
        return "test_sent"

    return await _act(request, session, edition_id, run)
