"""The documentation stands on its own and matches the code: README's first commands, every command and
campaign key documented, the systemd units, and the SQLite-to-PostgreSQL copy script of operations.md."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, func, select

from imk_outreach import cli
from imk_outreach.campaigns.loader import NewsletterFile, ScheduleFile, SectionFile, SelectFile, SocialFile
from imk_outreach.db.tables import metadata

REPO = Path(__file__).parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
DEPLOY = REPO / "deploy"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Top-level command -> its actions (``db upgrade``, ``subscribers import``, ...), from the parser."""

    def choices(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    return {name: sorted(choices(sub)) for name, sub in choices(parser).items()}


# -- README ---------------------------------------------------------------------------------------


def test_readme_starts_with_the_two_commands() -> None:
    lines = _read(README).splitlines()
    assert lines[0].startswith("# ")
    body = [line for line in lines[1:] if line.strip()]
    assert body[:4] == ["```sh", "make demo", "make test", "```"]


@pytest.mark.parametrize("path", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_docs_do_not_point_outside_the_repository(path: Path) -> None:
    text = _read(path)
    assert "../shared" not in text
    assert "shared/DESIGN.md" not in text
    assert "shared/STYLE.md" not in text


def test_every_command_is_in_the_readme() -> None:
    readme = _read(README)
    commands = _subcommands(cli.build_parser())
    assert commands, "no subcommands found in build_parser()"
    missing = [name for name in commands if not re.search(rf"`{re.escape(name)}[ `]", readme)]
    for name, actions in commands.items():
        spans = " ".join(re.findall(rf"`{re.escape(name)} [^`]*`", readme))
        missing += [f"{name} {a}" for a in actions if not re.search(rf"\b{re.escape(a)}\b", spans)]
    assert not missing, f"README.md does not list: {missing}"


def test_readme_links_every_doc() -> None:
    readme = _read(README)
    for name in ("config.md", "campaigns.md", "subscribers.md", "operations.md", "architecture.md"):
        assert f"(docs/{name})" in readme, name
    assert "make bench" in readme


# -- campaign files -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [NewsletterFile, SocialFile, SectionFile, SelectFile, ScheduleFile])
def test_every_campaign_key_is_documented(model: type[BaseModel]) -> None:
    docs = _read(DOCS / "campaigns.md")
    missing = [key for key in model.model_fields if not re.search(rf"`(?:[a-z_]+\.)*{key}`", docs)]
    assert not missing, f"docs/campaigns.md does not document {model.__name__} keys: {missing}"


# -- systemd units --------------------------------------------------------------------------------


def _directives(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in _read(path).splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


@pytest.mark.parametrize(
    ("unit", "command"),
    [("imk-outreach.service", "imk-outreach run"), ("imk-outreach-worker@.service", "imk-outreach worker")],
)
def test_units_run_the_command(unit: str, command: str) -> None:
    directives = _directives(DEPLOY / unit)
    assert command in directives["ExecStart"]
    assert directives["Type"] == "simple"
    assert directives["Restart"] == "on-failure"
    assert directives["KillSignal"] == "SIGTERM"
    assert directives["TimeoutStopSec"] == "20"
    for key in ("User", "WorkingDirectory", "EnvironmentFile"):
        assert directives.get(key), f"{unit}: {key} missing"
    assert cli.build_parser().parse_args(command.split()[1:]).command == command.split()[1]


# -- the copy script of operations.md ---------------------------------------------------------------


def _copy_script() -> str:
    text = _read(DOCS / "operations.md")
    marker = text.index("<!-- copy-database-script")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match is not None, "the copy script's code block follows its marker"
    return match.group(1)


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
        }
    engine.dispose()
    return counts


def test_copy_script_moves_every_table(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    config = tmp_path / "config.yaml"
    feeds = REPO / "samples" / "feeds"
    config.write_text(
        f"database_url: {source_url}\n"
        "sources:\n"
        f"  - {{name: iot, type: rss, url: {feeds / 'dehub-iot.xml'}, language: de, tags: [iot]}}\n"
        f"  - {{name: film, type: jsonfeed, url: {feeds / 'film-highlights.json'}, language: en}}\n",
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text("email,name,language,lists\nerika@example.org,Erika,de,newsletter\n", encoding="utf-8")
    assert cli.main(["--config", str(config), "gather"]) == 0
    assert cli.main(["--config", str(config), "subscribers", "import", str(people)]) == 0
    monkeypatch.setenv("IMK_DATABASE_URL", db_url)
    assert cli.main(["--config", str(config), "db", "upgrade"]) == 0
    script = tmp_path / "copy_database.py"
    script.write_text(_copy_script(), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, str(script), source_url, db_url], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    expected = {name: n for name, n in _counts(source_url).items() if name != "processes"}
    copied = {name: n for name, n in _counts(db_url).items() if name != "processes"}
    assert copied == expected
    assert expected["items"] > 0 and expected["subscribers"] == 1
    # New rows get new ids (the id sequences were moved past the copied ones).
    assert cli.main(["--config", str(config), "subscribers", "add", "jane@example.com"]) == 0
    again = subprocess.run(
        [sys.executable, str(script), source_url, db_url], capture_output=True, text=True, timeout=120
    )
    assert again.returncode != 0 and "not empty" in again.stderr
    capsys.readouterr()
