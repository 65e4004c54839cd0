"""Scheduled campaigns with a controllable clock: fire times across DST, coalescing, grace, late policy,
approval, staff notices; on SQLite and PostgreSQL, mails through a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Campaign, Subscriber
from imk_outreach.services import compose, dispatch, schedule
from imk_outreach.services.database import engine_for
from imk_outreach.web.app import create_app
from tests.conftest import ConfigFactory
from tests.support.items import days_before, store_items
from tests.support.smtpserver import SmtpTestServer

BERLIN = ZoneInfo("Europe/Berlin")
# Monday 2026-11-30, 08:00 UTC = 09:00 Berlin: the moment a "0 9 * * mon" campaign falls due.
MONDAY_9 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).astimezone(UTC)


# -- fire times (pure) -------------------------------------------------------------------------------


def walls(times: list[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for t in times]


def test_a_9_oclock_campaign_stays_at_9_local_across_both_dst_changes() -> None:
    cron = {"cron": "0 9 * * *"}
    spring = schedule.fire_times(cron, BERLIN, local("2027-03-26T12:00"), local("2027-03-30T12:00"))
    assert walls(spring) == ["03-27 09:00 CET", "03-28 09:00 CEST", "03-29 09:00 CEST", "03-30 09:00 CEST"]
    autumn = schedule.fire_times(cron, BERLIN, local("2026-10-23T12:00"), local("2026-10-27T12:00"))
    assert walls(autumn) == ["10-24 09:00 CEST", "10-25 09:00 CET", "10-26 09:00 CET", "10-27 09:00 CET"]
    assert [t.hour for t in spring] == [8, 7, 7, 7] and [t.hour for t in autumn] == [7, 8, 8, 8]  # UTC


def test_a_time_that_does_not_exist_that_night_runs_once() -> None:
    # 2027-03-28: clocks jump from 2:00 to 3:00, so 2:30 does not exist that night.
    times = schedule.fire_times(
        {"cron": "30 2 * * *"}, BERLIN, local("2027-03-27T12:00"), local("2027-03-29T12:00")
    )
    assert len(times) == 2
    assert times[0] == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # once, as the clock skips it (3:00 CEST)
    assert walls(times)[1] == "03-29 02:30 CEST"


def test_a_time_that_exists_twice_that_night_runs_once() -> None:
    # 2026-10-25: clocks go back from 3:00 to 2:00, so 2:30 happens twice.
    daily = schedule.fire_times(
        {"cron": "30 2 * * *"}, BERLIN, local("2026-10-24T12:00"), local("2026-10-26T12:00")
    )
    assert daily == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    hourly = schedule.fire_times(
        {"cron": "0 * * * *"}, BERLIN, local("2026-10-25T00:30"), local("2026-10-25T04:30")
    )
    assert walls(hourly) == ["10-25 01:00 CEST", "10-25 02:00 CEST", "10-25 03:00 CET", "10-25 04:00 CET"]
    # the second 2:00 (CET) is skipped even when a check starts between the two
    between = schedule.fire_times(
        {"cron": "0 2 * * *"}, BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), local("2026-10-25T12:00")
    )
    assert between == []
    assert schedule.next_fire_time(
        {"cron": "0 2 * * *"}, BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    ) == datetime(2026, 10, 26, 1, 0, tzinfo=UTC)


def test_at_times_without_offset_are_berlin_wall_time() -> None:
    at = {"at": "2026-12-01T09:00"}
    assert schedule.fire_times(at, BERLIN, MONDAY_9, MONDAY_9 + timedelta(days=2)) == [
        datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    ]
    assert (
        schedule.fire_times(at, BERLIN, datetime(2026, 12, 1, 8, 0, tzinfo=UTC), MONDAY_9 + timedelta(days=9))
        == []
    )
    assert schedule.next_fire_time(at, BERLIN, MONDAY_9 + timedelta(days=3)) is None


def test_a_long_gap_is_walked_quickly_and_still_ends_at_the_latest_fire_time() -> None:
    start = local("2026-01-01T00:00")
    times = schedule.fire_times({"cron": "* * * * *"}, BERLIN, start, start + timedelta(days=200))
    assert times[-1] == start + timedelta(days=200)
    assert len(times) < 5000


# -- campaign runs in the database ----------------------------------------------------------------------

CAMPAIGN = """\
name: weekly
list: newsletter
languages: [de, en]
schedule: {{cron: "0 9 * * mon"}}
late_policy: {late_policy}
approval: {approval}
grace: 2h
min_items: 2
subject: {{de: "Woche {{{{ edition.date|date }}}}", en: "Week {{{{ edition.date|date }}}}"}}
sections:
  - {{id: news, heading: {{de: Neues, en: News}}, select: {{tags: [iot], since: 30d}}}}
"""


def make(
    make_settings: ConfigFactory,
    tmp_path: Path,
    server: SmtpTestServer,
    approval: str = "required",
    late_policy: str = "hold",
    **extra: Any,
) -> Settings:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    (folder / "weekly.yaml").write_text(CAMPAIGN.format(approval=approval, late_policy=late_policy), "utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual"}],
        smtp={"host": server.host, "port": server.port, "connections": 1},
        sender={"name": "Cluster IMK", "email": "news@cluster.example"},
        public_url="https://cluster.example",
        **extra,
    )
    store_items(settings, days_before(MONDAY_9, 3), MONDAY_9)
    with engine_for(settings).begin() as conn:
        for n in range(3):
            sub = Subscriber(
                email=f"p{n}@example.org", language="de", lists=("newsletter",), status="confirmed"
            )
            store.save_subscriber(conn, sub, MONDAY_9)
    return settings


def campaign(settings: Settings) -> Campaign:
    return compose.get_campaign(settings, "weekly")


def seen_since(settings: Settings, moment: datetime) -> None:
    """As if the scheduler had last looked at the campaign at ``moment``."""
    with engine_for(settings).begin() as conn:
        store.set_checked_until(conn, "weekly", "cron: 0 9 * * mon", moment)


def queued(settings: Settings) -> int:
    return sum(s.counts["queued"] for s in dispatch.status(settings))


def test_runs_missed_during_downtime_are_coalesced_into_one_edition(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto", late_policy="send")
    seen_since(settings, MONDAY_9 - timedelta(weeks=3, hours=1))  # down for three Mondays
    now = MONDAY_9 + timedelta(minutes=20)
    run = schedule.check_due(settings, campaign(settings), now)
    assert run is not None and run.due_at == MONDAY_9 and run.missed == 3 and run.state == "queued"
    assert queued(settings) == 3
    assert schedule.check_due(settings, campaign(settings), now) is None  # a trigger firing twice: nothing
    assert schedule.check_due(settings, campaign(settings), now + timedelta(hours=1)) is None
    assert len(compose.list_editions(settings, "weekly")) == 1


@pytest.mark.parametrize(("minutes_late", "runs"), [(180, False), (90, True)])
def test_a_new_campaign_makes_up_a_run_only_within_its_grace(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer, minutes_late: int, runs: bool
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto")  # grace: 2h
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(minutes=minutes_late))
    assert (run is not None and run.state == "queued") is runs
    assert len(compose.list_editions(settings)) == int(runs)


def test_an_auto_approved_run_past_its_grace_is_held_until_a_person_releases_it(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto", late_policy="hold")
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    wednesday_night = MONDAY_9 + timedelta(days=2, hours=13)
    run = schedule.check_due(settings, campaign(settings), wednesday_night)
    assert run is not None and run.state == "held" and "waits for a person" in (run.note or "")
    [edition] = compose.list_editions(settings, "weekly")
    assert edition.state == "held" and queued(settings) == 0
    # the tick does not send it, however often it runs
    schedule.advance_all(settings, [campaign(settings)], wednesday_night + timedelta(hours=1))
    assert queued(settings) == 0
    report = dispatch.send(settings, "weekly", wednesday_night + timedelta(hours=2))  # a person: send
    assert report.queued == 3
    [run] = schedule.advance_all(settings, [campaign(settings)], wednesday_night + timedelta(hours=3))
    assert run.state == "queued"


def test_late_policy_send_sends_late(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto", late_policy="send")
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(days=2))
    assert run is not None and run.state == "queued" and queued(settings) == 3


def test_a_draft_waits_for_approval_staff_are_told_and_it_goes_out_once_approved_in_time(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, notify=["redaktion@cluster.example"])
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(seconds=5))
    assert (
        run is not None and run.state == "waiting" and run.notified_at is not None and queued(settings) == 0
    )
    [notice] = smtp_server.messages
    assert notice.rcpt_tos == ("redaktion@cluster.example",)
    text = email.message_from_bytes(notice.data, policy=email.policy.default)
    body = text.get_body().get_content()  # type: ignore[union-attr]
    assert "wartet auf Freigabe" in body and "waits for approval" in body
    link = re.search(r"https://cluster\.example(/preview/\S+)", body)
    assert link is not None
    client = TestClient(create_app(settings, clock=lambda: MONDAY_9 + timedelta(minutes=5)))
    page = client.get(link.group(1))
    assert page.status_code == 200 and "/de" in page.text
    assert "Meldung 1" in client.get(link.group(1) + "/de").text
    assert client.get(link.group(1)[:-3] + "abc").status_code == 404  # tampered
    # never before approval: ticks change nothing, and nobody is told twice
    for minutes in (1, 30, 60):
        [waiting] = schedule.advance_all(
            settings, [campaign(settings)], MONDAY_9 + timedelta(minutes=minutes)
        )
        assert waiting.state == "waiting"
    assert queued(settings) == 0 and len(smtp_server.messages) == 1
    edition, released = schedule.approve_and_release(
        settings, run.edition_id or 0, "anna", MONDAY_9 + timedelta(minutes=70)
    )
    assert released is None and edition.state == "approved"
    [done] = schedule.advance_all(settings, [campaign(settings)], MONDAY_9 + timedelta(minutes=71))
    assert done.state == "queued" and queued(settings) == 3


def test_a_draft_approved_after_its_grace_is_held_and_approving_a_held_edition_releases_it(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, notify=["redaktion@cluster.example"])
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(minutes=1))
    assert run is not None and run.state == "waiting"
    [held] = schedule.advance_all(settings, [campaign(settings)], MONDAY_9 + timedelta(hours=2, minutes=1))
    assert held.state == "held" and compose.get_edition(settings, run.edition_id or 0).state == "held"
    assert len(smtp_server.messages) == 2  # waiting, then held
    assert queued(settings) == 0
    edition, released = schedule.approve_and_release(
        settings, run.edition_id or 0, "anna", MONDAY_9 + timedelta(hours=5)
    )
    assert released is not None and released.queued == 3 and queued(settings) == 3


def test_send_of_a_held_draft_asks_for_approval_first(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(hours=3))
    assert run is not None and run.state == "held"
    with pytest.raises(compose.EditionError, match="waits for approval"):
        dispatch.send(settings, "weekly", MONDAY_9 + timedelta(hours=4))
    assert queued(settings) == 0


def test_too_few_items_skip_the_run(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto")
    seen_since(settings, MONDAY_9 + timedelta(days=60))
    run = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(days=63, minutes=1))
    assert run is not None and run.state == "skipped" and "min_items" in (run.note or "")
    assert queued(settings) == 0


def test_a_run_recorded_but_not_handled_before_a_crash_is_handled_by_the_next_tick(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto")
    with engine_for(settings).begin() as conn:
        recorded = store.add_run(conn, "weekly", MONDAY_9, MONDAY_9 + timedelta(hours=2), 0, MONDAY_9)
    assert recorded is not None and recorded.state == "due"
    [run] = schedule.advance_all(settings, [campaign(settings)], MONDAY_9 + timedelta(minutes=3))
    assert run.state == "queued" and queued(settings) == 3
    assert schedule.advance_all(settings, [campaign(settings)], MONDAY_9 + timedelta(minutes=4)) == []


def test_next_runs_lists_campaigns_and_sources(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    runs = schedule.next_runs(settings, [campaign(settings)], MONDAY_9 + timedelta(hours=1))
    by_job = {r.job: r for r in runs}
    assert by_job["campaign weekly"].at == MONDAY_9 + timedelta(weeks=1)
    assert by_job["gather manual"].at == MONDAY_9 + timedelta(hours=1)  # never gathered: now


def test_a_new_run_sets_aside_last_weeks_held_edition_and_composes_afresh(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, approval="auto", late_policy="hold")
    seen_since(settings, MONDAY_9 - timedelta(days=1))
    first = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(hours=5))
    assert first is not None and first.state == "held"
    week = [MONDAY_9 + timedelta(days=3 + n) for n in range(2)]  # news of the following week
    store_items(settings, week, MONDAY_9 + timedelta(days=6), prefix="n", title="Neu")
    second = schedule.check_due(settings, campaign(settings), MONDAY_9 + timedelta(weeks=1, minutes=1))
    assert second is not None and second.state == "queued" and second.edition_id != first.edition_id
    old = compose.get_edition(settings, first.edition_id or 0)
    assert old.state == "skipped" and "superseded" in (old.skip_reason or "")
    assert queued(settings) == 3
