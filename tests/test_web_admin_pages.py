"""The campaigns, items and subscribers pages of the staff app through an in-process httpx client, on
SQLite and PostgreSQL: anonymous requests are sent to sign in, pages render with data (a script in a
title stays text), every POST without the CSRF token is refused and changes nothing, items are
excluded and added by hand, the subscriber CSV export matches the CLI's, and erasure needs the
address typed again."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import html as lxml_html

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import NewsItem, Translation
from imk_outreach.services import compose, consent, items_admin, staff, subscriptions
from imk_outreach.services.database import engine_for
from imk_outreach.web.admin import campaigns as admin_campaigns
from imk_outreach.web.admin import i18n
from imk_outreach.web.admin import items as admin_items
from imk_outreach.web.admin import subscribers as admin_subscribers
from imk_outreach.web.app import create_app
from tests.conftest import REPO
from tests.support.subscribers import LISTS, PUBLIC_URL, WebClient, run_cli

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SCRIPT_TITLE = '<script>alert("x")</script> Drehstart'
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
approval: required
min_items: 3
schedule: {cron: "0 9 * * MON"}
subject: {de: "Digest", en: "Digest"}
intro: {de: "Hallo.", en: "Hello."}
sections:
  - {id: all, heading: {de: Alles, en: All}, select: {since: 30d}}
"""


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> Settings:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN, "utf-8")
    (tmp_path / "campaigns" / "broken.yaml").write_text("name: [unclosed\n", "utf-8")
    (tmp_path / "desk").mkdir()
    made: Settings = make_settings(
        [
            {"name": "feed", "type": "rss", "url": "https://example.org/feed.xml"},
            {"name": "news-desk", "type": "manual", "url": "desk", "language": "de"},
        ],
        lists=LISTS,
        public_url=PUBLIC_URL,
        sender={"name": "Cluster IMK", "email": "newsletter@example.org"},
        smtp={"host": "127.0.0.1", "port": 9, "timeout": 5},
        consent_version="2026-11",
    )
    return made


def _items(settings: Settings) -> None:
    batch = [
        NewsItem(
            id=f"item{n}",
            url=f"https://example.org/news/{n}",
            source="feed",
            title=SCRIPT_TITLE if n == 1 else f"Meldung {n}",
            summary_html="<p>Text</p>",
            published_at=NOW - timedelta(days=n),
            language="de",
            tags=("film",) if n == 1 else ("iot",),
            translations={"en": Translation(f"News {n}", "")},
        )
        for n in range(1, 4)
    ]
    with engine_for(settings).begin() as conn:
        store.upsert_items(conn, "feed", batch, NOW)


class Desk:
    """The app with a signed-in staff member (the ``imk_admin`` cookie of a real session)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.web = WebClient(create_app(settings, clock=lambda: NOW))
        user = staff.add_user(settings, "anna", "Kranich-Lagune-1987!", language="en", now=NOW)
        self.session = staff.start_session(settings, user, now=NOW)
        self.cookies = {"Cookie": f"imk_admin={self.session.token}"}

    def get(self, url: str, **headers: str) -> httpx.Response:
        return self.web.get(url, headers={**self.cookies, **headers})

    def post(self, url: str, data: dict[str, str], csrf: bool = True) -> httpx.Response:
        form = {**data, **({"csrf_token": self.session.csrf} if csrf else {})}
        return self.web.post(url, data=form, headers={**self.cookies, "Origin": PUBLIC_URL})


@pytest.fixture
def desk(settings: Settings) -> Desk:
    return Desk(settings)


def _text(page: httpx.Response) -> str:
    return " ".join(lxml_html.fromstring(page.text).text_content().split())


def _subscriber(settings: Settings, email: str = "ben@example.org", name: str = "Ben") -> int:
    added = subscriptions.add(settings, email, name, "en", ["newsletter"], now=NOW, consent_note="Messe")
    assert added.subscriber.id is not None
    return added.subscriber.id


# -- access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/campaigns",
        "/admin/items",
        "/admin/items/new",
        "/admin/subscribers",
        "/admin/subscribers/1",
        "/admin/subscribers/export.csv",
    ],
)
def test_anonymous_requests_are_sent_to_sign_in(settings: Settings, path: str) -> None:
    web = WebClient(create_app(settings, clock=lambda: NOW))
    answer = web.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/login")
    assert "ben@" not in answer.text


def test_anonymous_posts_change_nothing(settings: Settings) -> None:
    _items(settings)
    web = WebClient(create_app(settings, clock=lambda: NOW))
    answer = web.post("/admin/items/item2/exclude", data={"csrf_token": "x"}, headers={"Origin": PUBLIC_URL})
    assert answer.status_code == 303
    assert not items_admin.search_items(settings, text="Meldung 2")[0][0].excluded


# -- campaigns -------------------------------------------------------------------------------------


def test_campaigns_page_lists_campaigns_with_next_run_and_load_errors(desk: Desk) -> None:
    page = desk.get("/admin/campaigns")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    text = _text(page)
    assert "digest" in text and "Newsletter" in text and "newsletter" in text and "by a person" in text
    assert "30.11.2026" in text or "11/30/26" in text  # the next Monday, 09:00 Berlin
    assert "broken.yaml" in text  # the file that does not load
    assert "Compose a draft now" in text
    staff.set_language(desk.settings, desk.session.user.id, "de")
    assert "Entwurf jetzt erstellen" in _text(desk.get("/admin/campaigns"))


def test_compose_now_makes_a_draft_and_goes_to_its_page(desk: Desk) -> None:
    _items(desk.settings)
    refused = desk.post("/admin/campaigns/digest/compose", {}, csrf=False)
    assert refused.status_code == 403 and compose.list_editions(desk.settings) == []
    answer = desk.post("/admin/campaigns/digest/compose", {})
    assert answer.status_code == 303
    editions = compose.list_editions(desk.settings)
    assert len(editions) == 1 and editions[0].state == "draft"
    assert answer.headers["location"] == f"/admin/editions/{editions[0].id}?done=composed"
    assert desk.post("/admin/campaigns/nope/compose", {}).status_code == 404


def test_compose_below_min_items_still_makes_the_draft(desk: Desk) -> None:
    answer = desk.post("/admin/campaigns/digest/compose", {})  # no items at all: min_items 3
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=composed_short")
    assert [e.state for e in compose.list_editions(desk.settings)] == ["draft"]


# -- items -----------------------------------------------------------------------------------------


def test_items_page_lists_and_filters_items_with_the_script_title_as_text(desk: Desk) -> None:
    _items(desk.settings)
    page = desk.get("/admin/items")
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    doc = lxml_html.fromstring(page.text)
    links = doc.xpath('//section[@id="items"]//a[@rel="noopener noreferrer"]')
    assert [a.get("href") for a in links] == [f"https://example.org/news/{n}" for n in (1, 2, 3)]
    assert links[0].text_content() == SCRIPT_TITLE
    assert not doc.xpath("//script")
    assert "1–3 of 3" in _text(page)
    filtered = desk.get("/admin/items?tag=film")
    assert [
        a.get("href") for a in lxml_html.fromstring(filtered.text).xpath('//a[@rel="noopener noreferrer"]')
    ] == ["https://example.org/news/1"]
    dated = desk.get(f"/admin/items?from={(NOW - timedelta(days=2)).date()}&to={NOW.date()}")
    assert "1–2 of 2" in _text(dated)
    assert "not a date" in _text(desk.get("/admin/items?from=gestern"))


def test_items_page_pages_through_many_items(desk: Desk) -> None:
    batch = [
        NewsItem(
            id=f"n{n:03d}",
            url=f"https://example.org/n/{n}",
            source="feed",
            title=f"Nr {n}",
            summary_html="",
            published_at=NOW - timedelta(hours=n),
            language="de",
        )
        for n in range(1, 61)
    ]
    with engine_for(desk.settings).begin() as conn:
        store.upsert_items(conn, "feed", batch, NOW)
    first = desk.get("/admin/items?source=feed")
    assert "1–50 of 60" in _text(first)
    following = lxml_html.fromstring(first.text).xpath('//a[@rel="next"]')[0].get("href")
    second = desk.get(following)
    assert "51–60 of 60" in _text(second) and "Nr 60" in _text(second) and "Nr 1 " not in _text(second)


def test_exclude_and_include_an_item_by_post(desk: Desk) -> None:
    _items(desk.settings)
    refused = desk.post("/admin/items/item2/exclude", {"next": "/admin/items"}, csrf=False)
    assert refused.status_code == 403
    assert not items_admin.search_items(desk.settings, text="Meldung 2")[0][0].excluded
    answer = desk.post("/admin/items/item2/exclude", {"next": "/admin/items?tag=iot"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/items?tag=iot&done=item_excluded"
    row = items_admin.search_items(desk.settings, text="Meldung 2")[0][0]
    assert row.excluded and row.excluded_by == "anna"
    page = desk.get(answer.headers["location"])
    assert "Item excluded from future editions." in _text(page) and "by anna" in _text(page)
    result = compose.compose(desk.settings, "digest", NOW, keep_short=True)
    assert result.edition is not None
    assert "item2" not in {i.id for s in result.edition.sections for i in s.items}
    back = desk.post("/admin/items/item2/include", {"next": "https://evil.example/"})
    assert back.headers["location"] == "/admin/items?done=item_included"  # no redirect off the site
    assert not items_admin.search_items(desk.settings, text="Meldung 2")[0][0].excluded
    assert desk.post("/admin/items/nope/exclude", {}).status_code == 404


NEW_ITEM = {
    "source": "news-desk",
    "url": "https://example.org/news/neu",
    "title_de": "Neuer Beitrag <b>fett</b>",
    "title_en": "New item",
    "summary_de": "Text auf **Deutsch**.",
    "summary_en": "Text in *English*.",
    "tags": "film, Künstliche Intelligenz",
    "published": "2026-11-20",
    "image": "",
}


def test_add_a_manual_item_by_post(desk: Desk, tmp_path: Path) -> None:
    form = desk.get("/admin/items/new")
    assert form.status_code == 200
    doc = lxml_html.fromstring(form.text)
    assert doc.xpath('//select[@name="source"]/option/@value') == ["news-desk"]  # manual sources only
    assert {"title_de", "title_en", "summary_de", "summary_en"} <= set(
        doc.xpath("//input/@name | //textarea/@name")
    )
    refused = desk.post("/admin/items/new", NEW_ITEM, csrf=False)
    assert refused.status_code == 403 and list((tmp_path / "desk").iterdir()) == []
    answer = desk.post("/admin/items/new", NEW_ITEM)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/items?done=item_added"
    assert [p.name for p in (tmp_path / "desk").iterdir()] == ["2026-11-20-neuer-beitrag-b-fett-b.yaml"]
    rows, _ = items_admin.search_items(desk.settings, source="news-desk")
    assert len(rows) == 1
    item = rows[0].item
    assert item.title == "Neuer Beitrag <b>fett</b>" and item.translations["en"].title == "New item"
    assert item.tags == ("film", "künstliche-intelligenz")
    listed = desk.get("/admin/items?source=news-desk")
    assert "Neuer Beitrag &lt;b&gt;fett&lt;/b&gt;" in listed.text


def test_a_bad_manual_item_shows_the_form_again_with_the_field(desk: Desk, tmp_path: Path) -> None:
    answer = desk.post("/admin/items/new", {**NEW_ITEM, "title_en": "", "summary_de": "<script>x</script>"})
    assert answer.status_code == 400
    assert "title.en: required" in _text(answer)
    doc = lxml_html.fromstring(answer.text)
    assert doc.xpath('//input[@name="title_en"]/@aria-invalid') == ["true"]
    assert doc.xpath('//input[@name="url"]/@value') == [NEW_ITEM["url"]]  # what was typed stays
    assert not doc.xpath("//script")
    assert list((tmp_path / "desk").iterdir()) == []
    bad_url = desk.post("/admin/items/new", {**NEW_ITEM, "url": "javascript:alert(1)"})
    assert bad_url.status_code == 400 and "url: not an http(s) web address" in _text(bad_url)


# -- subscribers -----------------------------------------------------------------------------------


def test_subscribers_search_and_page_with_consent_evidence(desk: Desk) -> None:
    ben = _subscriber(desk.settings, name="<script>alert(1)</script> Ben")
    _subscriber(desk.settings, "clara@example.org", "Clara")
    subscriptions.remove(desk.settings, "clara@example.org", now=NOW)
    page = desk.get("/admin/subscribers?q=BEN")
    assert page.status_code == 200
    assert "ben@example.org" in page.text and "clara@" not in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert "clara@" in desk.get("/admin/subscribers?status=unsubscribed").text
    assert "ben@" not in desk.get("/admin/subscribers?status=unsubscribed").text
    assert "1–2 of 2" in _text(desk.get("/admin/subscribers?list=newsletter"))
    one = desk.get(f"/admin/subscribers/{ben}")
    assert one.status_code == 200
    text = _text(one)
    assert "confirmed" in text and "newsletter (Newsletter)" in text
    events = consent.history(desk.settings, ben).events
    assert [e.kind for e in events] == ["add"]
    assert "added by hand" in text and "via cli" in text and "note: Messe" in text
    assert "lists: newsletter; status: confirmed" in text
    assert "Nothing sent to this address yet." in text
    assert not lxml_html.fromstring(one.text).xpath("//script")
    assert desk.get("/admin/subscribers/99999").status_code == 404


def test_export_csv_is_the_cli_export(
    desk: Desk, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_subscribers, "EXPORT_CHUNK", 50)  # sent in several pieces
    _subscriber(desk.settings)
    _subscriber(desk.settings, "carl@example.org", "Carl")
    _subscriber(desk.settings, "=cmd@example.org", '=HYPERLINK("http://evil")')
    answer = desk.get("/admin/subscribers/export.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="subscribers-2026-11-24.csv"'
    code, out, _ = run_cli(desk.settings, capsys, "subscribers", "export")
    assert code == 0 and answer.text == out
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["email"] for r in rows] == ["ben@example.org", "carl@example.org", "'=cmd@example.org"]
    assert rows[2]["name"].startswith("'=HYPERLINK")


def test_erase_needs_the_address_typed_again(desk: Desk) -> None:
    ben = _subscriber(desk.settings)
    refused = desk.post(f"/admin/subscribers/{ben}/erase", {"confirm_email": "ben@example.org"}, csrf=False)
    assert refused.status_code == 403
    wrong = desk.post(f"/admin/subscribers/{ben}/erase", {"confirm_email": "bert@example.org"})
    assert wrong.status_code == 400 and "nothing was erased" in _text(wrong)
    empty = desk.post(f"/admin/subscribers/{ben}/erase", {"confirm_email": ""})
    assert empty.status_code == 400
    with engine_for(desk.settings).connect() as conn:
        assert store.find_subscriber(conn, "ben@example.org") is not None
    done = desk.post(f"/admin/subscribers/{ben}/erase", {"confirm_email": " BEN@example.org "})
    assert done.status_code == 303 and done.headers["location"] == "/admin/subscribers?done=subscriber_erased"
    with engine_for(desk.settings).connect() as conn:
        assert store.find_subscriber(conn, "ben@example.org") is None
    assert "Subscriber erased" in _text(desk.get(done.headers["location"]))
    assert desk.get(f"/admin/subscribers/{ben}").status_code == 404
    assert (
        desk.post(f"/admin/subscribers/{ben}/erase", {"confirm_email": "ben@example.org"}).status_code == 404
    )


def test_pages_speak_german_for_a_german_user(settings: Settings) -> None:
    desk = Desk(settings)
    staff.set_language(settings, desk.session.user.id, "de")
    assert "Beitrag von Hand hinzufügen" in _text(desk.get("/admin/items"))
    assert "Adresse oder Name" in _text(desk.get("/admin/subscribers"))
    assert re.search(r"Neuer Beitrag", _text(desk.get("/admin/items/new")))


@pytest.mark.parametrize("module", [admin_campaigns, admin_items, admin_subscribers])
def test_page_texts_are_german_and_english_and_clash_with_no_other(module: Any) -> None:
    for key, texts in module.TEXTS.items():
        assert set(texts) == {"de", "en"} and all(texts.values()), key
        assert i18n.STRINGS[key] is texts, f"{key} is defined twice"


@pytest.mark.parametrize("template", ["campaigns", "items", "item_new", "subscribers", "subscriber"])
def test_every_text_a_template_names_exists(template: str) -> None:
    source = (REPO / "templates" / "admin" / f"{template}.html.j2").read_text("utf-8")
    keys = set(re.findall(r"""\bt\(["']([\w.]+)["']\s*[,)]""", source))  # literal keys only
    assert keys and not keys - set(i18n.STRINGS)
