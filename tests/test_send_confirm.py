"""``send CAMPAIGN`` shows its plan and asks on a terminal before it queues anything: the real command
in a pseudo-terminal (pexpect), on SQLite and PostgreSQL. ``--yes`` for scripts, a refusal without a
terminal, ``--dry-run`` changes nothing.

The command runs in its own process with the machine's clock, so the items are stored relative to the
clock of this test (the same on any day); the editions themselves are composed and approved here."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pexpect
import pytest
from sqlalchemy import func, select

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.tables import editions, outbox
from imk_outreach.models import Subscriber
from imk_outreach.services import compose
from imk_outreach.services.database import dispose_all, engine_for
from tests.conftest import ConfigFactory
from tests.support.items import days_before, store_items

COMMAND = str(Path(sys.executable).parent / "imk-outreach")
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
approval: {approval}
min_items: 1
subject: {{de: "Digest Technik", en: "Tech digest"}}
sections:
  - {{id: tech, heading: {{de: Technik, en: Tech}}, select: {{tags: [iot], since: 30d}}}}
"""


def make(make_settings: ConfigFactory, tmp_path: Path, approval: str = "required") -> Settings:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    (folder / "digest.yaml").write_text(CAMPAIGN.format(approval=approval), "utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual"}],
        lists={"newsletter": {"de": "Newsletter", "en": "Newsletter"}},
        smtp={"host": "127.0.0.1", "port": 9},  # never used: send only queues
    )
    now = datetime.now(UTC)
    store_items(settings, days_before(now, 3), now)
    with engine_for(settings).begin() as conn:
        for n, language in enumerate(["de", "de", "de", "en"]):
            sub = Subscriber(f"p{n}@example.org", language, ("newsletter",), status="confirmed")
            store.save_subscriber(conn, sub, now)
    return settings


def approved_edition(settings: Settings) -> int:
    now = datetime.now(UTC)
    draft = compose.compose(settings, "digest", now).edition
    assert draft is not None
    compose.approve(settings, draft.id, by="anna", now=now)
    return draft.id


def snapshot(settings: Settings) -> tuple[int, list[tuple[int, str]]]:
    """(outbox rows, [(edition id, state)]): what a send would change."""
    with engine_for(settings).connect() as conn:
        rows = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        found = conn.execute(select(editions.c.id, editions.c.state).order_by(editions.c.id)).all()
    dispose_all()  # SQLite: no connection of this process stays open while the command writes
    return int(rows), [(int(i), str(s)) for i, s in found]


def spawn(settings: Settings, *args: str) -> pexpect.spawn:
    argv = ["send", "digest", *args, "--config", str(settings.config_path)]
    return pexpect.spawn(COMMAND, argv, timeout=60, encoding="utf-8", dimensions=(40, 200))


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1), child.before or ""


def expect_plan(child: pexpect.spawn, edition: int) -> None:
    child.expect(rf"Send digest: edition {edition} \(approved\), composed \d{{4}}-\d\d-\d\d \d\d:\d\d")
    child.expect("3 items, 3 new")
    child.expect(r'de: 3 recipients, subject "Digest Technik"')
    child.expect(r'en: 1 recipient, subject "Tech digest"')
    child.expect("4 recipients in all")


def test_typing_the_campaign_name_queues_it(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    assert snapshot(settings) == (0, [(edition, "approved")])
    child = spawn(settings)
    expect_plan(child, edition)
    child.expect(r"Type the campaign name \(digest\) to queue it for 4 recipients: ")
    child.sendline("digest")
    code, output = finish(child)
    assert code == 0, output
    assert f"Edition {edition} of digest: 4 messages queued" in output
    assert snapshot(settings) == (4, [(edition, "queued")])


def test_a_wrong_answer_queues_nothing(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    child = spawn(settings)
    expect_plan(child, edition)
    child.expect("Type the campaign name")
    child.sendline("digets")
    code, output = finish(child)
    assert code == 1, output
    assert "Not confirmed (you typed 'digets', not 'digest'): nothing was queued." in output
    assert snapshot(settings) == (0, [(edition, "approved")])


def test_ctrl_d_at_the_question_queues_nothing(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    child = spawn(settings)
    child.expect("Type the campaign name")
    child.sendeof()
    code, output = finish(child)
    assert code == 1 and "nothing was queued" in output, output
    assert snapshot(settings) == (0, [(edition, "approved")])


def run_without_terminal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [COMMAND, "send", "digest", *args, "--config", str(settings.config_path)]
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_a_terminal_it_refuses_unless_yes(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    refused = run_without_terminal(settings)
    assert refused.returncode == 1, refused.stderr
    assert "send asks for confirmation on a terminal, and there is none; nothing was queued" in refused.stderr
    assert "Add --yes" in refused.stderr
    assert "4 recipients in all" in refused.stdout  # the plan is shown all the same
    assert snapshot(settings) == (0, [(edition, "approved")])
    done = run_without_terminal(settings, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"Edition {edition} of digest: 4 messages queued" in done.stdout
    assert snapshot(settings) == (4, [(edition, "queued")])


def test_yes_on_a_terminal_does_not_ask(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    code, output = finish(spawn(settings, "--yes"))
    assert code == 0, output
    assert "Type the campaign name" not in output and "4 messages queued" in output
    assert snapshot(settings) == (4, [(edition, "queued")])


def test_dry_run_shows_the_plan_and_changes_nothing(make_settings: ConfigFactory, tmp_path: Path) -> None:
    settings = make(make_settings, tmp_path)
    edition = approved_edition(settings)
    before = snapshot(settings)
    child = spawn(settings, "--dry-run")
    expect_plan(child, edition)
    code, output = finish(child)
    assert code == 0, output
    assert "Dry run: nothing was queued or changed." in output and "Type the campaign name" not in output
    assert snapshot(settings) == before == (0, [(edition, "approved")])


@pytest.mark.parametrize(
    ("approval", "code", "says"), [("auto", 0, "Dry run"), ("required", 1, "waits for approval")]
)
def test_dry_run_composes_nothing(
    make_settings: ConfigFactory, tmp_path: Path, approval: str, code: int, says: str
) -> None:
    """A real send would compose (and, with approval: auto, approve) an edition; a dry run stores none."""
    settings = make(make_settings, tmp_path, approval=approval)
    assert snapshot(settings) == (0, [])
    exit_code, output = finish(spawn(settings, "--dry-run"))
    assert exit_code == code, output
    assert "a new edition composed now" in output and says in output
    assert "4 recipients in all" in output
    assert snapshot(settings) == (0, [])
