"""The dashboard and the edition page of the staff app, signed in, on SQLite and PostgreSQL, with mail
going to a real SMTP server: both languages in sandboxed frames (no scripts), the width toggle, what
goes to whom, untrusted titles escaped, approve (recording the signed-in user), queue, the counts and
failed recipients after delivery, cancel, a test to oneself, and the services' refusals on the page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from lxml import html as lxml_html

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Edition, NewsItem
from imk_outreach.services import compose, dispatch
from imk_outreach.services.database import engine_for
from imk_outreach.web.admin.editions import FRAME_CSP
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.support.social import file_channel, write_social_campaign
from tests.test_dispatch import add_subscribers
from tests.test_web_admin_auth import AdminClient, add_staff, admin_settings, client_for

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
min_items: {min_items}
subject: {{de: "Digest {{{{ edition.date|month }}}}", en: "Digest {{{{ edition.date|month }}}}"}}
intro: {{de: "Hallo.", en: "Hello."}}
sections:
  - {{id: tech, heading: {{de: Technik, en: Tech}}, select: {{tags: [iot], since: 30d}}}}
"""
EVIL = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """Rows are queued at NOW and delivery reads the clock itself: the clock runs from NOW (ticking)."""
    with time_machine.travel(NOW, tick=True):
        yield


def items(count: int = 3) -> list[NewsItem]:
    """German ``iot`` items; the first one's title carries a script (as a hostile feed could send)."""
    return [
        NewsItem(
            id=f"i{n}",
            url=f"https://example.org/{n}",
            source="manual",
            title=f"{EVIL} Meldung {n}" if n == 1 else f"Meldung {n}",
            summary_html="<p>Text</p>",
            published_at=NOW - timedelta(days=n),
            language="de",
            tags=("iot",),
        )
        for n in range(1, count + 1)
    ]


def make(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    min_items: int = 1,
    **extra: Any,
) -> Settings:
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN.format(min_items=min_items), "utf-8")
    smtp = {"host": smtp_server.host, "port": smtp_server.port, "connections": 1, "batch_size": 10}
    settings = admin_settings(
        make_settings,
        tmp_path,
        smtp={**smtp, "retry": {"base_delay": "0s", "max_delay": "0s", "max_attempts": 1}},
        sender={"name": "Cluster IMK", "email": "news@cluster.example"},
        tagging={"iot": ["IoT"]},
        **extra,
    )
    with engine_for(settings).begin() as conn:
        store.upsert_items(conn, "manual", items(), NOW)
    add_subscribers(settings, 4)  # person0..3: en, de, en, de
    add_staff(settings, email="anna@example.org", language="de")
    return settings


@pytest.fixture
def settings(make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer) -> Settings:
    return make(make_settings, tmp_path, smtp_server)


def draft(settings: Settings) -> Edition:
    edition = compose.compose(settings, "digest", NOW).edition
    assert edition is not None
    return edition


@pytest.fixture
def client(settings: Settings) -> AdminClient:
    signed_in = client_for(settings)
    assert signed_in.sign_in().status_code == 303
    return signed_in


def page_of(response: Any) -> Any:
    return lxml_html.fromstring(response.text)


def done_of(response: Any) -> str:
    assert response.status_code == 303, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["done"][0]


# -- the page ------------------------------------------------------------------------------------------


def test_both_languages_show_in_frames_sandboxed_without_scripts(
    settings: Settings, client: AdminClient
) -> None:
    edition = draft(settings)
    response = client.get(f"/admin/editions/{edition.id}")
    assert response.status_code == 200
    frames = page_of(response).xpath("//iframe")
    assert {f.get("src") for f in frames} == {
        f"/admin/editions/{edition.id}/html/{lang}" for lang in ("de", "en")
    }
    for frame in frames:
        assert frame.get("sandbox") is not None
        assert "allow-scripts" not in frame.get("sandbox")
    for lang, heading in (("de", "Technik"), ("en", "Tech")):
        frame = client.get(f"/admin/editions/{edition.id}/html/{lang}")
        assert frame.status_code == 200
        assert frame.headers["content-security-policy"] == FRAME_CSP
        assert frame.headers["content-security-policy"].startswith("sandbox;")
        assert "script-src" not in frame.headers["content-security-policy"]
        assert frame.headers["x-frame-options"] == "SAMEORIGIN"
        assert heading in frame.text and f'lang="{lang}"' in frame.text
        assert EVIL not in frame.text  # escaped in the newsletter too
    assert client.get(f"/admin/editions/{edition.id}/html/fr").status_code == 404


def test_the_page_shows_text_part_fallbacks_and_recipients_per_language(
    settings: Settings, client: AdminClient
) -> None:
    edition = draft(settings)
    page = page_of(client.get(f"/admin/editions/{edition.id}"))
    texts = [pre.text_content() for pre in page.xpath("//pre[@class='text-part']")]
    assert len(texts) == 2 and all("Meldung 2" in text for text in texts)
    rows = {
        tr.xpath("td[1]")[0].text_content(): tr.xpath("td[3]")[0].text_content()
        for tr in page.xpath("//section[@id='recipients']//tbody/tr")
    }
    assert rows == {"Deutsch": "2", "English": "2"}
    # the German items have no English translation: the English newsletter shows them in German
    english = page.xpath("//div[@id='preview-en']//ul/li")
    assert ["Meldung 2" in li.text_content() for li in english].count(True) == 1
    assert not page.xpath("//div[@id='preview-de']//ul/li")


def test_the_width_toggle_needs_no_script(settings: Settings, client: AdminClient) -> None:
    edition = draft(settings)
    desktop = page_of(client.get(f"/admin/editions/{edition.id}"))
    assert desktop.xpath("//a[@href='?width=mobile']") and desktop.xpath("//div[contains(@class, 'desktop')]")
    mobile = page_of(client.get(f"/admin/editions/{edition.id}?width=mobile"))
    assert len(mobile.xpath("//div[contains(@class, 'preview') and contains(@class, 'mobile')]")) == 2
    assert mobile.xpath("//a[@href='?width=mobile']/@aria-current") == ["true"]


def test_a_script_in_an_item_title_is_escaped_on_the_dashboard_and_the_edition_page(
    settings: Settings, client: AdminClient
) -> None:
    edition = draft(settings)
    for url in ("/admin", f"/admin/editions/{edition.id}"):
        response = client.get(url)
        assert response.status_code == 200
        assert EVIL not in response.text
        assert "&lt;script&gt;alert(" in response.text
        assert not page_of(response).xpath("//script")


def test_an_unknown_edition_is_404(client: AdminClient) -> None:
    response = client.get("/admin/editions/999")
    assert response.status_code == 404
    assert "Diese Ausgabe gibt es nicht." in response.text


def test_the_dashboard_links_the_waiting_edition_and_shows_sources_and_queue(
    settings: Settings, client: AdminClient
) -> None:
    edition = draft(settings)
    page = page_of(client.get("/admin"))
    links = page.xpath("//section[@id='awaiting']//a/@href")
    assert links == [f"/admin/editions/{edition.id}"]
    sources = page.xpath("//section[@id='sources']//tbody/tr/td[1]")
    assert [td.text_content().split()[0] for td in sources] == ["manual"]
    depth = page.xpath("//section[@id='queue']//tr[1]/td")[0].text_content()
    assert depth == "0"
    next_runs = page.xpath("//section[@id='next-runs']//td[1]/text()")
    assert "Kampagne digest" in next_runs and "Abruf der Quelle manual" in next_runs  # in the UI language


# -- approve, queue, deliver ---------------------------------------------------------------------------


def test_approve_records_the_signed_in_user(settings: Settings, client: AdminClient) -> None:
    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    assert page_of(client.get(page)).xpath("//button[text()='Freigeben']")
    response = client.post_form(f"{page}/approve", {}, page)
    assert done_of(response) == "approved"
    approved = compose.get_edition(settings, edition.id)
    assert approved.state == "approved" and approved.approved_by == "anna"
    after = client.get(response.headers["location"])
    assert "Ausgabe freigegeben." in after.text
    assert "Freigegeben von anna" in after.text
    assert page_of(after).xpath("//button[text()='Senden']")


def test_actions_without_the_csrf_token_change_nothing(settings: Settings, client: AdminClient) -> None:
    edition = draft(settings)
    for action in ("approve", "send", "cancel", "test"):
        response = client.post(f"/admin/editions/{edition.id}/{action}", data={"csrf_token": "forged"})
        assert response.status_code == 403, action
    unchanged = compose.get_edition(settings, edition.id)
    assert unchanged.state == "draft" and unchanged.approved_by is None


def test_queue_then_the_counts_and_failed_recipients_with_the_servers_reply(
    settings: Settings, client: AdminClient, smtp_server: SmtpTestServer
) -> None:
    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    client.post_form(f"{page}/approve", {}, page)
    assert done_of(client.post_form(f"{page}/send", {}, page)) == "queued"
    assert compose.get_edition(settings, edition.id).state == "queued"
    queued = page_of(client.get(page))
    counts = {
        tr.xpath("td[1]")[0].text_content(): tr.xpath("td[2]")[0].text_content()
        for tr in queued.xpath("//section[@id='delivery']/table[1]/tbody/tr")
    }
    assert counts["eingereiht"] == "4" and counts["gesendet"] == "0"
    assert queued.xpath("//button[text()='Abbrechen']") and not queued.xpath("//button[text()='Freigeben']")

    smtp_server.respond("person1@example.org", "550 5.1.1 <person1@example.org>: mailbox unknown")
    dispatch.deliver(settings, until_empty=True)
    done = page_of(client.get(page))
    counts = {
        tr.xpath("td[1]")[0].text_content(): tr.xpath("td[2]")[0].text_content()
        for tr in done.xpath("//section[@id='delivery']/table[1]/tbody/tr")
    }
    assert counts["gesendet"] == "3" and counts["fehlgeschlagen"] == "1"
    [failed] = done.xpath("//section[@id='delivery']/table[2]/tbody/tr")
    cells = [td.text_content() for td in failed.xpath("td")]
    assert cells[0] == "person1@example.org" and cells[1] == "de"
    assert "mailbox unknown" in cells[3]
    # what went out is what was frozen at queueing: both languages still shown
    assert len(done.xpath("//iframe")) == 2


def test_cancel_stops_a_queued_edition(settings: Settings, client: AdminClient) -> None:
    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    client.post_form(f"{page}/approve", {}, page)
    client.post_form(f"{page}/send", {}, page)
    assert done_of(client.post_form(f"{page}/cancel", {}, page)) == "cancelled"
    assert compose.get_edition(settings, edition.id).state == "cancelled"
    counts = {s.edition.id: s.counts for s in dispatch.status(settings)}[edition.id]
    assert counts["cancelled"] == 4 and counts["queued"] == 0


def test_a_test_goes_to_the_signed_in_users_address(
    settings: Settings, client: AdminClient, smtp_server: SmtpTestServer
) -> None:
    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    assert done_of(client.post_form(f"{page}/test", {}, page)) == "test_sent"
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["anna@example.org"] * 2
    assert compose.get_edition(settings, edition.id).state == "draft"  # a test approves nothing

    add_staff(settings, "ben")  # no email address
    ben = client_for(settings)
    ben.sign_in("ben")
    refused = ben.post_form(f"{page}/test", {}, page)
    assert refused.status_code == 409
    assert "keine E-Mail-Adresse" in refused.text
    assert len(smtp_server.messages) == 2


def test_a_refusal_of_the_service_is_shown_in_a_translated_frame(
    settings: Settings, client: AdminClient
) -> None:
    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    client.post_form(f"{page}/approve", {}, page)
    client.post_form(f"{page}/send", {}, page)
    refused = client.post_form(f"{page}/approve", {}, page)
    assert refused.status_code == 409
    [alert] = page_of(refused).xpath("//p[@role='alert']")
    text = alert.text_content()
    assert text.startswith("Das hat nicht geklappt. Meldung des Systems:")
    assert "only draft editions can be approved" in text
    assert compose.get_edition(settings, edition.id).state == "queued"


def test_a_short_edition_is_approved_only_when_asked_again(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, min_items=5)
    edition = compose.compose(settings, "digest", NOW, keep_short=True).edition
    assert edition is not None
    client = client_for(settings, **{"Accept-Language": "en"})
    client.sign_in()
    client.post_form("/admin/language", {"language": "en"})
    page = f"/admin/editions/{edition.id}"
    refused = client.post_form(f"{page}/approve", {}, page)
    assert refused.status_code == 409
    assert "That did not work. The system says:" in refused.text and "min_items" in refused.text
    assert page_of(refused).xpath("//button[text()='Approve anyway (too few new items)']")
    assert compose.get_edition(settings, edition.id).state == "draft"
    assert done_of(client.post_form(f"{page}/approve", {"force": "1"}, page)) == "approved"
    assert compose.get_edition(settings, edition.id).approved_by == "anna"


# -- social ------------------------------------------------------------------------------------------


def test_a_social_edition_shows_its_posts_per_channel_with_length_and_limit(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    write_social_campaign(tmp_path, ["x-de"], approval="required")
    settings = make(make_settings, tmp_path, smtp_server, channels=[file_channel(tmp_path)])
    edition = compose.compose(settings, "posts", NOW).edition
    assert edition is not None
    client = client_for(settings)
    client.sign_in()
    response = client.get(f"/admin/editions/{edition.id}")
    assert response.status_code == 200 and EVIL not in response.text
    page = page_of(response)
    assert [h.text_content().strip() for h in page.xpath("//section[@id='social']/h3")] == ["x-de"]
    posts = page.xpath("//section[@id='social']//div[@class='post']")
    assert len(posts) == 3
    lengths = [p.xpath(".//span[contains(@class, 'length')]")[0].text_content() for p in posts]
    assert all(text.startswith("Länge: ") and text.endswith(" / 280") for text in lengths)
    assert any(EVIL in p.xpath(".//pre")[0].text_content() for p in posts)  # shown as text
    assert not page.xpath("//iframe")  # no newsletter for a social campaign


def test_hold_withdraws_the_approval_until_someone_approves_again(
    settings: Settings, client: AdminClient
) -> None:
    from imk_outreach.services import dispatch
    from imk_outreach.services.compose import EditionError

    edition = draft(settings)
    page = f"/admin/editions/{edition.id}"
    client.post_form(f"{page}/approve", {}, page)
    assert page_of(client.get(page)).xpath("//button[text()='Zurückhalten']")
    response = client.post_form(f"{page}/hold", {}, page)
    assert done_of(response) == "held"
    held = compose.get_edition(settings, edition.id)
    assert (held.state, held.approved_by, held.approved_hash) == ("held", None, None)
    assert "held by anna" in (held.skip_reason or "")
    with pytest.raises(EditionError, match="waits for approval"):
        dispatch.send(settings, held.campaign, edition_id=held.id)
    forged = client.post(f"{page}/hold", data={"csrf_token": "forged"})
    assert forged.status_code == 403
