from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from imk_outreach.config import Settings, database_url, load_settings
from imk_outreach.durations import parse_duration
from imk_outreach.errors import ConfigError, ConfigErrors

REPO = Path(__file__).parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_settings(path)
    exc = info.value
    return [str(e) for e in exc.errors] if isinstance(exc, ConfigErrors) else [str(exc)]


def test_config_of_only_sources_gets_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - {name: iot, type: rss, url: feeds/iot.xml}\n")
    settings = load_settings(path)
    assert settings.languages == ("de", "en")
    assert settings.timezone == "Europe/Berlin"
    assert settings.gather.max_bytes == 5_000_000
    source = settings.sources[0]
    assert source.every == timedelta(hours=1)
    assert settings.source_language(source) == "de"
    assert settings.source_location(source) == str((tmp_path / "feeds" / "iot.xml").resolve())
    assert database_url(settings) == f"sqlite:///{(tmp_path / 'var' / 'imk-outreach.db').resolve()}"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "sources: []\n"))
    with pytest.raises(ValidationError, match="frozen"):
        settings.timezone = "UTC"  # type: ignore[misc]


def test_missing_sources_is_named(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "timezone: Europe/Berlin\n"))
    assert "config.yaml" in message and "sources: required key is missing" in message


def test_unknown_key_names_file_key_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n  - name: iot\n    type: rss\n    url: x.xml\n    colour: red\n",
    )
    [message] = errors_of(path)
    assert message.startswith(f"{path}:5:5: sources[0].colour: unknown key")
    assert "allowed: name, type, url" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "sources: []\ndatabse_url: sqlite:///x.db\n"))
    assert ":2:1: databse_url: unknown key" in message
    assert "database_url" in message  # the allowed keys help spot the typo


def test_wrong_types_and_values_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timezone: Mars/Olympus\n"
        "gather: {timeout: -1}\n"
        "sources:\n"
        "  - {name: a, type: podcast, url: x}\n"
        "  - {name: b, type: rss, url: 'ftp://x'}\n"
        "  - {name: c, type: rss, url: x, every: soon}\n",
    )
    messages = "\n".join(errors_of(path))
    assert ":1:1: timezone: unknown time zone 'Mars/Olympus'" in messages
    assert "gather.timeout: Input should be greater than 0" in messages
    assert ":4:" in messages and "sources[0].type:" in messages
    assert "sources[1].url: 'ftp://x': only http(s) URLs" in messages
    assert "sources[2].every: 'soon' is not a duration" in messages


def test_html_source_needs_item_selector(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "sources:\n  - {name: bfi, type: html, url: p.html}\n"))
    assert "sources[0]:" in message and "selectors" in message and "'item'" in message


def test_selectors_only_for_html(tmp_path: Path) -> None:
    text = "sources:\n  - {name: bfi, type: rss, url: p.xml, selectors: {item: a}}\n"
    [message] = errors_of(write(tmp_path, text))
    assert "selectors are only for html sources" in message


def test_duplicate_source_names(tmp_path: Path) -> None:
    text = "sources:\n  - {name: a, type: rss, url: x}\n  - {name: a, type: rss, url: y}\n"
    [message] = errors_of(write(tmp_path, text))
    assert "source name 'a' is used twice" in message


def test_env_reference_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMK_TEST_DB", "sqlite:///elsewhere.db")
    settings = load_settings(write(tmp_path, "database_url: ${IMK_TEST_DB}\nsources: []\n"))
    assert database_url(settings) == f"sqlite:///{(tmp_path / 'elsewhere.db').resolve()}"


def test_missing_env_reference_names_key_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMK_NOT_SET", raising=False)
    [message] = errors_of(write(tmp_path, "sources: []\npublic_url: ${IMK_NOT_SET}\n"))
    assert ":2:1: public_url: environment variable IMK_NOT_SET is not set" in message


def test_imk_env_overrides_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMK_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/x")
    settings = load_settings(write(tmp_path, "sources: []\n"))
    assert settings.database_url == "postgresql+psycopg://u@127.0.0.1/x"


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "sources:\n  - {name: a, type: rss\n  url: x\n"))
    assert message.startswith(f"{tmp_path / 'config.yaml'}:3:") and "YAML syntax error" in message


def test_not_a_mapping(tmp_path: Path) -> None:
    [message] = errors_of(write(tmp_path, "- just\n- a list\n"))
    assert "must be a mapping" in message


def test_missing_file_has_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml")
    assert "config file not found" in str(info.value) and "--config" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        ("2H", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "1h-", "soon"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_shipped_config_loads() -> None:
    settings = load_settings(REPO / "config.yaml")
    assert {s.type for s in settings.sources} == {"rss", "html", "jsonfeed", "manual"}
    for source in settings.sources:
        assert Path(settings.source_location(source)).exists(), source.name


def _keys(model: type, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    keys = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        if name in ("config_path", "base_dir"):
            continue
        keys.add(prefix + name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys |= _keys(candidate, prefix + name + ".")
    return keys


def test_every_config_key_is_documented() -> None:
    docs = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    missing = sorted(k for k in _keys(Settings) if f"`{k}`" not in docs)
    assert not missing, f"docs/config.md does not document: {missing}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("notify: [redaktion]\n", "notify: 'redaktion' is not an email address"),
        ("notify: [a@b.example, 'x y@z.example']\n", "notify: 'x y@z.example' is not an email address"),
        ("scheduler: {tick: soon}\n", "scheduler.tick:"),
        ("scheduler: {tock: 1s}\n", "scheduler.tock: unknown key"),
    ],
)
def test_scheduler_and_notify_faults_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text + "sources:\n  - {name: iot, type: rss, url: feeds/iot.xml}\n")
    messages = errors_of(path)
    assert any(expected in m and str(path) in m for m in messages), messages


def test_notify_and_scheduler_keys_load(tmp_path: Path) -> None:
    text = "notify: [' redaktion@cluster.example ']\nscheduler: {tick: 10s}\n"
    settings = load_settings(write(tmp_path, text + "sources:\n  - {name: iot, type: rss, url: f.xml}\n"))
    assert settings.notify == ("redaktion@cluster.example",)
    assert settings.scheduler.tick == timedelta(seconds=10)
