"""No empty or thin edition goes out unasked: approve and send refuse an edition below ``min_items``
without ``--force`` (CLI, services and the scheduler); ``approve CAMPAIGN`` takes its draft; ``discard``
removes a draft. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.tables import edition_items, outbox
from imk_outreach.models import Subscriber
from imk_outreach.services import compose, dispatch, editions_admin, schedule, send_plan
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.items import days_before, store_items

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday; 10:00 in Berlin
FILM_WEEKLY = """\
name: film-weekly
list: film
languages: [de, en]
min_items: 1
subject: {de: "Film-Woche", en: "Film week"}
sections:
  - {id: film, heading: {de: Film, en: Film}, select: {tags: [film], since: 7d}}
"""
WEEKLY = """\
name: weekly
list: film
languages: [de, en]
schedule: {{cron: "0 10 * * mon"}}
grace: 2h
late_policy: hold
approval: {approval}
min_items: {min_items}
subject: {{de: "Woche", en: "Week"}}
sections:
  - {{id: news, heading: {{de: Neues, en: News}}, select: {{tags: [iot], since: 30d}}}}
"""


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    """The CLI reads the clock itself: it stands at NOW."""
    with time_machine.travel(NOW, tick=False):
        yield


def make(
    make_settings: ConfigFactory, tmp_path: Path, approval: str = "required", min_items: int = 2
) -> Settings:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    (folder / "film-weekly.yaml").write_text(FILM_WEEKLY, "utf-8")
    (folder / "weekly.yaml").write_text(WEEKLY.format(approval=approval, min_items=min_items), "utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual", "tags": ["iot"]}],
        lists={"film": {"de": "Film", "en": "Film"}, "news": {"de": "News", "en": "News"}},
        tagging={"film": ["Kino"]},
    )
    store_items(settings, days_before(NOW, 3), NOW)  # three iot items, no film item
    with engine_for(settings).begin() as conn:
        for n, language in enumerate(["de", "de", "en", "fr"]):
            person = Subscriber(f"p{n}@example.org", language, lists=("film",), status="confirmed")
            store.save_subscriber(conn, person, NOW)
    return settings


def outbox_rows(settings: Settings) -> int:
    return sum(sum(s.counts.values()) for s in dispatch.status(settings))


def run(args: list[str], settings: Settings) -> int:
    return cli.main([*args, "--config", str(settings.config_path)])


def last_line(text: str) -> str:
    """The last line a command printed (a log handler a test before left behind may add lines)."""
    return text.strip().splitlines()[-1]


def set_min_items(settings: Settings, min_items: int, approval: str = "required") -> None:
    """Staff edit the campaign file: its drafts are judged by the new ``min_items`` from now on."""
    path = settings.resolve_path("campaigns") / "weekly.yaml"
    path.write_text(WEEKLY.format(approval=approval, min_items=min_items), "utf-8")


def test_an_empty_draft_is_neither_approved_nor_sent_without_force(
    make_settings: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make(make_settings, tmp_path)
    assert run(["preview", "film-weekly", "--out", str(tmp_path / "p")], settings) == 0
    assert "Would be skipped: only 0 new items" in capsys.readouterr().out
    [draft] = compose.list_editions(settings, "film-weekly")
    expected = (
        f"edition {draft.id} of film-weekly has only 0 new items; the campaign needs 1 (min_items). "
        "Add --force to approve it anyway"
    )
    assert run(["approve", str(draft.id)], settings) == 1
    assert last_line(capsys.readouterr().err) == f"error: {expected}"
    assert run(["approve", "film-weekly"], settings) == 1  # by campaign name: the same draft
    assert expected in capsys.readouterr().err
    assert compose.get_edition(settings, draft.id).state == "draft"
    assert run(["send", "film-weekly", "--yes"], settings) == 1
    assert "nothing to send: only 0 new items, the campaign needs 1 (min_items)" in capsys.readouterr().err
    assert run(["send", "film-weekly", "--yes", "--force"], settings) == 1  # forced, yet not approved
    assert f"edition {draft.id} of film-weekly waits for approval" in capsys.readouterr().err
    assert outbox_rows(settings) == 0

    assert run(["approve", "film-weekly", "--force", "--by", "anna"], settings) == 0
    captured = capsys.readouterr()
    assert f"warning: edition {draft.id} of film-weekly has only 0 new items" in captured.err
    assert "approved anyway (--force)" in captured.err
    assert f"Edition {draft.id} of film-weekly approved by anna" in captured.out
    assert compose.get_edition(settings, draft.id).state == "approved"

    assert run(["send", "film-weekly", "--yes"], settings) == 1  # approved, still too short to queue
    err = capsys.readouterr().err
    assert "has only 0 new items; the campaign needs 1 (min_items). Add --force to send it anyway" in err
    assert outbox_rows(settings) == 0 and compose.get_edition(settings, draft.id).state == "approved"

    assert run(["send", "film-weekly", "--yes", "--force"], settings) == 0
    captured = capsys.readouterr()
    assert "sending anyway (--force)" in captured.err
    assert f"Edition {draft.id} of film-weekly: 4 messages queued" in captured.out
    assert compose.get_edition(settings, draft.id).state == "queued" and outbox_rows(settings) == 4


def test_new_items_are_counted_against_what_earlier_editions_sent(
    make_settings: ConfigFactory, tmp_path: Path
) -> None:
    settings = make(make_settings, tmp_path, min_items=2)
    first = compose.compose(settings, "weekly", NOW).edition
    assert first is not None and len(first.items) == 3
    compose.approve(settings, first.id, by="anna", now=NOW)
    assert dispatch.send(settings, "weekly", NOW).queued == 4
    later = NOW + timedelta(days=1)
    store_items(settings, [later - timedelta(hours=1)], later, prefix="n")  # one new item since
    assert compose.compose(settings, "weekly", later).edition is None  # a run would skip it
    draft = compose.compose(settings, "weekly", later, keep_short=True).edition  # as preview does
    assert draft is not None and [i.id for i in draft.items] == ["n1"]
    short = compose.shortfall(settings, draft)
    assert short is not None and (short.new_items, short.min_items) == (1, 2)
    with pytest.raises(compose.ShortEditionError, match=r"has only 1 new item; the campaign needs 2"):
        compose.approve(settings, draft.id, by="anna", now=later)
    assert compose.approve(settings, draft.id, by="anna", now=later, force=True).state == "approved"


def test_auto_approval_never_approves_a_short_edition(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path, approval="auto", min_items=5)
    result = compose.compose(settings, "weekly", NOW, keep_short=True)
    assert result.edition is not None and result.edition.state == "draft"
    assert result.skipped == "only 3 new items, the campaign needs 5 (min_items)"
    with pytest.raises(compose.EditionError, match="nothing to send: only 3 new items"):
        dispatch.send(settings, "weekly", NOW)
    assert outbox_rows(settings) == 0


def test_the_scheduler_does_not_queue_a_short_edition(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path, min_items=2)
    campaign = compose.get_campaign(settings, "weekly")
    with engine_for(settings).begin() as conn:
        store.set_checked_until(conn, "weekly", "cron: 0 10 * * mon", NOW - timedelta(days=1))
    waiting = schedule.check_due(settings, campaign, NOW + timedelta(minutes=1))
    assert waiting is not None and waiting.state == "waiting" and waiting.edition_id is not None
    set_min_items(settings, 5)  # now the draft of 3 items is short
    campaign = compose.get_campaign(settings, "weekly")
    with pytest.raises(compose.ShortEditionError, match="Add --force to approve it anyway"):
        schedule.approve_and_release(settings, waiting.edition_id, "anna", NOW + timedelta(minutes=2))
    done = schedule.approve_edition(settings, "weekly", "anna", NOW + timedelta(minutes=2), force=True)
    assert done.shortfall is not None and done.shortfall.new_items == 3 and done.released is None
    [after] = schedule.advance_all(settings, [campaign], NOW + timedelta(minutes=3))
    assert after.state == "waiting" and outbox_rows(settings) == 0
    assert "has only 3 new items; the campaign needs 5 (min_items)" in (after.note or "")
    report = dispatch.send(settings, "weekly", NOW + timedelta(minutes=4), force=True)  # a person, forced
    assert report.queued == 4 and report.shortfall is not None


def test_releasing_a_short_held_edition_needs_force(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path, min_items=2)
    draft = compose.compose(settings, "weekly", NOW).edition
    assert draft is not None
    with engine_for(settings).begin() as conn:
        store.set_edition_state(conn, draft.id, "held")  # late: it waits for a person
    set_min_items(settings, 4)
    with pytest.raises(compose.ShortEditionError):
        schedule.approve_and_release(settings, draft.id, "anna", NOW)
    assert compose.get_edition(settings, draft.id).state == "held" and outbox_rows(settings) == 0
    edition, released = schedule.approve_and_release(settings, draft.id, "anna", NOW, force=True)
    assert released is not None and released.queued == 4 and released.shortfall is not None
    assert compose.get_edition(settings, edition.id).state == "queued"


def test_approve_by_campaign_name(
    make_settings: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make(make_settings, tmp_path)
    assert run(["approve", "weekly"], settings) == 1
    assert (
        last_line(capsys.readouterr().err) == "error: no draft of weekly; run 'imk-outreach preview weekly'"
    )
    assert run(["approve", "no-such"], settings) == 1
    assert "no campaign named 'no-such'" in capsys.readouterr().err
    draft = compose.compose(settings, "weekly", NOW).edition
    assert draft is not None
    assert run(["approve", "weekly", "--by", "ben"], settings) == 0
    assert f"Edition {draft.id} of weekly approved by ben" in capsys.readouterr().out
    assert compose.get_edition(settings, draft.id).approved_by == "ben"


def test_discard_removes_a_draft_so_the_next_preview_composes_afresh(
    make_settings: ConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make(make_settings, tmp_path)
    draft = compose.compose(settings, "weekly", NOW).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="anna", now=NOW)  # approved: compose would keep it frozen
    with engine_for(settings).begin() as conn:
        run_row = store.add_run(conn, "weekly", NOW, NOW + timedelta(hours=2), 0, NOW)
        assert run_row is not None
        store.update_run(conn, run_row.id, NOW, edition_id=draft.id, state="waiting")
    assert run(["discard", "weekly"], settings) == 0
    assert f"Edition {draft.id} of weekly (approved) discarded" in capsys.readouterr().out
    assert compose.list_editions(settings, "weekly") == []
    with engine_for(settings).connect() as conn:
        assert store.get_edition(conn, draft.id) is None
        [kept] = store.list_runs(conn, campaign="weekly")
    assert kept.edition_id is None  # the run's record stays, without the edition
    with engine_for(settings).connect() as conn:
        selection = conn.execute(select(func.count()).select_from(edition_items)).scalar_one()
    assert selection == 0
    later = NOW + timedelta(minutes=5)
    result = compose.compose(settings, "weekly", later)
    fresh = result.edition
    assert fresh is not None and not result.reused and fresh.state == "draft" and fresh.approved_by is None
    assert fresh.created_at == later and len(fresh.items) == 3

    compose.approve(settings, fresh.id, by="anna", now=NOW)
    dispatch.send(settings, "weekly", NOW)
    assert run(["discard", str(fresh.id)], settings) == 1
    err = capsys.readouterr().err
    assert (
        f"edition {fresh.id} of weekly is queued: it is being sent; 'imk-outreach cancel {fresh.id}'" in err
    )
    editions_admin.cancel(settings, fresh.id, "anna", NOW)
    with pytest.raises(compose.EditionError, match="is cancelled and is kept as the record"):
        editions_admin.discard(settings, fresh.id)
    assert run(["discard", "weekly"], settings) == 1
    assert "no draft of weekly" in capsys.readouterr().err


def test_the_plan_counts_the_recipients_enqueue_picks(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    with engine_for(settings).begin() as conn:  # not counted: pending, unsubscribed, another list
        for n, (status, lists) in enumerate([("pending", ("film",)), ("unsubscribed", ("film",))]):
            store.save_subscriber(conn, Subscriber(f"x{n}@example.org", "de", lists, status=status), NOW)
        store.save_subscriber(conn, Subscriber("y@example.org", "en", ("news",), status="confirmed"), NOW)
    draft = compose.compose(settings, "weekly", NOW).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="anna", now=NOW)
    plan = send_plan.plan(settings, "weekly", NOW)
    by_language = {lang.language: lang.recipients for lang in plan.languages}
    assert plan.refusal is None and plan.frozen and plan.edition.id == draft.id
    assert by_language == {"de": 3, "en": 1}  # the fr reader gets the first language, as enqueue does
    assert [lang.subject for lang in plan.languages] == ["Woche", "Week"]
    report = dispatch.send(settings, "weekly", NOW, edition_id=plan.edition.id)
    assert report.queued == plan.recipients == 4 and plan.recipients == sum(by_language.values())
    query = (
        select(outbox.c.language, func.count())
        .where(outbox.c.edition_id == draft.id)
        .group_by(outbox.c.language)
    )
    with engine_for(settings).connect() as conn:
        queued = {language: count for language, count in conn.execute(query)}
    assert queued == by_language
