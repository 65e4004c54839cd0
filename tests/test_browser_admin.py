"""The staff web app in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the real app served by uvicorn on 127.0.0.1 (SQLite; mail to a local SMTP server): a new staff
member signs in, previews both languages, approves and queues an edition; a cross-site POST is
refused; a script in an item title (and a subscriber's name) runs on no admin page; anonymous visitors
are sent to the sign-in; password guessing is throttled; the UI language follows the browser, then the
user's choice. Every page a test visits is saved as a screenshot under artifacts/screenshots/admin/."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from imk_outreach.config import Settings
from imk_outreach.services import compose, staff, subscriber_staff
from imk_outreach.web.app import create_app
from tests.conftest import IN_CI, REPO, ConfigFactory
from tests.support.items import days_before, store_items
from tests.support.liveserver import Recorder, Seen, listening_socket, served
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import parse
from tests.test_browser_newsletter import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Frame, Page

pytestmark = pytest.mark.browser

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PASSWORD = "Kastanien-Allee 42"
XSS_TITLE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
XSS_NAME = '<img src=x onerror="window.__xss=3"> Eve'
ARTIFACTS = REPO / "artifacts" / "screenshots" / "admin"
# (address, language, name) of the confirmed subscribers: 3 German, 2 English
SUBSCRIBERS = [
    ("erika@example.org", "de", "Erika Mustermann"),
    ("max@example.org", "de", "Max Muster"),
    ("eve@example.org", "de", XSS_NAME),
    ("john@example.org", "en", "John Doe"),
    ("jane@example.org", "en", "Jane Roe"),
]
MONTHLY = """\
name: monthly
kind: newsletter
list: newsletter
languages: [de, en]
approval: required
min_items: 1
subject:
  de: "Der Blick nach vorne – {{ edition.date|month }}"
  en: "Looking ahead – {{ edition.date|month }}"
intro: {de: "Neues aus dem Cluster.", en: "News from the cluster."}
sections:
  - id: innovation
    heading: {de: Innovationsfelder, en: Innovation fields}
    select: {tags: [iot], max: 6}
"""


# -- the app, served -----------------------------------------------------------------------------------


@dataclass
class Site:
    url: str
    settings: Settings
    edition_id: int
    subscriber_id: int
    smtp: SmtpTestServer
    seen: list[Seen] = field(default_factory=list)  # the POSTs the app got


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The browser tests run on SQLite only (the pages' database work is tested on both elsewhere)."""
    return f"sqlite:///{tmp_path / 'browser.db'}"


@pytest.fixture
def site(make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Site]:
    """The real app on a free port of 127.0.0.1 (``public_url`` is that address), with 4 stored items and
    one whose title carries a script, 5 confirmed subscribers, a draft of the bilingual ``monthly``
    newsletter and the staff user ``anna`` (with an email address). The app's clock stands at NOW."""
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "monthly.yaml").write_text(MONTHLY, encoding="utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual"}],
        public_url=url,
        smtp={"host": smtp_server.host, "port": smtp_server.port, "timeout": 5},
        sender={"name": "Cluster IMK", "email": "news@cluster.example"},
        tagging={"iot": ["IoT"]},
    )
    store_items(settings, days_before(NOW, 4), NOW)
    store_items(settings, [NOW - timedelta(hours=2)], NOW, prefix="x", title=XSS_TITLE)
    added = [
        subscriber_staff.add(settings, email, name=name, language=language, now=NOW).subscriber
        for email, language, name in SUBSCRIBERS
    ]
    staff.add_user(settings, "anna", PASSWORD, email="anna@example.org", now=NOW)
    draft = compose.compose(settings, "monthly", NOW).edition
    assert draft is not None and draft.id is not None
    assert any(XSS_TITLE in item.title for item in draft.items)
    eve = next(s for s in added if s.email == "eve@example.org")
    assert eve.id is not None
    made = Site(url, settings, draft.id, eve.id, smtp_server)
    with served(Recorder(create_app(settings, clock=lambda: NOW), made.seen), sock):
        yield made


# -- the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"browser tests are required in CI: {CHROMIUM} not found (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} not found (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Visits:
    """Screenshots of every page a test visits (artifacts/screenshots/admin/<test>/NN-<label>.png) and
    what the browser's console said on them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.console: list[tuple[str, str, str]] = []  # (page URL, type, text)

    def watch(self, page: Page) -> Page:
        def note(message: ConsoleMessage) -> None:
            where = message.location.get("url", "") if message.location else ""
            self.console.append((page.url, message.type, f"{message.text} [{where}]"))

        page.on("console", note)
        page.on("pageerror", lambda error: self.console.append((page.url, "pageerror", str(error))))
        return page

    def shot(self, page: Page, label: str) -> None:
        """The whole page. With newsletter frames, they are loaded first and the window is made as
        tall as the page (a full-page capture leaves frames below the first screen blank)."""
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = str(self.folder / f"{self.count:02d}-{label}.png")
        if not loaded(page):
            page.screenshot(path=path, full_page=True)
            return
        viewport = page.viewport_size
        assert viewport is not None
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": viewport["width"], "height": height})
        page.screenshot(path=path)
        page.set_viewport_size(viewport)

    def errors(self) -> list[tuple[str, str, str]]:
        """Console errors but the favicon the browser asks for by itself (the app has none)."""
        return [
            entry
            for entry in self.console
            if entry[1] in ("error", "pageerror") and not entry[2].endswith("/favicon.ico]")
        ]


@pytest.fixture
def visits(request: pytest.FixtureRequest) -> Visits:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    return Visits(ARTIFACTS / name)


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """A fresh browser profile (cookies, locale) per call; all closed after the test."""
    made: list[BrowserContext] = []

    def factory(locale: str = "de-DE", **options: Any) -> BrowserContext:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, **options)
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield factory
    for context in made:
        context.close()


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def done_of(page: Page) -> str | None:
    return parse_qs(urlsplit(page.url).query).get("done", [None])[0]


def sign_in(page: Page, site: Site, name: str = "anna", password: str = PASSWORD) -> int:
    """Fill in the sign-in form (on the page it is on, else /admin/login) and send it; the HTTP status
    of the answer to the POST (303 when signed in)."""
    if path_of(page) != "/admin/login":
        page.goto(site.url + "/admin/login")
    page.fill("#username", name)
    page.fill("#password", password)
    with page.expect_response(lambda r: r.request.method == "POST" and "/admin/login" in r.url) as sent:
        page.locator("form[action='/admin/login'] button[type=submit]").click()
    page.wait_for_load_state("load")
    return sent.value.status


def loaded(page: Page, selector: str = "iframe") -> list[Frame]:
    """The frames of the iframes at ``selector``, loaded (they load lazily: scrolled into view first)."""
    frames = []
    for iframe in page.locator(selector).all():
        iframe.scroll_into_view_if_needed()
        handle = iframe.element_handle()
        frame = handle.content_frame() if handle is not None else None
        assert frame is not None, f"no frame in {selector}"
        source = iframe.get_attribute("src") or ""
        frame.wait_for_url(re.compile(re.escape(source) + "$"))
        frame.wait_for_load_state("load")
        frames.append(frame)
    return frames


def preview_frame(page: Page, language: str) -> Frame:
    """The newsletter frame of ``language``, loaded."""
    [frame] = loaded(page, f"#preview-{language} iframe")
    return frame


def frame_widths(page: Page) -> list[float]:
    boxes = [frame.bounding_box() for frame in page.locator("#preview iframe").all()]
    return [box["width"] for box in boxes if box is not None]


def edition_state(site: Site) -> tuple[str, str | None]:
    edition = compose.get_edition(site.settings, site.edition_id)
    return edition.state, edition.approved_by


# -- a new staff member's day ------------------------------------------------------------------------------


def test_a_new_staff_member_signs_in_previews_approves_and_queues_the_edition(
    site: Site, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    page = visits.watch(new_context("de-DE").new_page())
    page.goto(site.url + "/admin")
    assert path_of(page) == "/admin/login"
    visits.shot(page, "login")
    assert sign_in(page, site) == 303
    assert path_of(page) == "/admin"
    visits.shot(page, "dashboard")

    # the dashboard lists the draft, linked to its page
    link = page.locator("#awaiting").get_by_role("link", name=f"Ausgabe {site.edition_id}", exact=True)
    link.click()
    page.wait_for_load_state("load")
    assert path_of(page) == f"/admin/editions/{site.edition_id}"
    visits.shot(page, "edition")

    # both languages, each in its own frame, as the recipients will see them
    expected = {
        "de": ("Der Blick nach vorne", ["Innovationsfelder", "Neues aus dem Cluster."], "Innovation fields"),
        "en": ("Looking ahead", ["Innovation fields", "News from the cluster."], "Innovationsfelder"),
    }
    for language, (subject, texts, other) in expected.items():
        shown_subject = page.locator(f"#preview-{language} .subject").inner_text()
        assert subject in shown_subject
        frame = preview_frame(page, language)
        assert frame.title().startswith(subject)
        assert frame.evaluate("document.documentElement.lang") == language
        body = frame.inner_text("body")
        for text in texts:
            assert text in body, (language, text)
        assert other not in body
    visits.shot(page, "edition-frames")

    # the width toggle: desktop frames are wide, mobile ones phone-wide
    desktop = frame_widths(page)
    assert len(desktop) == 2 and min(desktop) > 600
    page.get_by_role("link", name="Mobil", exact=True).click()
    page.wait_for_load_state("load")
    assert parse_qs(urlsplit(page.url).query)["width"] == ["mobile"]
    mobile = frame_widths(page)
    assert len(mobile) == 2 and all(abs(width - 375) <= 2 for width in mobile), mobile
    assert "Innovationsfelder" in preview_frame(page, "de").inner_text("body")
    visits.shot(page, "edition-mobile")

    # approve: the signed-in user is recorded
    assert edition_state(site) == ("draft", None)
    page.get_by_role("button", name="Freigeben", exact=True).click()
    page.wait_for_load_state("load")
    assert done_of(page) == "approved"
    assert "Ausgabe freigegeben." in page.locator("p.notice.done").inner_text()
    assert "Freigegeben von anna" in page.locator("#status").inner_text()
    assert page.get_by_role("button", name="Freigeben", exact=True).count() == 0
    visits.shot(page, "approved")
    assert edition_state(site) == ("approved", "anna")

    # a test to oneself, one per language, through the SMTP server
    page.get_by_role("button", name="Test an mich senden", exact=True).click()
    page.wait_for_load_state("load")
    assert done_of(page) == "test_sent"
    visits.shot(page, "test-sent")
    tests = [parse(m) for m in site.smtp.messages if m.rcpt_tos == ("anna@example.org",)]
    subjects = sorted(str(message["Subject"]) for message in tests)
    assert len(subjects) == 2
    assert subjects[0].startswith("[Test] Der Blick nach vorne") and subjects[1].startswith("[Test] Looking")
    assert compose.list_editions(site.settings, "monthly") == [
        compose.get_edition(site.settings, site.edition_id)
    ]

    # queue it: the page shows the rows per state
    page.get_by_role("button", name="Senden", exact=True).click()
    page.wait_for_load_state("load")
    assert done_of(page) == "queued"
    visits.shot(page, "queued")
    counts = {}
    for row in page.locator("#delivery table").first.locator("tbody tr").all():
        state, count = row.locator("td").all_inner_texts()
        counts[state.strip()] = int(count)
    assert counts["eingereiht"] == len(SUBSCRIBERS)
    assert sum(counts.values()) == len(SUBSCRIBERS)
    assert "eingereiht" in page.locator("#status").inner_text()
    state, approved_by = edition_state(site)
    assert state == "queued" and approved_by == "anna"

    # and the dashboard shows the queue
    page.get_by_role("link", name="Zurück zur Übersicht").click()
    page.wait_for_load_state("load")
    visits.shot(page, "dashboard-queued")
    assert page.locator("#queue td.num").first.inner_text().strip() == str(len(SUBSCRIBERS))
    assert page.locator("#awaiting").get_by_role("link", name=f"Ausgabe {site.edition_id}").count() == 0
    assert visits.errors() == []


# -- a cross-site POST -------------------------------------------------------------------------------------


class _Attacker(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(site: Site) -> Iterator[int]:
    """Another web server (on another port of 127.0.0.1) whose page posts a form to the app's approve
    button by itself, without a CSRF token; the port it listens on."""
    target = f"{site.url}/admin/editions/{site.edition_id}/approve"
    page = (
        f'<!doctype html><title>Win a prize</title><form method="post" action="{target}">'
        '<input type="hidden" name="force" value="1"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    handler = type("Handler", (_Attacker,), {"page": page.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_cross_site_post_without_the_csrf_token_is_refused(
    site: Site, attacker: int, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    context = new_context("en-US")
    page = visits.watch(context.new_page())
    assert sign_in(page, site) == 303
    visits.shot(page, "signed-in")
    approve = f"/admin/editions/{site.edition_id}/approve"

    # another site (localhost is not 127.0.0.1): SameSite=Strict keeps the session cookie home, and the
    # foreign Origin is refused before any route runs
    for host, label, cookie_sent in (("localhost", "cross-site", False), ("127.0.0.1", "cross-origin", True)):
        before = len(site.seen)
        with page.expect_navigation(url=site.url + approve):
            page.goto(f"http://{host}:{attacker}/")
        page.wait_for_load_state("load")
        visits.shot(page, label)
        [post] = site.seen[before:]
        assert post.path == approve
        assert post.origin == f"http://{host}:{attacker}"
        assert post.with_session is cookie_sent, label  # same site, other port: the cookie goes along
        assert post.status == 403, label
        assert edition_state(site) == ("draft", None)

    # the session cookie without the form's token (no Origin either): the CSRF check refuses it
    forms: list[dict[str, str | float | bool]] = [{"force": "1"}, {"force": "1", "csrf_token": "forged"}]
    for form in forms:
        answer = context.request.post(site.url + approve, form=form, max_redirects=0)
        assert answer.status == 403, form
        assert site.seen[-1].with_session and site.seen[-1].origin is None
        assert edition_state(site) == ("draft", None)

    # the same request with the page's token is what the button sends: it does approve
    page.goto(f"{site.url}/admin/editions/{site.edition_id}")
    token = page.locator("form[action$='/approve'] input[name=csrf_token]").first.get_attribute("value")
    assert token
    answer = context.request.post(site.url + approve, form={"csrf_token": token}, max_redirects=0)
    assert answer.status == 303
    assert edition_state(site) == ("approved", "anna")


# -- untrusted text ----------------------------------------------------------------------------------------

NO_SCRIPT = "() => [typeof window.__xss, document.querySelectorAll('script, img[onerror]').length]"


def _no_script_ran(target: Page | Frame, where: str) -> None:
    assert target.evaluate(NO_SCRIPT) == ["undefined", 0], where


def test_a_script_in_an_item_title_runs_on_no_admin_page(
    site: Site, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    page = visits.watch(new_context("en-US").new_page())
    assert sign_in(page, site) == 303
    dashboard_title = XSS_TITLE[:40]  # the dashboard shows titles cut to 60 characters
    pages = [
        ("/admin", "dashboard", dashboard_title),
        ("/admin/items", "items", XSS_TITLE),
        ("/admin/items?text=script", "items-search", XSS_TITLE),
        (f"/admin/editions/{site.edition_id}", "edition", XSS_TITLE),
        (f"/admin/editions/{site.edition_id}?width=mobile", "edition-mobile", XSS_TITLE),
        ("/admin/campaigns", "campaigns", None),
        ("/admin/subscribers", "subscribers", XSS_NAME),
        (f"/admin/subscribers/{site.subscriber_id}", "subscriber", XSS_NAME),
    ]
    for path, label, text in pages:
        response = page.goto(site.url + path)
        assert response is not None and response.status == 200, path
        assert path_of(page) == urlsplit(path).path
        visits.shot(page, label)
        _no_script_ran(page, path)
        if text is not None:  # shown as text (the rendered text has it), not taken as markup
            assert text in page.inner_text("main"), (path, text)
        if path.startswith("/admin/editions/"):
            for language in ("de", "en"):
                frame = preview_frame(page, language)
                _no_script_ran(frame, f"{path} ({language} frame)")
                assert XSS_TITLE in frame.inner_text("body"), language
            visits.shot(page, f"{label}-frames")
    csp = [entry for entry in visits.console if "Content Security Policy" in entry[2]]
    assert csp == [], "the admin pages need something their CSP forbids"
    assert visits.errors() == []


# -- anonymous visitors ------------------------------------------------------------------------------------


def test_anonymous_requests_are_turned_away_to_the_sign_in(
    site: Site, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    routes = _admin_routes(site)
    gets = [path for method, path in routes if method == "GET"]
    posts = [path for method, path in routes if method == "POST"]
    assert {"/admin", f"/admin/editions/{site.edition_id}", "/admin/items", "/admin/subscribers"} <= set(gets)
    assert f"/admin/editions/{site.edition_id}/approve" in posts
    context = new_context("de-DE")
    page = visits.watch(context.new_page())
    for path in [*gets, "/admin/", "/admin/no/such/page"]:  # the dashboard's two spellings, an unknown page
        page.goto(site.url + path)
        assert path_of(page) == "/admin/login", path
        if path not in ("/admin", "/admin/", "/admin/no/such/page"):
            assert parse_qs(urlsplit(page.url).query)["next"] == [path], path
        assert page.locator("#username").is_visible()
        visits.shot(
            page, re.sub(r"[^a-z0-9]+", "-", path.strip("/")) + ("-slash" if path.endswith("/") else "")
        )
    for path in posts:
        answer = context.request.post(site.url + path, form={"csrf_token": "x"}, max_redirects=0)
        assert answer.status == 303, path
        assert urlsplit(answer.headers["location"]).path == "/admin/login", path
    assert edition_state(site) == ("draft", None)

    # signing in from where one was sent leads back to that page
    page.goto(f"{site.url}/admin/items")
    assert sign_in(page, site) == 303
    assert path_of(page) == "/admin/items"
    visits.shot(page, "items-after-sign-in")


def _admin_routes(site: Site) -> list[tuple[str, str]]:
    """(method, path) of every route under /admin but the sign-in (from the app's route list), its
    parameters filled with stored things: the draft, the subscriber, the campaign, an item."""
    values = {
        "edition_id": str(site.edition_id),
        "subscriber_id": str(site.subscriber_id),
        "name": "monthly",
        "item_id": "x1",
        "language": "de",
    }
    found: list[tuple[str, str]] = []
    for path, methods in create_app(site.settings).openapi()["paths"].items():
        if (path == "/admin" or path.startswith("/admin/")) and path != "/admin/login":
            filled = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)
            found.extend((method.upper(), filled) for method in sorted(methods))
    return found


# -- password guessing -------------------------------------------------------------------------------------


def test_password_guessing_through_the_form_is_throttled(
    site: Site, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    page = visits.watch(new_context("en-US").new_page())
    page.goto(site.url + "/admin/login")
    for attempt in range(1, 11):
        assert sign_in(page, site, password=f"not the password {attempt}") == 401, attempt
        assert "Sign-in failed" in page.locator("p.notice.error").inner_text()
        if attempt in (1, 10):
            visits.shot(page, f"wrong-{attempt}")
    # the 11th, even with the right password
    assert sign_in(page, site) == 429
    visits.shot(page, "throttled")
    assert path_of(page) == "/admin/login"
    assert page.locator("#password").is_visible()
    assert "Sign-in failed" not in page.locator("p.notice.error").inner_text()
    page.goto(site.url + "/admin")
    assert path_of(page) == "/admin/login"  # not signed in
    assert [s.status for s in site.seen if s.path == "/admin/login"] == [401] * 10 + [429]


# -- the UI language ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "labels", "other"),
    [
        ("de-DE", ["Anmelden", "Benutzername", "Passwort"], "User name"),
        ("en-US", ["Sign in", "User name", "Password"], "Benutzername"),
    ],
    ids=["de-DE", "en-US"],
)
def test_the_sign_in_page_speaks_the_browsers_language(
    site: Site,
    new_context: Callable[..., BrowserContext],
    visits: Visits,
    locale: str,
    labels: list[str],
    other: str,
) -> None:
    page = visits.watch(new_context(locale).new_page())
    page.goto(site.url + "/admin")
    visits.shot(page, f"login-{locale}")
    assert page.evaluate("document.documentElement.lang") == locale[:2]
    assert page.locator("h1").inner_text() == labels[0]
    assert page.locator("label[for=username]").inner_text() == labels[1]
    assert page.locator("label[for=password]").inner_text() == labels[2]
    assert page.locator("form[action='/admin/login'] button").inner_text() == labels[0]
    assert other not in page.locator("body").inner_text()


def test_a_language_chosen_after_sign_in_sticks(
    site: Site, new_context: Callable[..., BrowserContext], visits: Visits
) -> None:
    staff.add_user(site.settings, "ben", PASSWORD, language="en", now=NOW)
    page = visits.watch(new_context("de-DE").new_page())
    assert sign_in(page, site, "ben") == 303
    visits.shot(page, "dashboard-en")
    assert page.locator("h1").inner_text() == "Dashboard"  # his stored choice beats the browser's

    page.select_option("#language-choice", "de")
    page.get_by_role("button", name="Choose language").click()
    page.wait_for_load_state("load")
    assert done_of(page) == "language"
    visits.shot(page, "dashboard-de")
    assert page.locator("h1").inner_text() == "Übersicht"
    assert "Sprache gespeichert." in page.locator("p.notice.done").inner_text()
    page.get_by_role("link", name="Beiträge", exact=True).click()
    page.wait_for_load_state("load")
    visits.shot(page, "items-de")
    assert page.locator("h1").inner_text() == "Beiträge"
    assert next(u for u in staff.list_users(site.settings) if u.name == "ben").language == "de"

    # signed out, and in again from a browser that asks for English: still German
    page.get_by_role("button", name="Abmelden", exact=True).click()
    page.wait_for_load_state("load")
    assert path_of(page) == "/admin/login"
    other = visits.watch(new_context("en-US").new_page())
    other.goto(site.url + "/admin/login")
    assert other.locator("h1").inner_text() == "Sign in"
    assert sign_in(other, site, "ben") == 303
    visits.shot(other, "dashboard-again")
    assert other.locator("h1").inner_text() == "Übersicht"
    other.goto(f"{site.url}/admin/editions/{site.edition_id}")
    visits.shot(other, "edition-de")
    assert other.get_by_role("button", name="Freigeben", exact=True).is_visible()
    assert visits.errors() == []
