"""HTTP hygiene of the web app: pure ASGI middlewares, the neutral error pages, HEAD, and an access log
without secrets. :func:`install` puts it all on an app; ``create_app`` calls it last.

The middlewares, outermost first (each is a plain ASGI callable, so nothing is buffered but what
:class:`RequestBody` reads on purpose):

* :class:`SecurityHeaders`: :data:`SECURITY_HEADERS` on every answer a route, a handler or another
  middleware gives (a 500 is sent by Starlette outside the middlewares, so its handler adds them
  itself); and HEAD: FastAPI routes answer only the methods they name (a GET route's HEAD is 405), so
  a HEAD request goes to the app as GET and its answer is sent without the body.
* :class:`TrustedHost`: 400 for a ``Host`` that is neither ``public_url``'s host nor a local name. A
  local name is a loopback address, ``localhost`` or a single DNS label (a reverse proxy's default
  ``proxy_pass http://127.0.0.1:8000`` or a container's service name ``web:8000`` sends these); none
  of them can point a visitor's browser at someone else's site. No URL is built from ``Host`` anyway:
  links and redirects come from ``public_url``.
* :class:`SameOriginSignup`: 403 for a POST to ``/subscribe`` from another site (``Origin`` not
  ``public_url``'s origin, ``Origin: null``, or ``Sec-Fetch-Site`` other than ``same-origin``/
  ``none``). Without either header (curl, old browsers) it passes. The pages reached by a link are
  not guarded: their token is the secret another site lacks, and RFC 8058 one-click unsubscribes come
  from mail clients and webmail with a foreign or no ``Origin``.
* :class:`RequestBody`: a body over :data:`MAX_BODY` is 413 before any route runs: at once when
  ``Content-Length`` announces it, else as soon as the counted chunks pass the limit; the rest is never
  read (the answer closes the connection). A form body that is not UTF-8 is 400. The body read (at most
  ``MAX_BODY``) is handed on to the app.

Error pages: an unknown page is the same neutral 404 as an invalid link; a wrong method (405), a form
the routes cannot read (400, 422) and the refusals above are the ``bad_request`` message page; an
unexpected exception is the ``error`` page with status 500. All in the visitor's language, never JSON.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imk_outreach.config import Settings
from imk_outreach.services import pages
from imk_outreach.web import public

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes; the sign-up form is under 2 KiB even with a 200-character name
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    # "same-origin", not "no-referrer": with "no-referrer" browsers send "Origin: null" with the
    # page's own form, indistinguishable from a sandboxed foreign frame. Other sites get nothing.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
        "payment=(), usb=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SIGNUP_PATHS = frozenset({"/subscribe"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def install(app: FastAPI, settings: Settings) -> None:
    """The middlewares and error handlers of this module, on ``app``."""
    app.add_middleware(RequestBody)
    app.add_middleware(SameOriginSignup, public_url=settings.public_url)
    app.add_middleware(TrustedHost, public_url=settings.public_url)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _unreadable_form)
    app.add_exception_handler(Exception, _unexpected)


# -- the neutral page --------------------------------------------------------------------------------


def neutral_page(
    request: Request, kind: str, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """The message page ``kind`` in the language the request asks for (never the subscriber's: the
    same request gets the same body whatever the cause), with the security headers."""
    state = public.state_of(request)
    language = public.language_for(request, state.settings)
    all_headers = {**SECURITY_HEADERS, **(headers or {})}
    try:
        html = pages.render_page(state.settings, "message", language, {"kind": kind})
    except Exception:  # noqa: BLE001 - the page itself may be what is broken; answer anyway
        log.exception("message page %s cannot be rendered", kind)
        return PlainTextResponse(f"{status}\n", status_code=status, headers=all_headers)
    return HTMLResponse(html, status_code=status, headers=all_headers)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
    """Answer ``status`` with the ``bad_request`` page and close the connection: a body the client may
    still be sending is not read."""
    log.info("%s /%s refused with %d: %s", scope["method"], _page_of(scope["path"]), status, reason)
    response = neutral_page(Request(scope), "bad_request", status, {"Connection": "close"})
    await response(scope, receive, send)


def _page_of(path: str) -> str:
    """The first path segment, printable and short: logs name the page, never a token."""
    first = path.lstrip("/").split("/", 1)[0]
    return "".join(c if c.isprintable() else "?" for c in first)[:40]


# -- error handlers ----------------------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return neutral_page(request, "invalid_link", 404)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names the methods of the first route of the path only
        headers["Allow"] = ", ".join(_methods_of(request.app, request.scope))
    return neutral_page(request, "bad_request", exc.status_code, headers)


def _methods_of(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers for the request's path, HEAD with GET (RFC 9110 15.5.6)."""
    methods = {
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in app.router.routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _unreadable_form(request: Request, exc: Exception) -> Response:
    return neutral_page(request, "bad_request", 422)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Starlette sends this answer outside the middlewares and then raises ``exc`` to the server,
    which logs it; so only the page here, with the headers the middleware would have added."""
    return neutral_page(request, "error", 500)


# -- middlewares -------------------------------------------------------------------------------------


class SecurityHeaders:
    """:data:`SECURITY_HEADERS` on every answer (those an answer sets itself win); HEAD as GET without
    the body (the server still knows the request was HEAD: uvicorn logs it so and sends no body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_hygienic(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            elif message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_hygienic)


class TrustedHost:
    """400 for a ``Host`` header that names another site (see the module docstring)."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        parts = urlsplit(public_url)
        self.host = (parts.hostname or "").rstrip(".")
        self.port = parts.port or _DEFAULT_PORTS.get(parts.scheme)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
            if len(hosts) > 1 or (hosts and not self.allowed(hosts[0])):
                await _refuse(scope, receive, send, 400, "the Host header names another site")
                return
        await self.app(scope, receive, send)

    def allowed(self, host: str) -> bool:
        """Whether ``host`` (a Host header: name and optional port) is this site or a local name."""
        try:
            parts = urlsplit(f"//{host}")
            name, port = (parts.hostname or "").rstrip("."), parts.port
        except ValueError:  # a port that is not a number, a bracket not closed
            return False
        if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
            return False
        if name == self.host:
            return port is None or port == self.port
        single_label = _LABEL.fullmatch(name) is not None and not name.isdigit()
        return name in LOOPBACK_NAMES or single_label


class SameOriginSignup:
    """403 for a sign-up POST sent by another site (see the module docstring)."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        parts = urlsplit(public_url)
        host = parts.hostname or ""
        port = parts.port if parts.port not in (None, _DEFAULT_PORTS.get(parts.scheme)) else None
        self.origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in SIGNUP_PATHS:
            if self.cross_site(Headers(scope=scope)):
                await _refuse(scope, receive, send, 403, "a sign-up sent from another site")
                return
        await self.app(scope, receive, send)

    def cross_site(self, headers: Headers) -> bool:
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return True
        origin = headers.get("origin")
        return origin is not None and origin.strip().rstrip("/").lower() != self.origin


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


class RequestBody:
    """Reads the body (at most ``limit`` bytes) before the app runs: 413 beyond, 400 for a form that is
    not UTF-8; hands the body on. A urlencoded form with raw (not percent-encoded) UTF-8 bytes, as
    ``curl -d`` sends it, has them percent-encoded first: Starlette would read them as Latin-1."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        if declared is not None and not declared.strip().isdigit():
            await _refuse(scope, receive, send, 400, "a Content-Length that is not a number")
            return
        if declared is not None and int(declared) > self.limit:
            await _refuse(scope, receive, send, 413, f"a body of {int(declared)} bytes announced")
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await _refuse(scope, receive, send, 413, f"a body of more than {self.limit} bytes sent")
            return
        except _Gone:
            return
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not _is_utf8_form(kind, body):
            await _refuse(scope, receive, send, 400, "form data that is not UTF-8")
            return
        if kind == "application/x-www-form-urlencoded" and _NON_ASCII.search(body):
            body = _NON_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], body)
            scope = _with_length(scope, len(body))
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        """:raises _TooLarge: past ``limit`` (the rest is left unread). :raises _Gone: the client left."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            body += message.get("body", b"")
            if len(body) > self.limit:
                raise _TooLarge
            if not message.get("more_body", False):
                return bytes(body)


def _is_utf8_form(kind: str, body: bytes) -> bool:
    """Whether a form body decodes as UTF-8: a urlencoded one after percent-decoding (the separators
    are ASCII, so the whole body decodes exactly when every field does), a multipart one as a whole
    (no route takes a file)."""
    if kind == "application/x-www-form-urlencoded":
        body = unquote_to_bytes(body)
    elif kind != "multipart/form-data":
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _with_length(scope: Scope, length: int) -> Scope:
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives ``body`` once, then what the server gives (the disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


# -- the access log ----------------------------------------------------------------------------------


class RedactedAccessLog(logging.Filter):
    """For uvicorn's access log: no client address, and a path cut to its first segment (``/confirm/
    …``, ``/subscribe?…``): the rest of a path and the query may hold a token or an address."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:  # uvicorn's: client, method, path, ...
            _client, method, path, version, status = record.args
            record.args = ("-", method, redacted_path(str(path)), version, status)
        return True


def redacted_path(path: str) -> str:
    """``/confirm/<token>?lang=de`` -> ``/confirm/…?…``; ``/`` and ``/subscribe`` stay."""
    page, question, _query = path.partition("?")
    first, slash, _rest = page.lstrip("/").partition("/")
    return "/" + _page_of(first) + ("/…" if slash else "") + ("?…" if question else "")


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging config with :class:`RedactedAccessLog` on its access log; pass it as
    ``log_config`` wherever uvicorn is started."""
    from uvicorn.config import LOGGING_CONFIG  # the server, only where one is started

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redacted"] = {"()": RedactedAccessLog}
    config["loggers"]["uvicorn.access"]["filters"] = ["redacted"]
    return config
