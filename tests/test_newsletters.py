"""Compose, approve, check and preview end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from imk_outreach import cli
from imk_outreach.db import store
from imk_outreach.models import NewsItem, Subscriber
from imk_outreach.services import compose
from imk_outreach.services.check import run_checks
from imk_outreach.services.database import engine_for
from imk_outreach.services.preview import preview
from tests.conftest import ConfigFactory

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
approval: {approval}
min_items: {min_items}
subject: {{de: "Digest {{{{ edition.date|month }}}}", en: "Digest {{{{ edition.date|month }}}}"}}
intro: {{de: "Hallo.", en: "Hello."}}
sections:
  - {{id: tech, heading: {{de: Technik, en: Tech}}, select: {{tags: [iot], since: 30d, max: 3}}}}
  - {{id: film, heading: {{de: Film, en: Film}}, select: {{tags: [film], since: 30d}}}}
"""


def news(n: int, tag: str, **changes: object) -> NewsItem:
    values: dict[str, object] = {
        "id": f"item{n:02d}",
        "url": f"https://example.org/{n}",
        "source": "manual",
        "title": f"Meldung {n}",
        "summary_html": f"<p>Text {n}</p>",
        "published_at": NOW - timedelta(days=n),
        "language": "de",
        "tags": (tag,),
    }
    values.update(changes)
    return NewsItem(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(make_settings: ConfigFactory, tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(approval: str = "required", min_items: int = 2):  # type: ignore[no-untyped-def]
        folder = tmp_path / "campaigns"
        folder.mkdir(exist_ok=True)
        (folder / "digest.yaml").write_text(CAMPAIGN.format(approval=approval, min_items=min_items), "utf-8")
        made = make_settings(
            [{"name": "manual", "type": "manual", "url": "manual"}],
            tagging={"iot": ["IoT"], "film": ["Film"]},
        )
        with engine_for(made).begin() as conn:
            items = [news(1, "iot"), news(2, "iot"), news(3, "film"), news(4, "iot"), news(5, "iot")]
            store.upsert_items(conn, "manual", items, NOW)
        return made

    return build


def test_compose_makes_a_draft_and_refreshes_it(settings) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    first = compose.compose(s, "digest", NOW)
    assert first.edition is not None and first.edition.state == "draft"
    assert [[i.id for i in sec.items] for sec in first.edition.sections] == [
        ["item01", "item02", "item04"],
        ["item03"],
    ]
    assert first.edition.content_hash and len(first.edition.content_hash) == 64
    again = compose.compose(s, "digest", NOW + timedelta(hours=1))
    assert again.edition is not None and again.edition.id == first.edition.id
    assert len(compose.list_editions(s)) == 1


def test_items_sent_before_are_never_repeated(settings) -> None:  # type: ignore[no-untyped-def]
    s = settings(min_items=1)
    first = compose.compose(s, "digest", NOW).edition
    assert first is not None
    with engine_for(s).begin() as conn:
        store.set_edition_state(conn, first.id, "sent")
    second = compose.compose(s, "digest", NOW + timedelta(days=1)).edition
    assert second is not None and second.id != first.id
    assert {i.id for i in second.items} == {"item05"}


def test_too_few_new_items_skips_with_reason(settings, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    s = settings(min_items=9)
    result = compose.compose(s, "digest", NOW)
    assert result.edition is None and result.new_items == 4
    assert result.skipped == "only 4 new items, the campaign needs 9 (min_items)"
    assert "edition skipped" in caplog.text
    assert compose.list_editions(s) == []


def test_approval_records_and_is_voided_by_a_change(settings) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    edition = compose.compose(s, "digest", NOW).edition
    assert edition is not None
    approved = compose.approve(s, edition.id, by="anna", now=NOW)
    assert (approved.state, approved.approved_by, approved.approved_at) == ("approved", "anna", NOW)
    assert approved.approved_hash == approved.content_hash
    assert compose.approval_state(s, compose.get_edition(s, edition.id)) == "approved"
    # an approved edition is frozen: composing again returns it unchanged
    assert compose.compose(s, "digest", NOW + timedelta(hours=2)).reused
    with engine_for(s).begin() as conn:  # the source corrects a title after approval
        assert store.upsert_items(conn, "manual", [news(1, "iot", title="Korrigiert")], NOW) == (0, 1)
    stored = compose.get_edition(s, edition.id)
    assert compose.approval_state(s, stored) == "approval void (content changed)"
    again = compose.approve(s, edition.id, by="ben", now=NOW)
    assert again.approved_by == "ben" and again.approved_hash != approved.approved_hash


def test_auto_approval(settings) -> None:  # type: ignore[no-untyped-def]
    s = settings(approval="auto")
    edition = compose.compose(s, "digest", NOW).edition
    assert edition is not None and edition.state == "approved" and edition.approved_by == "auto"
    assert edition.approval_valid


def test_sent_edition_cannot_be_approved(settings) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    edition = compose.compose(s, "digest", NOW).edition
    assert edition is not None
    with engine_for(s).begin() as conn:
        store.set_edition_state(conn, edition.id, "sent")
    with pytest.raises(compose.EditionError, match="is sent"):
        compose.approve(s, edition.id)
    with pytest.raises(compose.EditionError, match="no edition 99"):
        compose.approve(s, 99)


def test_check_is_clean_then_names_broken_campaign_and_template(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    assert run_checks(s) == []
    campaign = tmp_path / "campaigns" / "digest.yaml"
    campaign.write_text(campaign.read_text("utf-8").replace("max: 3", "max: drei"), "utf-8")
    [problem] = run_checks(s)
    assert str(problem).startswith(f"{campaign}:9: sections[0].select.max:")
    campaign.write_text(campaign.read_text("utf-8").replace("max: drei", "max: 3"), "utf-8")
    staff = tmp_path / "templates" / "newsletter"
    staff.mkdir(parents=True)
    (staff / "_footer.mjml.j2").write_text(
        "<mj-section>\n<mj-column>\n<mj-text>{{ no_such_thing }}</mj-text></mj-column></mj-section>\n",
        "utf-8",
    )
    problems = [str(p) for p in run_checks(s)]
    assert problems and all(p.startswith("newsletter/_footer.mjml.j2:3: ") for p in problems)
    assert "'no_such_thing' is undefined" in problems[0] and "campaign digest" in problems[0]


def test_check_names_broken_mjml(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    staff = tmp_path / "templates" / "newsletter"
    staff.mkdir(parents=True)
    (staff / "default.mjml.j2").write_text("<mjml><mj-body><mj-section>\n", "utf-8")
    problems = [str(p) for p in run_checks(s)]
    assert problems and problems[0].startswith("newsletter/default.mjml.j2")


def test_preview_writes_every_language(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    with engine_for(s).begin() as conn:
        for n, (language, status) in enumerate(
            [("de", "confirmed"), ("de", "confirmed"), ("en", "confirmed"), ("en", "pending")]
        ):
            person = Subscriber(
                email=f"p{n}@example.org", language=language, lists=("newsletter",), status=status
            )
            store.save_subscriber(conn, person, NOW)
    result = preview(s, "digest", tmp_path / "out", NOW)
    assert set(result.files) == {"de", "en"}
    de_html = result.files["de"][0].read_text("utf-8")
    assert 'lang="de"' in de_html and "Weiterlesen" in de_html and "IMKPH_" not in de_html
    en_text = result.files["en"][1].read_text("utf-8")
    assert "Read more" in en_text or "Meldung 1" in en_text
    index = result.index.read_text("utf-8")
    assert "Digest November 2026" in index and "de.html" in index and "en.html" in index
    assert set(result.rendered["en"].fallbacks) == {f"item0{n}" for n in (1, 2, 3, 4)}
    assert result.recipients == {"de": 2, "en": 1}
    assert 'data-recipients="de">2<' in index and 'data-recipients="en">1<' in index


# The CLI reads the clock itself (the shell passes ``now`` in), so the test freezes it at NOW.
@time_machine.travel(NOW, tick=False)
def test_cli_commands(settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    s = settings()
    config = str(s.config_path)
    assert cli.main(["check", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "note: campaign digest: 'Meldung 1' has no en text; shown in de (fallback)" in out
    assert "All good" in out
    assert cli.main(["preview", "digest", "--out", str(tmp_path / "p"), "--config", config]) == 0
    out = capsys.readouterr().out
    assert "Digest November 2026" in out and str(tmp_path / "p" / "digest" / "index.html") in out
    assert cli.main(["editions", "--json", "--config", config]) == 0
    [edition] = json.loads(capsys.readouterr().out)["editions"]
    assert edition["state"] == "draft" and edition["campaign"] == "digest"
    assert cli.main(["approve", str(edition["id"]), "--by", "anna", "--config", config]) == 0
    assert "approved by anna" in capsys.readouterr().out
    assert cli.main(["approve", "42", "--config", config]) == 1
    assert "no edition 42" in capsys.readouterr().err
    assert cli.main(["preview", "nope", "--config", config]) == 1
    assert "no campaign named 'nope' (known: digest)" in capsys.readouterr().err
    (tmp_path / "campaigns" / "broken.yaml").write_text("name: [unclosed\n", "utf-8")
    assert cli.main(["check", "--json", "--config", config]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and "broken.yaml" in report["problems"][0]["file"]
