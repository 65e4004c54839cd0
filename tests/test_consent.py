"""Consent evidence is complete and append-only: one event per sign-up, confirmation, preference change,
unsubscribe, bounce, import and staff addition, with time, hashed IP and the exact consent wording shown
(per version and language); a new sign-up of an unsubscribed or bounced address keeps the earlier
events; export and ``subscribers show`` list them; the migration turns the evidence of older rows into
events. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from lxml import html as lxml_html
from sqlalchemy import Connection, select, text

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store, tables
from imk_outreach.db.engine import MIGRATIONS
from imk_outreach.services import consent, subscriptions, tokens
from imk_outreach.services.database import engine_for
from imk_outreach.services.rendering import template_env
from imk_outreach.web.app import create_app
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, subscriber_settings

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
IP = "203.0.113.7"
LATER_IP = "198.51.100.23"


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


def _find(settings: Settings, email: str) -> Any:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


def _events(settings: Settings, email: str) -> list[dict[str, Any]]:
    [record] = subscriptions.export(settings, email)
    events: list[dict[str, Any]] = record["consent_events"]
    return events


def _sign_up(settings: Settings, email: str, language: str = "de", ip: str = IP, at: datetime = NOW) -> None:
    subscriptions.subscribe(settings, email, "Anna", language, ["newsletter"], ip, now=at)


def _token(settings: Settings, purpose: tokens.Purpose, email: str, at: datetime = NOW) -> str:
    return tokens.make_token(tokens.secret_key(settings), purpose, _find(settings, email), at)


def _consent_texts(settings: Settings) -> dict[tuple[str, str], str]:
    with engine_for(settings).connect() as conn:
        rows = conn.execute(select(tables.consent_texts)).all()
    return {(row.version, row.language): row.text for row in rows}


def _shown_wording(settings: Settings, language: str) -> str:
    """The consent sentence as the sign-up page shows it (the text of its ``p.consent``)."""
    page = WebClient(create_app(settings, clock=lambda: NOW)).get(f"/subscribe?lang={language}")
    assert page.status_code == 200
    [paragraph] = lxml_html.fromstring(page.text).xpath('//p[@class="consent"]')
    return " ".join(paragraph.text_content().split())


# -- every step is an event ------------------------------------------------------------------------


def test_each_step_of_a_subscription_is_one_event_with_its_evidence(settings: Settings) -> None:
    secret = tokens.secret_key(settings)
    _sign_up(settings, "anna@example.org")
    subscriptions.confirm(settings, _token(settings, "confirm", "anna@example.org"), NOW + timedelta(hours=1))
    subscriptions.update_preferences(
        settings, _token(settings, "preferences", "anna@example.org"), "en", ["film"], NOW + timedelta(days=1)
    )
    subscriptions.unsubscribe(
        settings, _token(settings, "unsubscribe", "anna@example.org"), NOW + timedelta(days=2)
    )
    subscriptions.unsubscribe(
        settings, _token(settings, "unsubscribe", "anna@example.org"), NOW + timedelta(days=3)
    )

    events = _events(settings, "anna@example.org")

    assert [(e["kind"], e["at"], e["source"]) for e in events] == [
        ("signup", NOW.isoformat(), "web:/subscribe"),
        ("confirm", (NOW + timedelta(hours=1)).isoformat(), "web:/confirm"),
        ("preferences", (NOW + timedelta(days=1)).isoformat(), "web:/preferences"),
        ("unsubscribe", (NOW + timedelta(days=2)).isoformat(), "web:/unsubscribe"),
    ]  # the second unsubscribe changed nothing, so it is no event
    signup, confirm, preferences, unsubscribe = events
    assert signup["ip_hash"] == tokens.ip_hash(secret, IP) and IP not in json.dumps(events)
    assert (signup["consent_version"], signup["language"]) == ("2026-11", "de")
    assert signup["detail"] == {"lists": ["newsletter"], "status_before": None}
    assert confirm["consent_version"] == "2026-11"
    assert preferences["detail"] == {"lists": ["film"], "before": {"language": "de", "lists": ["newsletter"]}}
    assert unsubscribe["detail"] == {"lists": ["film"], "status_before": "confirmed"}


def test_staff_additions_removals_imports_and_bounces_are_events(settings: Settings, tmp_path: Path) -> None:
    note = "business cards, stand 12 at the media days"
    subscriptions.add(settings, "ben@example.org", "Ben", "en", ["film"], now=NOW, consent_note=note)
    subscriptions.remove(settings, "ben@example.org", NOW + timedelta(days=1))
    subscriptions.remove(settings, "ben@example.org", NOW + timedelta(days=2))
    path = tmp_path / "cards.csv"
    path.write_text("email,lists\ncarl@example.org,film\n", encoding="utf-8")
    subscriptions.import_csv(settings, path, "confirmed", NOW, consent_note=note)
    carl = _find(settings, "carl@example.org")
    with engine_for(settings).begin() as conn:
        store.mark_bounced(conn, [carl.id], "550 5.1.1 no such user", NOW + timedelta(days=3))
        store.mark_bounced(conn, [carl.id], "550 5.1.1 no such user", NOW + timedelta(days=4))

    ben, carl_events = _events(settings, "ben@example.org"), _events(settings, "carl@example.org")

    assert [(e["kind"], e["source"], e["note"]) for e in ben] == [
        ("add", "cli", note),
        ("unsubscribe", "cli", None),
    ]
    assert [(e["kind"], e["source"], e["note"]) for e in carl_events] == [
        ("import", "import:cards.csv", note),
        ("bounce", "delivery", "550 5.1.1 no such user"),  # once, though marked twice
    ]
    assert carl_events[1]["at"] == (NOW + timedelta(days=3)).isoformat()


# -- the wording ------------------------------------------------------------------------------------


def test_the_wording_shown_is_kept_once_per_version_and_language(settings: Settings) -> None:
    _sign_up(settings, "anna@example.org", "de")
    _sign_up(settings, "jane@example.org", "en", ip=LATER_IP)
    _sign_up(settings, "li@example.org", "en", ip=LATER_IP, at=NOW + timedelta(minutes=1))

    texts = _consent_texts(settings)

    assert texts == {
        ("2026-11", "de"): _shown_wording(settings, "de"),
        ("2026-11", "en"): _shown_wording(settings, "en"),
    }
    assert texts[("2026-11", "de")] != texts[("2026-11", "en")] and "2026-11" in texts[("2026-11", "en")]
    evidence = consent.history(settings, _find(settings, "jane@example.org").id)
    assert evidence.texts == {"2026-11": {"en": texts[("2026-11", "en")]}}


def test_a_changed_wording_under_the_same_version_is_logged_and_kept_with_that_sign_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    _sign_up(settings, "anna@example.org", "en")
    first = _consent_texts(settings)[("2026-11", "en")]
    override = settings.resolve_path(settings.templates_dir) / "web" / "_consent.html.j2"
    override.parent.mkdir(parents=True)
    override.write_text('<p class="consent">{{ _("We may sell your address.") }}</p>\n', encoding="utf-8")
    template_env(settings, fresh=True)

    with caplog.at_level(logging.ERROR):
        _sign_up(settings, "jane@example.org", "en", ip=LATER_IP)

    assert _consent_texts(settings)[("2026-11", "en")] == first  # what Anna saw stays her evidence
    [jane] = _events(settings, "jane@example.org")
    assert jane["detail"]["consent_text"] == "We may sell your address." == _shown_wording(settings, "en")
    assert "consent_text" not in _events(settings, "anna@example.org")[0]["detail"]
    assert any("set a new consent_version" in r.getMessage() for r in caplog.records), caplog.text


# -- a new sign-up keeps what was before ------------------------------------------------------------


@pytest.mark.parametrize("left", ["unsubscribed", "bounced"])
def test_a_new_sign_up_of_an_address_that_left_keeps_the_earlier_events(
    settings: Settings, left: str
) -> None:
    _sign_up(settings, "anna@example.org", "de")
    subscriptions.confirm(settings, _token(settings, "confirm", "anna@example.org"), NOW + timedelta(hours=1))
    if left == "unsubscribed":
        subscriptions.unsubscribe(
            settings, _token(settings, "unsubscribe", "anna@example.org"), NOW + timedelta(days=1)
        )
    else:
        with engine_for(settings).begin() as conn:
            store.mark_bounced(
                conn, [_find(settings, "anna@example.org").id], "550 5.1.1", NOW + timedelta(days=1)
            )
    earlier = _events(settings, "anna@example.org")

    _sign_up(settings, "anna@example.org", "en", ip=LATER_IP, at=NOW + timedelta(days=20))

    events = _events(settings, "anna@example.org")
    assert events[:-1] == earlier
    kind = {"unsubscribed": "unsubscribe", "bounced": "bounce"}[left]
    assert [e["kind"] for e in events] == ["signup", "confirm", kind, "signup"]
    assert events[0]["ip_hash"] == tokens.ip_hash(tokens.secret_key(settings), IP)
    assert events[-1]["ip_hash"] == tokens.ip_hash(tokens.secret_key(settings), LATER_IP)
    assert events[-1]["detail"]["status_before"] == left
    assert _find(settings, "anna@example.org").status == "pending"


# -- shown and exported -----------------------------------------------------------------------------


def test_show_and_export_list_the_events(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _sign_up(settings, "anna@example.org", "de")
    subscriptions.confirm(settings, _token(settings, "confirm", "anna@example.org"), NOW + timedelta(hours=1))
    config = ["--config", str(settings.config_path)]
    capsys.readouterr()

    assert cli.main(["subscribers", "show", "anna@example.org", *config]) == 0
    out = capsys.readouterr().out
    assert "  consent history (oldest first):" in out
    assert re.search(
        r"^    2026-11-24 11:00 signup: consent text 2026-11 \(de\), via web:/subscribe, IP hash kept$",
        out,
        re.M,
    ), out
    assert re.search(
        r"^    2026-11-24 12:00 confirm: consent text 2026-11 \(de\), via web:/confirm$", out, re.M
    ), out

    assert cli.main(["subscribers", "show", "anna@example.org", "--json", *config]) == 0
    consent = json.loads(capsys.readouterr().out)["consent"]
    assert [e["kind"] for e in consent["events"]] == ["signup", "confirm"]
    assert consent["texts"] == {"2026-11": {"de": _consent_texts(settings)[("2026-11", "de")]}}

    assert cli.main(["subscribers", "export", *config]) == 0
    [row] = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["consent_history"] == (
        f"{NOW.isoformat()} signup (consent 2026-11, web:/subscribe) | "
        f"{(NOW + timedelta(hours=1)).isoformat()} confirm (consent 2026-11, web:/confirm)"
    )
    assert cli.main(["subscribers", "export", "--format", "json", *config]) == 0
    [record] = json.loads(capsys.readouterr().out)["subscribers"]
    assert [e["kind"] for e in record["consent_events"]] == ["signup", "confirm"]


# -- rows from before the events --------------------------------------------------------------------


def _alembic(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_the_migration_turns_the_evidence_of_older_rows_into_events(db_url: str) -> None:
    engine = store.open_database(db_url, migrate=False)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0007")
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, email_key, name, language, status, created_at,"
                " updated_at, signup_at, confirmed_at, unsubscribed_at, consent_version, ip_hash, source,"
                " bounce_reason)"
                " VALUES (1, 'a@example.org', 'a@example.org', 'A', 'de', 'unsubscribed', :t0, :t2,"
                " :t0, :t1, :t2, '2025-01', 'abc', 'web:/subscribe', NULL),"
                " (2, 'b@example.org', 'b@example.org', 'B', 'en', 'bounced', :t0, :t2,"
                " :t0, :t0, NULL, NULL, NULL, 'import:old.csv', '550 5.1.1'),"
                " (3, 'c@example.org', 'c@example.org', 'C', 'en', 'confirmed', :t0, :t0,"
                " NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
            ),
            {"t0": "2025-01-10 08:00:00", "t1": "2025-01-10 09:00:00", "t2": "2025-06-01 12:00:00"},
        )
    engine.dispose()
    engine = store.open_database(db_url)  # migrates to the newest revision

    with engine.connect() as conn:
        events = {i: store.consent_events_of(conn, i) for i in (1, 2, 3)}
    engine.dispose()

    t0, t1, t2 = (
        datetime(2025, 1, 10, 8, tzinfo=UTC),
        datetime(2025, 1, 10, 9, tzinfo=UTC),
        datetime(2025, 6, 1, 12, tzinfo=UTC),
    )
    assert [(e.kind, e.at, e.ip_hash, e.consent_version, e.source) for e in events[1]] == [
        ("signup", t0, "abc", "2025-01", "web:/subscribe"),
        ("confirm", t1, None, "2025-01", None),
        ("unsubscribe", t2, None, None, None),
    ]
    assert [(e.kind, e.at, e.note) for e in events[2]] == [
        ("import", t0, None),
        ("confirm", t0, None),
        ("bounce", t2, "550 5.1.1"),
    ]
    assert events[3] == []  # nothing was recorded, nothing is made up
    assert all(
        e.detail == {"recorded": "from the subscriber row, before consent events were kept"}
        for e in events[1] + events[2]
    )
