"""The staff web app under ``/admin``: sign-in, dashboard, editions (and the pages of campaigns,
items and subscribers). :func:`install` puts it on the app; ``create_app`` calls it.

Every page but ``/admin/login`` and ``/admin/static`` needs a session (:func:`common.staff`); without
one it answers 303 to the sign-in page. Every POST checks the CSRF token (:func:`common.form_with_csrf`)
and answers 403 without a valid one; a POST from another site (a foreign ``Origin``) is refused by
:class:`SameOriginAdmin` before it reaches a route. Pages send :data:`common.ADMIN_CSP`, no script.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from imk_outreach.config import Settings
from imk_outreach.services import rendering
from imk_outreach.web import hygiene
from imk_outreach.web.admin import auth, campaigns, common, dashboard, editions, items, subscribers
from imk_outreach.web.admin.common import Admin, CsrfRefused, LoginRequired

__all__ = ["install", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/admin")
router.add_api_route("", dashboard.dashboard, methods=["GET"], response_class=HTMLResponse)
router.include_router(auth.router)
router.include_router(dashboard.router)
router.include_router(editions.router)
router.include_router(campaigns.router)
router.include_router(items.router)
router.include_router(subscribers.router)

STATIC_CSS = "admin/static/admin.css"


def install(app: FastAPI, settings: Settings) -> None:
    """The staff pages, their static files, the sign-in redirect, the CSRF refusal and the
    same-origin check of admin POSTs, on ``app`` (after ``app.state.public`` is set)."""
    app.state.admin = Admin(settings, app.state.public.clock)
    app.include_router(router)
    app.mount("/admin/static", StaticFiles(directory=static_dir(settings)), name="admin_static")
    # after the pages and the static files: any other /admin path needs a session too, then is 404
    app.add_api_route(
        "/admin/{rest:path}",
        _unknown,
        methods=["GET", "POST"],
        dependencies=[Depends(common.staff)],
        include_in_schema=False,
    )
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_middleware(SameOriginAdmin, public_url=settings.public_url)


def static_dir(settings: Settings) -> Path:
    """The folder of ``admin.css``: found through the template environment, so a staff templates
    folder may override it like any shipped template."""
    env = rendering.template_env(settings)
    source = env.loader.get_source(env, STATIC_CSS)[1] if env.loader else None
    if source is None:
        raise RuntimeError(f"{STATIC_CSS} is not among the templates")
    return Path(source).parent


async def _unknown(rest: str) -> Response:
    raise HTTPException(404)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return auth.login_redirect(exc.next_path)


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return common.render(request, None, "refused.html.j2", {}, status=403)


class SameOriginAdmin(hygiene.SameOriginSignup):
    """403 for a POST under ``/admin`` sent by another site (a foreign ``Origin`` or a cross-site
    ``Sec-Fetch-Site``), before any route runs; the CSRF token is checked in the route as well."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        super().__init__(app, public_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] == "http" and scope["method"] == "POST" and _is_admin(path):
            if self.cross_site(Headers(scope=scope)):
                log.info("POST /admin refused with 403: an admin form sent from another site")
                request = Request(scope)
                language = common.language_for(request, None)
                address = common.settings_of(request).public_url.rstrip("/") + "/admin"
                context = {
                    "title": common.t(language, "origin.title"),
                    "body": common.t(language, "origin.body", address=address),
                }
                page = common.render(request, None, "refused.html.j2", context, status=403)
                page.headers["Connection"] = "close"
                await page(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")
