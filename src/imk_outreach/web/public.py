"""The public pages: subscribe, confirm, preferences, unsubscribe (RFC 8058 one-click included).

Language of a page: ``?lang=``, else the subscriber's language (pages reached by a link), else the
browser's ``Accept-Language``, else the first configured language. GET never changes anything (link
scanners in mail systems open every link); every change is a POST.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse

from imk_outreach.config import Settings
from imk_outreach.models import Subscriber
from imk_outreach.services import pages, subscriptions, throttle
from imk_outreach.services.subscriptions import InputError, Mailer

log = logging.getLogger(__name__)

router = APIRouter()

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"  # RFC 8058, application/x-www-form-urlencoded


@dataclass(frozen=True)
class Public:
    """What the public pages need, set by ``create_app``."""

    settings: Settings
    mailer: Mailer | None
    clock: Callable[[], datetime]


def state_of(request: Request) -> Public:
    return cast(Public, request.app.state.public)


# -- language ----------------------------------------------------------------------------------------


def accepted_languages(header: str) -> list[str]:
    """Primary language subtags of an ``Accept-Language`` header, most wanted first (q=0 left out)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and primary != "*" and quality > 0:
            ranked.append((-quality, position, primary))
    return [primary for _, _, primary in sorted(ranked)]


def language_for(request: Request, settings: Settings, *preferred: str | None) -> str:
    """``?lang=``, then ``preferred`` (e.g. the subscriber's language), then Accept-Language."""
    browser = accepted_languages(request.headers.get("accept-language", ""))
    return pages.pick_language(settings, [request.query_params.get("lang"), *preferred, *browser])


# -- helpers -----------------------------------------------------------------------------------------


def _page(state: Public, page: str, language: str, code: int = 200, **context: Any) -> HTMLResponse:
    """``code`` is the HTTP status (``status`` is a page variable: the subscriber's status)."""
    return HTMLResponse(pages.render_page(state.settings, page, language, context), status_code=code)


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


# -- subscribe -----------------------------------------------------------------------------------------


@router.get("/subscribe", name="subscribe_form")
def subscribe_form(request: Request) -> HTMLResponse:
    state = state_of(request)
    language = language_for(request, state.settings)
    first_list = next(iter(state.settings.lists))
    return _subscribe_page(state, language, {"email": "", "name": ""}, language, [first_list], None)


def _subscribe_page(
    state: Public,
    language: str,
    form: dict[str, str],
    chosen_language: str,
    chosen_lists: Sequence[str],
    error: str | None,
) -> HTMLResponse:
    return _page(
        state,
        "subscribe",
        language,
        400 if error else 200,
        form=form,
        chosen_language=chosen_language,
        chosen_lists=list(chosen_lists),
        error=error,
        switch_language=True,
    )


@router.post("/subscribe")
async def subscribe(
    request: Request,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    lists: Annotated[list[str] | None, Form()] = None,
    website: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A sign-up. Whatever the address's state, the answer is the same page after the same time (at
    least ``signup.answer_time``), unless this client or everyone is over a limit (429)."""
    state = state_of(request)
    page_language = language_for(request, state.settings, language)
    if website.strip():  # the honeypot: people do not see this field, form-filling bots do
        log.info("sign-up ignored: honeypot field filled")
        return _page(state, "message", page_language, kind="check_inbox")
    started = time.monotonic()
    try:
        outcome = await run_in_threadpool(
            subscriptions.subscribe,
            state.settings,
            email,
            name,
            language,
            lists or [],
            _client_ip(request),
            subscriptions.SOURCE_WEB,
            state.clock(),
        )
    except InputError as exc:
        form = {"email": email, "name": name}
        return _subscribe_page(state, page_language, form, page_language, lists or [], exc.field)
    wait = throttle.retry_after(state.settings, outcome)
    if wait is not None:  # this client or everyone signed up too often: nothing about the address
        busy = _page(state, "message", page_language, 429, kind="unavailable")
        busy.headers["Retry-After"] = str(int(wait.total_seconds()))
        return busy
    # the same page whether the mail was queued, was not owed, or the mailbox had enough for today,
    # and at the same time: the work for a new address takes longer than for a confirmed one
    await asyncio.sleep(max(0.0, state.settings.signup.answer_time - (time.monotonic() - started)))
    return _page(state, "message", page_language, kind="check_inbox")


# -- confirm ---------------------------------------------------------------------------------------


@router.get("/confirm/{token}")
def confirm_form(request: Request, token: str) -> HTMLResponse:
    state = state_of(request)
    subscriber = subscriptions.subscriber_for(state.settings, "confirm", token, state.clock())
    language = language_for(request, state.settings, subscriber.language)
    return _page(
        state,
        "confirm",
        language,
        email=subscriber.email,
        lists=subscriptions.labels_of(state.settings, language, subscriber.lists),
        confirmed=subscriber.status == "confirmed",
        switch_language=True,
    )


@router.post("/confirm/{token}")
def confirm(request: Request, token: str) -> HTMLResponse:
    state = state_of(request)
    subscriber = subscriptions.confirm(state.settings, token, state.clock())
    language = language_for(request, state.settings, subscriber.language)
    links = subscriptions.links_for(state.settings, subscriber)
    return _page(state, "message", language, kind="confirmed", preferences_url=links.preferences_url)


# -- preferences -------------------------------------------------------------------------------------


@router.get("/preferences/{token}")
def preferences_form(request: Request, token: str) -> HTMLResponse:
    state = state_of(request)
    subscriber = subscriptions.subscriber_for(state.settings, "preferences", token, state.clock())
    language = language_for(request, state.settings, subscriber.language)
    return _preferences_page(state, language, subscriber, subscriber.language, subscriber.lists)


def _preferences_page(
    state: Public,
    language: str,
    subscriber: Subscriber,
    chosen_language: str,
    chosen_lists: Sequence[str],
    saved: bool = False,
    error: str | None = None,
) -> HTMLResponse:
    return _page(
        state,
        "preferences",
        language,
        400 if error else 200,
        email=subscriber.email,
        status=subscriber.status,
        chosen_language=chosen_language,
        chosen_lists=list(chosen_lists),
        saved=saved,
        error=error,
        unsubscribe_url=subscriptions.links_for(state.settings, subscriber).unsubscribe_url,
        switch_language=True,
    )


@router.post("/preferences/{token}")
def preferences(
    request: Request,
    token: str,
    language: Annotated[str, Form()] = "",
    lists: Annotated[list[str] | None, Form()] = None,
) -> HTMLResponse:
    state = state_of(request)
    try:
        saved = subscriptions.update_preferences(state.settings, token, language, lists or [], state.clock())
    except InputError as exc:
        subscriber = subscriptions.subscriber_for(state.settings, "preferences", token, state.clock())
        page_language = language_for(request, state.settings, subscriber.language)
        return _preferences_page(state, page_language, subscriber, language, lists or [], error=exc.field)
    page_language = language_for(request, state.settings, saved.language)
    return _preferences_page(state, page_language, saved, saved.language, saved.lists, saved=True)


# -- unsubscribe -----------------------------------------------------------------------------------


@router.get("/unsubscribe/{token}")
def unsubscribe_form(request: Request, token: str) -> HTMLResponse:
    state = state_of(request)
    subscriber = subscriptions.subscriber_for(state.settings, "unsubscribe", token, state.clock())
    language = language_for(request, state.settings, subscriber.language)
    return _page(state, "unsubscribe", language, email=subscriber.email, done=False, switch_language=True)


@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    """A form POST from the page, or an RFC 8058 one-click POST from a mail client. The one-click
    answer is a short text: no page, no cookie, no redirect."""
    state = state_of(request)
    one_click = await _is_one_click(request)
    subscriber = await run_in_threadpool(subscriptions.unsubscribe, state.settings, token, state.clock())
    if one_click:
        return PlainTextResponse("Unsubscribed.\n")
    language = language_for(request, state.settings, subscriber.language)
    return await run_in_threadpool(_page, state, "unsubscribe", language, email=subscriber.email, done=True)


async def _is_one_click(request: Request) -> bool:
    """RFC 8058: ``List-Unsubscribe=One-Click`` form-encoded (exactly that body) or as the one field of
    a multipart/form-data body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        return form.get("List-Unsubscribe") == "One-Click"
    return await request.body() == ONE_CLICK_BODY
