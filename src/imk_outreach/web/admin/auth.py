"""Sign-in, sign-out and the language choice of the staff app.

* ``GET /admin/login`` shows the form (fields ``username``, ``password``) with a CSRF token: a random
  value in the ``imk_admin_csrf`` cookie and its HMAC in the form (a signed double-submit cookie:
  another site can neither read nor set it). Already signed in, it goes straight to ``next``.
* ``POST /admin/login``: a wrong name or password shows the form again with one neutral message
  (401); a client with too many failures lately gets 429 with ``Retry-After``; success starts a
  server-side session (cookie ``imk_admin``: HttpOnly, SameSite=Strict, Path=/admin, Secure when
  ``public_url`` is https) and goes to ``next`` when that is an /admin path, else to the dashboard.
* ``POST /admin/logout`` ends the session; ``POST /admin/language`` stores the user's language.
"""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imk_outreach.services import staff as staff_service
from imk_outreach.services.staff import LoginThrottled, StaffSession, StaffUser
from imk_outreach.web.admin import common
from imk_outreach.web.admin.common import (
    COOKIE,
    COOKIE_PATH,
    CSRF_COOKIE,
    clock_of,
    form_with_csrf,
    redirect_done,
    render,
    safe_next,
    settings_of,
    staff,
)

router = APIRouter()

Staff = Annotated[StaffSession, Depends(staff)]


def login_redirect(next_path: str) -> RedirectResponse:
    """303 to the sign-in page, which leads back to ``next_path`` afterwards."""
    target = safe_next(next_path)
    query = "" if target == "/admin" else "?" + urlencode({"next": target})
    return RedirectResponse(f"/admin/login{query}", status_code=303)


def _secure(request: Request) -> bool:
    return settings_of(request).public_url.lower().startswith("https://")


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def _login_page(
    request: Request, next_path: str, message: str | None, status: int, username: str = ""
) -> HTMLResponse:
    """The form, with a fresh pre-sign-in CSRF cookie and its token."""
    cookie = common.login_cookie(request)
    context = {
        "next": safe_next(next_path),
        "message": message,
        "username": username,
        "login_csrf": common.login_csrf_token(request, cookie),
    }
    response = render(request, None, "login.html.j2", context, status=status)
    _set_cookie(request, response, CSRF_COOKIE, cookie)
    return response


async def _signed_in(request: Request) -> StaffSession | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    settings, now = settings_of(request), clock_of(request)
    return await run_in_threadpool(staff_service.session_for, settings, token, now)


@router.get("/login", response_model=None)
async def login_form(request: Request) -> Response:
    next_path = request.query_params.get("next", "/admin")
    if await _signed_in(request) is not None:
        return RedirectResponse(safe_next(next_path), status_code=303)
    return await run_in_threadpool(_login_page, request, next_path, None, 200)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    form = await form_with_csrf(request, None)
    username, password = form.get("username", ""), form.get("password", "")
    next_path = form.get("next", "/admin")
    settings, now = settings_of(request), clock_of(request)
    client = request.client.host if request.client else ""
    try:
        user = await run_in_threadpool(staff_service.authenticate, settings, username, password, client, now)
    except LoginThrottled as exc:
        return await run_in_threadpool(_throttled, request, next_path, exc.retry_after, username)
    if user is None:
        return await run_in_threadpool(_failed, request, next_path, username)
    return await run_in_threadpool(_start, request, user, next_path)


def _failed(request: Request, next_path: str, username: str) -> HTMLResponse:
    language = common.language_for(request, None)
    return _login_page(request, next_path, common.t(language, "login.failed"), 401, username)


def _throttled(request: Request, next_path: str, retry_after: int, username: str) -> HTMLResponse:
    language = common.language_for(request, None)
    minutes = max(1, math.ceil(retry_after / 60))
    message = common.t(language, "login.throttled", minutes=minutes)
    response = _login_page(request, next_path, message, 429, username)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _start(request: Request, user: StaffUser, next_path: str) -> RedirectResponse:
    session = staff_service.start_session(settings_of(request), user, clock_of(request))
    response = RedirectResponse(safe_next(next_path), status_code=303)
    _set_cookie(request, response, COOKIE, session.token)
    response.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH, secure=_secure(request), httponly=True)
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request, session: Staff) -> Response:
    await form_with_csrf(request, session)
    await run_in_threadpool(staff_service.end_session, settings_of(request), session.token)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=_secure(request), httponly=True)
    return response


@router.post("/language", response_model=None)
async def choose_language(request: Request, session: Staff) -> Response:
    """Store the chosen language (one of the app's languages; another is ignored) and go back."""
    form = await form_with_csrf(request, session)
    language = form.get("language", "")
    back = form.get("next", "/admin")
    if language not in staff_service.LANGUAGES:
        return redirect_done(back, "nothing")
    await run_in_threadpool(staff_service.set_language, settings_of(request), session.user.id, language)
    return redirect_done(back, "language")
