"""The documentation stands on its own and matches the code: README's first commands, every command and
campaign key documented, the systemd units, and the SQLite-to-PostgreSQL copy script of operations.md."""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import create_engine, func, select

from imk_outreach import cli
from imk_outreach.campaigns.loader import (
    CampaignContext,
    NewsletterFile,
    ScheduleFile,
    SectionFile,
    SelectFile,
    SocialFile,
    load_campaign,
)
from imk_outreach.config import Settings, SourceSettings, load_settings
from imk_outreach.config_channels import CHANNEL_TYPES
from imk_outreach.db.tables import metadata
from imk_outreach.errors import ConfigErrors, SourceError
from imk_outreach.models import ParseResult, SourceSpec, Validators
from imk_outreach.services.compose import campaign_context
from imk_outreach.services.ingest import source_spec
from imk_outreach.sources.base import get_source
from imk_outreach.sources.fetch import FetchLimits, fetch, make_client
from imk_outreach.sources.html import SELECTOR_KEYS
from imk_outreach.sources.manual import ITEM_KEYS, read_file

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
    for name in (
        "config.md",
        "campaigns.md",
        "sources.md",
        "subscribers.md",
        "operations.md",
        "architecture.md",
        "admin.md",
    ):
        assert f"(docs/{name})" in readme, name
    assert "make bench" in readme


_COMMAND_DOCS = (README, DOCS / "campaigns.md", DOCS / "sources.md", DOCS / "config.md", DOCS / "admin.md")


def _written_commands(text: str) -> list[str]:
    """Every ``imk-outreach ...`` command in the code blocks and inline code of a page."""
    commands = []
    for block in re.findall(r"^\s*```sh\n(.*?)^\s*```", text, re.S | re.M):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("imk-outreach "):
                commands.append(line)
    commands += re.findall(r"`(imk-outreach [^`]+)`", text)
    return commands


@pytest.mark.parametrize("path", _COMMAND_DOCS, ids=lambda p: p.name)
def test_written_commands_exist_with_these_flags(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command in the docs uses only commands and flags the program has (no invented ones)."""
    commands = _written_commands(_read(path))
    assert commands
    parser = cli.build_parser()
    wrong = []
    for command in commands:
        words = shlex.split(command)[1:]
        if words[0] == "COMMAND":  # "imk-outreach COMMAND --help" stands for every command
            continue
        try:
            parser.parse_args(["1" if word == "EDITION" else word for word in words])
        except SystemExit as exc:
            if exc.code != 0:
                wrong.append(f"{command}: {capsys.readouterr().err.strip().splitlines()[-1]}")
    assert not wrong, f"{path.name}: commands the program does not take:\n" + "\n".join(wrong)


def test_readme_production_settings_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config.yaml snippet of "Next steps to production", put into the shipped config, loads."""
    readme = _read(README)
    steps = readme[readme.index("## Next steps to production") :]
    snippet = yaml.safe_load(_yaml_blocks(steps)[0])
    config = yaml.safe_load(_read(REPO / "config.yaml"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, **snippet}), encoding="utf-8")
    monkeypatch.setenv("IMK_SMTP_PASSWORD", "relay-password")
    monkeypatch.setenv("IMK_SECRET_KEY", "a-long-random-text")
    settings = load_settings(tmp_path / "config.yaml")
    assert (settings.smtp.security, settings.smtp.port) == ("starttls", 587)
    assert settings.smtp.username == snippet["smtp"]["username"]


# -- campaign files -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [NewsletterFile, SocialFile, SectionFile, SelectFile, ScheduleFile])
def test_every_campaign_key_is_documented(model: type[BaseModel]) -> None:
    docs = _read(DOCS / "campaigns.md")
    missing = [key for key in model.model_fields if not re.search(rf"`(?:[a-z_]+\.)*{key}`", docs)]
    assert not missing, f"docs/campaigns.md does not document {model.__name__} keys: {missing}"


# Reference pages (campaigns.md, sources.md) give each key a section: a heading "### `key.path`", then
# a "- Default:" line, a "- Values:" line and at least one YAML example. The keys come from the models
# themselves, walked recursively, so a key added to the code without docs fails here.

_KEY_HEADING = re.compile(r"^### `([^`]+)`\s*$")
_FENCE = re.compile(r"^\s*```(\w*)\s*$")


def _key_sections(text: str) -> dict[str, str]:
    """``key.path`` -> the text of its section (up to the next heading; ``#`` lines in code blocks are
    YAML comments, not headings)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            match = _KEY_HEADING.match(line)
            current = sections.setdefault(match.group(1), []) if match else None
            continue
        if current is not None:
            current.append(line)
    return {key: "\n".join(lines) for key, lines in sections.items()}


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^\s*```yaml\n(.*?)^\s*```\s*$", text, re.S | re.M)


def _nested_models(annotation: Any, in_list: bool = False) -> Iterator[tuple[type[BaseModel], bool]]:
    """The pydantic models inside a field's annotation (through Optional, tuple, Annotated, ...), each
    with whether it is an element of a list."""
    if isinstance(annotation, type) and not typing.get_args(annotation) and issubclass(annotation, BaseModel):
        yield annotation, in_list
        return
    listed = in_list or typing.get_origin(annotation) in (tuple, list)
    for argument in typing.get_args(annotation):
        yield from _nested_models(argument, listed)


def _key_paths(*roots: type[BaseModel]) -> dict[str, tuple[type[BaseModel], str]]:
    """Every key reachable from ``roots`` as its documented path -> (model, field name).

    A nested model is documented once, under the shortest path that reaches it: a section's ``select``
    keys are the same model as a social campaign's ``select``, so they are ``select.tags`` and so on.
    """
    best: dict[tuple[type[BaseModel], str], str] = {}

    def walk(model: type[BaseModel], prefix: str, path_models: tuple[type[BaseModel], ...]) -> None:
        for name, info in model.model_fields.items():
            path = prefix + name
            known = best.get((model, name))
            if known is None or path.count(".") < known.count("."):
                best[(model, name)] = path
            for nested, listed in _nested_models(info.annotation):
                if nested not in path_models:
                    walk(nested, f"{path}{'[]' if listed else ''}.", (*path_models, nested))

    for root in roots:
        walk(root, "", (root,))
    return {path: key for key, path in best.items()}


def _duration_text(delta: timedelta) -> str:
    """``timedelta(hours=6)`` -> ``6h``, as the docs write durations."""
    seconds, text = int(delta.total_seconds()), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text


def _documented_default(model: type[BaseModel], name: str) -> str | None:
    """What the Default line must contain for this field: "required", or a simple default in backticks;
    None for defaults described in words (none, an empty list, derived from elsewhere)."""
    info = model.model_fields[name]
    if info.is_required():
        return "required"
    default = info.default
    if isinstance(default, timedelta):
        return f"`{_duration_text(default)}`"
    if isinstance(default, str | int) and not isinstance(default, bool) and default != "":
        return f"`{default}`"
    return None


def _reference_problems(
    doc: str, keys: dict[str, tuple[type[BaseModel], str]], others: frozenset[str] = frozenset()
) -> list[str]:
    """What is wrong with the key sections of ``doc``; ``others`` are sections checked elsewhere."""
    sections = _key_sections(doc)
    problems = [f"{path}: no section '### `{path}`'" for path in keys if path not in sections]
    problems += [
        f"{path}: documented, but no such key" for path in sections if path not in keys and path not in others
    ]
    for path, (model, name) in keys.items():
        body = sections.get(path)
        if body is None:
            continue
        default_line = next((line for line in body.splitlines() if line.startswith("- Default:")), None)
        if default_line is None:
            problems.append(f"{path}: no '- Default:' line")
        elif (expected := _documented_default(model, name)) and expected not in default_line:
            problems.append(f"{path}: the default is {expected}, the docs say {default_line!r}")
        if not any(line.startswith("- Values:") for line in body.splitlines()):
            problems.append(f"{path}: no '- Values:' line")
        if not _yaml_blocks(body):
            problems.append(f"{path}: no ```yaml example")
    return problems


def _campaign_keys() -> dict[str, tuple[type[BaseModel], str]]:
    return _key_paths(NewsletterFile, SocialFile)


def test_campaign_key_paths_come_from_the_nested_models() -> None:
    keys = _campaign_keys()
    assert keys["schedule.cron"] == (ScheduleFile, "cron")
    assert keys["sections[].select"] == (SectionFile, "select")
    assert keys["select.tags"] == (SelectFile, "tags")
    assert "sections[].select.tags" not in keys  # the select keys are documented once, as select.*
    expected = {*NewsletterFile.model_fields, *SocialFile.model_fields}
    expected |= {f"schedule.{k}" for k in ScheduleFile.model_fields}
    expected |= {f"sections[].{k}" for k in SectionFile.model_fields}
    expected |= {f"select.{k}" for k in SelectFile.model_fields}
    assert set(keys) == expected


def test_every_campaign_key_has_its_reference_section() -> None:
    problems = _reference_problems(_read(DOCS / "campaigns.md"), _campaign_keys())
    assert not problems, "docs/campaigns.md:\n" + "\n".join(problems)


def test_reference_check_fails_for_a_key_without_docs() -> None:
    doc = _read(DOCS / "campaigns.md")
    without_grace = re.sub(r"^### `grace`$", "### grace", doc, flags=re.M)
    assert without_grace != doc
    assert _reference_problems(without_grace, _campaign_keys()) == ["grace: no section '### `grace`'"]
    wrong_default = doc.replace("- Default: `6h`.", "- Default: `5h`.")
    assert wrong_default != doc
    assert any(
        "grace: the default is `6h`" in p for p in _reference_problems(wrong_default, _campaign_keys())
    )


@pytest.fixture
def shipped_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The shipped config.yaml on an empty SQLite database of its own."""
    monkeypatch.setenv("IMK_DATABASE_URL", f"sqlite:///{tmp_path / 'docs.db'}")
    return load_settings(REPO / "config.yaml")


_SHIPPED_CHANNELS = ("x-de", "mastodon")  # config.yaml's channels, which the social examples name


def _load_example(tmp_path: Path, block: str, ctx: CampaignContext) -> None:
    """A YAML example of campaigns.md as a campaign file: a whole file, or keys put into the shipped
    monthly newsletter (or a minimal social campaign, for social keys).

    :raises ConfigErrors: the example does not load.
    """
    fragment = yaml.safe_load(block)
    assert isinstance(fragment, dict), block
    social_only = set(SocialFile.model_fields) - set(NewsletterFile.model_fields)
    if fragment.get("kind") == "social" or social_only & set(fragment):
        base: dict[str, Any] = {"kind": "social", "channels": ["mastodon"], "select": {}}
    else:
        base = yaml.safe_load(_read(REPO / "campaigns" / "monthly.yaml"))
    path = tmp_path / "example.yaml"
    path.write_text(
        yaml.safe_dump({**base, **fragment}, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    load_campaign(path, ctx)


def test_every_campaign_example_loads(tmp_path: Path, shipped_settings: Settings) -> None:
    ctx = campaign_context(shipped_settings)  # the shipped config's sources, tags, lists and channels
    assert tuple(c.name for c in shipped_settings.channels) == _SHIPPED_CHANNELS
    blocks = _yaml_blocks(_read(DOCS / "campaigns.md"))
    assert len(blocks) > len(_campaign_keys())
    failures = []
    for block in blocks:
        try:
            _load_example(tmp_path, block, ctx)
        except ConfigErrors as exc:
            failures.append(f"{block.strip()}\n  -> {exc}")
    assert not failures, "examples in docs/campaigns.md that do not load:\n" + "\n".join(failures)


def test_a_broken_campaign_example_is_caught(tmp_path: Path, shipped_settings: Settings) -> None:
    ctx = campaign_context(shipped_settings)
    with pytest.raises(ConfigErrors, match="unknown tag 'flim'"):
        _load_example(
            tmp_path, "sections:\n  - {id: a, heading: {de: A, en: A}, select: {tags: [flim]}}\n", ctx
        )


def test_the_social_example_loads_as_a_real_campaign(tmp_path: Path, shipped_settings: Settings) -> None:
    """The complete social campaign of campaigns.md loads against the shipped config.yaml, on the
    channels configured there (no stand-in channel names)."""
    doc = _read(DOCS / "campaigns.md")
    example = _yaml_blocks(doc[doc.index("<!-- example: social -->") :])[0]
    path = tmp_path / "social.yaml"
    path.write_text(example, encoding="utf-8")
    campaign = load_campaign(path, campaign_context(shipped_settings))
    assert campaign.kind == "social"
    assert campaign.channels == tuple(c.name for c in shipped_settings.channels) == _SHIPPED_CHANNELS


def test_a_social_example_on_an_unknown_channel_is_caught(tmp_path: Path, shipped_settings: Settings) -> None:
    with pytest.raises(ConfigErrors, match=r"unknown channel 'x-en'; did you mean 'x-de'\?"):
        _load_example(
            tmp_path, "kind: social\nchannels: [x-en]\nselect: {}\n", campaign_context(shipped_settings)
        )


def test_social_posting_is_not_documented_as_missing() -> None:
    """Social posting is built: no page may still say it is not (the wording of the version before)."""
    stale = re.compile(r"not built yet|does not load today|cannot post to\s+social media|none is shipped yet")
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        found = stale.search(_read(path))
        if found is not None:
            pytest.fail(f"{path.name} still says {found.group(0)!r}")


def test_the_shipped_campaigns_are_shown_as_they_are() -> None:
    doc = _read(DOCS / "campaigns.md")
    shipped = sorted((REPO / "campaigns").glob("*.yaml"))
    assert shipped
    for path in shipped:
        marker = f"<!-- shipped: campaigns/{path.name} -->"
        assert marker in doc, f"docs/campaigns.md does not show {path.name} (add {marker} and the file)"
        shown = _yaml_blocks(doc[doc.index(marker) :])[0]
        assert shown == _read(path), f"docs/campaigns.md shows an old copy of campaigns/{path.name}"


# -- channels of config.md ------------------------------------------------------------------------


def test_every_channels_example_of_config_md_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each YAML block of config.md's "Social channels", put into the shipped config.yaml in place of its
    channels, loads (credentials as ${ENV} references, unset here: they are looked up only when used);
    together they show every channel type."""
    monkeypatch.setenv("IMK_DATABASE_URL", f"sqlite:///{tmp_path / 'docs.db'}")
    doc = _read(DOCS / "config.md")
    blocks = _yaml_blocks(doc[doc.index("## Social channels") :])
    assert blocks
    shipped = yaml.safe_load(_read(REPO / "config.yaml"))
    types: set[str] = set()
    for number, block in enumerate(blocks):
        fragment = yaml.safe_load(block)
        assert set(fragment) == {"channels"}, block
        config = tmp_path / f"config-{number}.yaml"
        config.write_text(yaml.safe_dump({**shipped, **fragment}, allow_unicode=True), encoding="utf-8")
        settings = load_settings(config)
        assert [c.name for c in settings.channels] == [c["name"] for c in fragment["channels"]]
        types |= {c.type for c in settings.channels}
    assert types == set(CHANNEL_TYPES)


# -- sources --------------------------------------------------------------------------------------


def _source_keys() -> dict[str, tuple[type[BaseModel], str]]:
    return {f"sources.{path}": key for path, key in _key_paths(SourceSettings).items()}


_SELECTOR_PATHS = frozenset(f"sources.selectors.{key}" for key in SELECTOR_KEYS)


def _selector_problems(doc: str) -> list[str]:
    sections = _key_sections(doc)
    problems = []
    for key in SELECTOR_KEYS:
        body = sections.get(f"sources.selectors.{key}")
        if body is None:
            problems.append(f"sources.selectors.{key}: no section '### `sources.selectors.{key}`'")
        elif not all(re.search(rf"^- {label}:", body, re.M) for label in ("Default", "Values")):
            problems.append(f"sources.selectors.{key}: no '- Default:' or '- Values:' line")
    return problems


def test_every_source_key_has_its_reference_section() -> None:
    doc = _read(DOCS / "sources.md")
    problems = _reference_problems(doc, _source_keys(), others=_SELECTOR_PATHS) + _selector_problems(doc)
    assert not problems, "docs/sources.md:\n" + "\n".join(problems)


def test_source_check_fails_for_a_key_without_docs() -> None:
    doc = _read(DOCS / "sources.md")
    without_every = re.sub(r"^### `sources.every`$", "### every", doc, flags=re.M)
    without_date = re.sub(r"^### `sources.selectors.date`$", "### date", doc, flags=re.M)
    assert without_every != doc and without_date != doc
    assert _reference_problems(without_every, _source_keys(), others=_SELECTOR_PATHS) == [
        "sources.every: no section '### `sources.every`'"
    ]
    assert _selector_problems(without_date) == [
        "sources.selectors.date: no section '### `sources.selectors.date`'"
    ]


def _manual_key_rows(doc: str) -> set[str]:
    marker = doc.index("<!-- manual-item-keys -->")
    table = doc[marker:].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))


def test_every_manual_item_key_is_documented() -> None:
    assert _manual_key_rows(_read(DOCS / "sources.md")) == set(ITEM_KEYS)


def _sample_problems(settings: Settings) -> list[str]:
    """Read each example source that points at a bundled sample: it must give items and no warnings
    (a selector that finds nothing on the sample page warns). Remote URLs are not fetched."""
    problems = []
    for source in settings.sources:
        spec = source_spec(settings, source)
        if spec.is_remote:
            continue
        try:
            result = asyncio.run(_parse_local(spec))
        except SourceError as exc:
            problems.append(f"{source.name}: {exc.reason}")
            continue
        if not result.entries or result.warnings:
            problems.append(f"{source.name}: {len(result.entries)} entries, warnings {list(result.warnings)}")
    return problems


async def _parse_local(spec: SourceSpec) -> ParseResult:
    limits = FetchLimits()
    async with make_client(limits, 1) as client:
        doc = await fetch(client, spec, Validators(), limits)
    return get_source(spec.type).parse(doc, spec)


def test_every_sources_example_is_valid() -> None:
    """Each YAML block of sources.md: a mapping is config.yaml keys, a list is a manual items file."""
    blocks = _yaml_blocks(_read(DOCS / "sources.md"))
    assert len(blocks) > len(_source_keys())
    failures = []
    for block in blocks:
        data = yaml.safe_load(block)
        if isinstance(data, list):
            entries, warnings, readable = read_file("example.yaml", block.encode(), "de")
            if warnings or not readable or len(entries) != len(data):
                failures.append(f"{block.strip()}\n  -> {warnings}")
            continue
        try:
            settings = Settings.model_validate({"base_dir": REPO, **data})
        except ValidationError as exc:
            failures.append(f"{block.strip()}\n  -> {exc}")
            continue
        failures += [f"{block.strip()}\n  -> {problem}" for problem in _sample_problems(settings)]
    assert not failures, "examples in docs/sources.md that are not valid:\n" + "\n".join(failures)


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
    assert (
        cli.main(
            ["--config", str(config), "subscribers", "import", str(people)]
            + ["--status", "confirmed", "--consent-note", "test"]
        )
        == 0
    )
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
