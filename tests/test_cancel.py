"""``cancel EDITION`` stops an edition being delivered: waiting rows end ``cancelled`` at once, rows a
worker already claimed may still go out (it finishes that batch), no worker claims another, and rows a
worker gives back unsent end ``cancelled``, never queued again. On SQLite and PostgreSQL, with a real
delivery loop against a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.tables import outbox
from imk_outreach.services import compose, dispatch, editions_admin
from imk_outreach.services.database import engine_for
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.test_dispatch import add_subscribers, approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """Rows are queued at NOW and deliver reads the clock itself: it runs from NOW (ticking)."""
    with time_machine.travel(NOW, tick=True):
        yield


def rows(settings: Settings, edition_id: int) -> dict[str, tuple[str, str | None]]:
    """Recipient address -> (state, error) of each of the edition's rows."""
    with engine_for(settings).connect() as conn:
        people = {s.id: s.email for s in store.iter_subscribers(conn)}
        query = select(outbox.c.subscriber_id, outbox.c.state, outbox.c.error).where(
            outbox.c.edition_id == edition_id
        )
        return {people[sub]: (state, error) for sub, state, error in conn.execute(query)}


def states(settings: Settings, edition_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state, _ in rows(settings, edition_id).values():
        counts[state] = counts.get(state, 0) + 1
    return counts


def test_cancel_while_a_worker_is_in_the_middle_of_a_batch(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server, batch_size=3, connections=1)
    add_subscribers(settings, 12)
    edition = approve_and_send(settings).edition.id
    smtp_server.respond("person4@example.org", "451 4.3.0 try again later")  # in the second batch
    claimed_at_cancel: set[str] = set()

    def cancel_after_first_batch(report: dispatch.DeliverReport, _pending: int) -> None:
        # Called by the loop after it settled a batch; the next batch is claimed and on its way.
        if report.batches >= 1 and not claimed_at_cancel:
            claimed_at_cancel.update(
                email for email, (state, _) in rows(settings, edition).items() if state in ("sending", "sent")
            )
            cancelled = editions_admin.cancel(settings, edition, "anna")
            assert cancelled.in_flight > 0 and cancelled.sent > 0

    report = dispatch.deliver(settings, until_empty=True, progress=cancel_after_first_batch)
    assert claimed_at_cancel, "the loop never reported a batch"
    delivered = {m.rcpt_tos[0] for m in smtp_server.messages}
    assert delivered <= claimed_at_cancel  # only what was claimed before the cancel went out
    assert "person4@example.org" in claimed_at_cancel and "person4@example.org" not in delivered
    final = rows(settings, edition)
    assert {email for email, (state, _) in final.items() if state == "sent"} == delivered
    assert 3 <= len(delivered) < 12 and report.sent == len(delivered)
    cancelled = {email: error for email, (state, error) in final.items() if state == "cancelled"}
    assert set(cancelled) == set(final) - delivered  # the rest: cancelled, none queued or in retry
    assert all((error or "").startswith("edition cancelled") for error in cancelled.values())
    # the temporary failure after the cancel is not tried again
    assert [address for address, _ in smtp_server.refused].count("person4@example.org") == 1
    assert compose.get_edition(settings, edition).state == "cancelled"  # not marked sent by the worker
    again = dispatch.deliver(settings, until_empty=True)
    assert again.sent == 0 and {m.rcpt_tos[0] for m in smtp_server.messages} == delivered


def test_rows_a_stopping_worker_gives_back_end_cancelled(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 6)
    edition = approve_and_send(settings).edition.id
    now = datetime.now(UTC)
    with engine_for(settings).begin() as conn:  # a worker claims a batch ...
        claimed = store.claim_batch(conn, "worker-a", now, now + timedelta(minutes=1), 4)
    assert len(claimed) == 4
    report = editions_admin.cancel(settings, edition, "anna")
    assert (report.cancelled, report.in_flight, report.sent) == (2, 4, 0)
    with engine_for(settings).begin() as conn:  # ... and stops before sending them
        assert store.release_deliveries(conn, "worker-a", datetime.now(UTC)) == 4
    assert states(settings, edition) == {"cancelled": 6}
    errors = {error for _, error in rows(settings, edition).values()}
    assert errors == {"edition cancelled by anna", "edition cancelled"}  # cancelled waiting, released
    assert dispatch.deliver(settings, until_empty=True).sent == 0
    assert smtp_server.messages == []


def test_a_dead_workers_rows_of_a_cancelled_edition_are_not_taken_over(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 5)
    edition = approve_and_send(settings).edition.id
    now = datetime.now(UTC)
    with engine_for(settings).begin() as conn:
        assert len(store.claim_batch(conn, "worker-dead", now, now + timedelta(seconds=1), 3)) == 3
    editions_admin.cancel(settings, edition, "anna")
    assert states(settings, edition) == {"sending": 3, "cancelled": 2}
    later = now + timedelta(minutes=5)  # the lease ran out: the worker died
    with engine_for(settings).begin() as conn:
        assert store.claim_batch(conn, "worker-b", later, later + timedelta(minutes=1), 10) == []
        assert store.pending_deliveries(conn) == 0
    assert states(settings, edition) == {"cancelled": 5}
    assert smtp_server.messages == []


def test_other_editions_keep_going(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 3)
    first = approve_and_send(settings).edition.id
    editions_admin.cancel(settings, first, "anna")
    # the cancelled edition's items are free again: the next edition may pick them
    second = approve_and_send(settings).edition
    assert second.id != first and len(second.items) == 3
    report = dispatch.deliver(settings, until_empty=True)
    assert report.sent == 3 and states(settings, second.id) == {"sent": 3}
    assert compose.get_edition(settings, second.id).state == "sent"
    assert states(settings, first) == {"cancelled": 3}


def test_cancel_cli_and_what_cannot_be_cancelled(
    make_settings: ConfigFactory,
    tmp_path: Path,
    smtp_server: SmtpTestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    add_subscribers(settings, 3)
    config = ["--config", str(settings.config_path)]
    draft = compose.compose(settings, "digest", NOW).edition
    assert draft is not None
    assert cli.main(["cancel", str(draft.id), *config]) == 1
    err = capsys.readouterr().err
    assert f"edition {draft.id} of digest is draft, not queued" in err
    assert f"'imk-outreach discard {draft.id}' removes it" in err
    assert cli.main(["cancel", "99", *config]) == 1
    assert "no edition 99" in capsys.readouterr().err

    compose.approve(settings, draft.id, by="anna", now=NOW)
    dispatch.send(settings, "digest", NOW)
    assert cli.main(["cancel", str(draft.id), "--by", "ben", *config]) == 0
    out = capsys.readouterr().out
    assert f"Edition {draft.id} of digest cancelled: 3 unsent messages will not go out" in out
    assert {error for _, error in rows(settings, draft.id).values()} == {"edition cancelled by ben"}
    [status] = [s for s in dispatch.status(settings) if s.edition.id == draft.id]
    assert status.edition.state == "cancelled" and status.counts["cancelled"] == 3
    assert "cancelled by ben" in (status.edition.skip_reason or "")
    assert cli.main(["cancel", str(draft.id), *config]) == 1
    assert "is cancelled; only a queued edition can be cancelled" in capsys.readouterr().err

    sent = approve_and_send(settings).edition.id
    dispatch.deliver(settings, until_empty=True)
    assert compose.get_edition(settings, sent).state == "sent"
    assert cli.main(["cancel", str(sent), *config]) == 1
    assert f"edition {sent} of digest was sent already" in capsys.readouterr().err
