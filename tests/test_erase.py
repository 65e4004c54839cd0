"""``subscribers erase``: afterwards the address and the name are nowhere in the database, on SQLite in
none of its files (the raw bytes of the database, ``-wal`` and ``-shm`` files are searched), on
PostgreSQL in no text column of any table; only the keyed hash stays. The outbox rows stay for the
counts, with the servers' echoes of the address cleaned; a row a worker holds during the erasure is
taken from it. On a terminal the command asks first (pexpect); without one it needs ``--yes``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pexpect
import pytest
import time_machine
from sqlalchemy import func, select, text

from imk_outreach.config import Settings
from imk_outreach.db import store, tables
from imk_outreach.models import Subscriber
from imk_outreach.services import dispatch, subscriptions, tokens
from imk_outreach.services.database import dispose_all, engine_for, sqlite_path
from imk_outreach.services.erasure import ERASED_MARKER, scrubber
from tests.conftest import ConfigFactory
from tests.support.smtpserver import SmtpTestServer
from tests.test_dispatch import approve_and_send, make

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
COMMAND = str(Path(sys.executable).parent / "imk-outreach")
ADDRESS = "Dora.Geheim@example.org"
NAME = "Dorothea Quastenflosser"
KEPT = "keep.me@example.org"
# What must be gone: the address in any case, its local part, the name and each part of it.
NEEDLES = ("dora.geheim@example.org", "dora.geheim", "dorothea", "quastenflosser")


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


def _people(settings: Settings) -> None:
    subscriptions.add(settings, ADDRESS, NAME, "de", ["newsletter"], now=NOW)
    subscriptions.add(settings, KEPT, "Karl Behalten", "en", ["newsletter"], now=NOW)


def _echoing_server(server: SmtpTestServer) -> None:
    """First a deferral, then a refusal, each echoing the address (in another case) and the name."""
    server.respond(ADDRESS, f"451 4.2.0 <{ADDRESS.lower()}>: greylisted, try again", times=1)
    server.respond(ADDRESS, f"550 5.1.1 <{ADDRESS}> ({NAME}): user unknown")


def _delivered(make_settings: ConfigFactory, tmp_path: Path, server: SmtpTestServer) -> Settings:
    """The edition went to both; the erased-to-be got a 451 and then a 550, both echoing them."""
    settings = make(make_settings, tmp_path, server)
    _people(settings)
    _echoing_server(server)
    approve_and_send(settings, NOW)
    dispatch.deliver(settings)
    dispatch.deliver(settings)  # the retry (no back-off in these settings): now refused for good
    with engine_for(settings).begin() as conn:  # evidence of their own, as the consent helper keeps it
        dora = store.find_subscriber(conn, ADDRESS)
        assert dora is not None and dora.status == "bounced"
        conn.execute(
            tables.consent_events.insert().values(
                subscriber_id=dora.id, kind="signup", at=NOW, source="cli", note=f"{NAME} <{ADDRESS}>"
            )
        )
    return settings


def _sqlite_bytes(settings: Settings) -> bytes:
    path = sqlite_path(settings)
    assert path is not None
    files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
    return b"".join(f.read_bytes() for f in files if f.exists()).lower()


def _postgres_texts(settings: Settings, needle: str) -> list[str]:
    """``table.column`` of every text column holding ``needle`` (any case)."""
    found = []
    with engine_for(settings).connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() "
                "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')"
            )
        ).all()
        for table, column in columns:
            query = f'SELECT count(*) FROM "{table}" WHERE lower("{column}"::text) LIKE :needle'
            if conn.execute(text(query), {"needle": f"%{needle}%"}).scalar_one():
                found.append(f"{table}.{column}")
    return found


def _holders(settings: Settings, needle: str) -> list[str]:
    """Where ``needle`` (lower case) is still stored: file names on SQLite, columns on PostgreSQL."""
    if engine_for(settings).dialect.name == "sqlite":
        return ["sqlite files"] if needle.encode() in _sqlite_bytes(settings) else []
    return _postgres_texts(settings, needle)


def test_after_erase_neither_address_nor_name_is_in_the_database(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = _delivered(make_settings, tmp_path, smtp_server)
    for needle in (*NEEDLES, KEPT):  # the search finds what is there (so it can find what is not)
        assert _holders(settings, needle), needle

    erased = subscriptions.erase(settings, ADDRESS.upper(), NOW)

    for needle in NEEDLES:
        assert _holders(settings, needle) == [], needle
    assert _holders(settings, KEPT)
    assert erased.files_cleared and erased.outbox_rows == 1
    with engine_for(settings).connect() as conn:
        rows = conn.execute(select(tables.outbox).order_by(tables.outbox.c.id)).all()
        events = conn.execute(select(func.count()).select_from(tables.consent_events)).scalar_one()
        kept = store.find_subscriber(conn, KEPT)
        assert kept is not None
        kept_events = conn.execute(
            select(func.count()).where(tables.consent_events.c.subscriber_id == kept.id)
        ).scalar_one()
        hashes = conn.execute(select(tables.erased_addresses.c.email_hash)).scalars().all()
    assert len(rows) == 2  # the delivery counts stay
    gone = [row for row in rows if row.subscriber_id is None]
    assert len(gone) == 1 and gone[0].state == "failed"
    assert gone[0].error == f"550 5.1.1 <{ERASED_MARKER}> ({ERASED_MARKER}): user unknown"
    assert events == kept_events  # theirs went with them
    assert hashes == [tokens.address_hash(tokens.secret_key(settings), ADDRESS)]
    if engine_for(settings).dialect.name == "sqlite":
        path = sqlite_path(settings)
        assert path is not None and Path(f"{path}-wal").stat().st_size == 0


def test_a_row_a_worker_holds_during_the_erasure_is_taken_from_it(
    make_settings: ConfigFactory, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = make(make_settings, tmp_path, smtp_server)
    _people(settings)
    approve_and_send(settings, NOW)
    with engine_for(settings).begin() as conn:
        held = store.claim_batch(conn, "w1", NOW + timedelta(minutes=1), NOW + timedelta(minutes=5), 10)
    assert len(held) == 2

    subscriptions.erase(settings, ADDRESS, NOW)

    dora_row = [d for d in held if d.subscriber_id not in (None, _id(settings, KEPT))]
    with engine_for(settings).begin() as conn:  # the worker comes back with the server's echo
        results = [
            {"id": d.id, "state": "failed", "error": f"550 <{ADDRESS}>: user unknown"} for d in dora_row
        ]
        assert store.mark_deliveries(conn, "w1", results, NOW) == 0
        row = conn.execute(select(tables.outbox).where(tables.outbox.c.id == dora_row[0].id)).one()
    assert (row.state, row.claimed_by, row.attempts, row.error) == ("queued", None, 0, None)
    dispatch.deliver(settings)
    with engine_for(settings).connect() as conn:
        row = conn.execute(select(tables.outbox).where(tables.outbox.c.id == dora_row[0].id)).one()
    assert (row.state, row.error) == ("cancelled", "recipient erased before sending")


def _id(settings: Settings, address: str) -> int | None:
    with engine_for(settings).connect() as conn:
        found = store.find_subscriber(conn, address)
    return found.id if found else None


@pytest.mark.parametrize(
    ("address", "reply", "expected"),
    [
        ("anna@example.org", "550 5.1.1 <ANNA@Example.ORG>: unknown", "550 5.1.1 <(erased)>: unknown"),
        ("anna@bücher.example", "550 <anna@xn--bcher-kva.example> no", "550 <(erased)> no"),
        ("anna.b@example.org", "550 anna.b... User unknown", "550 (erased)... User unknown"),
        ("an@example.org", "550 an error for Ann Li", "550 an error for (erased)"),  # short parts stay
        ("x@example.org", "452 4.2.2 Anne-Marie Lindqvist over quota", "452 4.2.2 (erased) over quota"),
    ],
)
def test_the_scrubber_finds_every_form_of_the_address_and_name(
    address: str, reply: str, expected: str
) -> None:
    name = {"an@example.org": "Ann Li", "x@example.org": "Anne-Marie  Lindqvist"}.get(address, "")
    subscriber = Subscriber(email=address, language="de", name=name)
    assert scrubber(subscriber)(reply) == expected


# -- the command: asks on a terminal, --yes for scripts ---------------------------------------------


def _spawn(settings: Settings, *args: str) -> pexpect.spawn:
    dispose_all()  # SQLite: no connection of this process stays open while the command writes
    argv = ["subscribers", "erase", *args, "--config", str(settings.config_path)]
    return pexpect.spawn(COMMAND, argv, timeout=60, encoding="utf-8", dimensions=(40, 200))


def _finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1), child.before or ""


@pytest.fixture
def two(make_settings: ConfigFactory) -> Settings:
    settings = make_settings([], lists={"newsletter": {"de": "Newsletter", "en": "Newsletter"}})
    _people(settings)
    return settings


def test_on_a_terminal_typing_the_address_erases(two: Settings) -> None:
    code, output = _finish(_spawn(two, "nobody@example.org"))  # unknown: an error before any question
    assert code == 1 and "no subscriber with the address 'nobody@example.org'" in output
    assert "Type the address" not in output

    child = _spawn(two, ADDRESS.lower())
    child.expect(rf"Erase {ADDRESS} \({NAME}, confirmed, 0 messages queued for them\) for good\?")
    child.expect("cannot be undone")
    child.expect(rf"Type the address \({ADDRESS}\) or yes to erase: ")
    child.sendline(ADDRESS.lower())
    code, output = _finish(child)
    assert code == 0, output
    assert f"erased {ADDRESS}: only a keyed hash" in output
    assert _id(two, ADDRESS) is None and _id(two, KEPT) is not None


def test_on_a_terminal_yes_erases_and_anything_else_changes_nothing(two: Settings) -> None:
    child = _spawn(two, ADDRESS)
    child.expect("or yes to erase: ")
    child.sendline("dora")
    code, output = _finish(child)
    assert code == 1, output
    assert "Not confirmed (you typed 'dora'): nothing was erased." in output
    assert _id(two, ADDRESS) is not None

    child = _spawn(two, ADDRESS)
    child.expect("or yes to erase: ")
    child.sendline("yes")
    assert _finish(child)[0] == 0
    assert _id(two, ADDRESS) is None


def test_without_a_terminal_it_refuses_unless_yes(two: Settings) -> None:
    dispose_all()
    command = [COMMAND, "subscribers", "erase", ADDRESS, "--config", str(two.config_path)]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing was erased. Add --yes" in done.stderr
    assert _id(two, ADDRESS) is not None

    dispose_all()
    done = subprocess.run(
        [*command, "--yes"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _id(two, ADDRESS) is None
