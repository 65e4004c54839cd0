from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imk_outreach.campaigns import CampaignContext, check_cron, load_all, load_campaign, parse_duration
from imk_outreach.config import load_settings
from imk_outreach.errors import ConfigErrors
from imk_outreach.models import Selection
from imk_outreach.sources.normalize import canonical_url

REPO = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "campaigns"
TEMPLATES = {"newsletter/default.mjml.j2", "newsletter/monthly.mjml.j2", "social/item.j2"}

CTX = CampaignContext(
    languages=("de", "en"),
    lists=frozenset({"newsletter", "film"}),
    sources=frozenset({"dehub-iot", "bfi-news", "film-highlights", "games-xr", "cluster-news"}),
    tags=frozenset({"ki", "iot", "film", "games", "vfx", "fintech", "blockchain"}),
    template_exists=lambda name: name in TEMPLATES,
    canonicalize=canonical_url,
    channels=frozenset({"x-de", "mastodon"}),
)


def errors_of(path: Path, ctx: CampaignContext = CTX) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_campaign(path, ctx)
    return [str(error) for error in info.value.errors]


def fixture(name: str) -> Path:
    return FIXTURES / name


# -- good files -----------------------------------------------------------------------------------------


def test_full_file_loads_every_key() -> None:
    campaign = load_campaign(fixture("full.yaml"), CTX)
    assert campaign.name == "full-monthly"
    assert campaign.path == str(fixture("full.yaml"))
    assert (campaign.kind, campaign.list, campaign.languages) == ("newsletter", "newsletter", ("de", "en"))
    assert campaign.schedule == {"cron": "0 9 1 * *"}
    assert (campaign.late_policy, campaign.approval, campaign.min_items) == ("send", "auto", 2)
    assert campaign.template == "newsletter/monthly.mjml.j2"
    assert campaign.subject["en"] == "Looking ahead – {{ edition.date|month }}"
    assert campaign.intro == {"de": "Hallo {{ 'Welt' }}", "en": "Hello"}
    assert campaign.preheader == {"de": "Vorschau", "en": "Preview"}
    assert [s.id for s in campaign.sections] == ["innovation", "media"]
    assert campaign.sections[0].heading == {"de": "Innovationsfelder", "en": "Innovation fields"}
    assert campaign.sections[0].select == Selection(
        tags=("ki", "iot"),
        since=timedelta(days=31),
        max=5,
        # pins and excludes are stored canonical: host lower-cased, utm_* and fragment dropped
        pin=("https://example.org/news/pinned",),
        exclude=("https://example.org/news/unwanted",),
    )
    assert campaign.sections[1].select.sources == ("film-highlights",)
    assert campaign.sections[1].select.since == timedelta(days=9)


def test_minimal_file_gets_defaults() -> None:
    campaign = load_campaign(fixture("minimal.yaml"), CTX)
    assert campaign.name == "minimal"  # the file stem
    assert campaign.list == "newsletter"
    assert campaign.languages == CTX.languages
    assert campaign.schedule == {}
    assert (campaign.late_policy, campaign.approval, campaign.min_items) == ("hold", "required", 1)
    assert campaign.grace == timedelta(hours=6)
    assert campaign.template == CTX.default_template
    assert campaign.sections[0].select == Selection()


def test_schedule_at_a_moment_and_fewer_languages() -> None:
    campaign = load_campaign(fixture("at_schedule.yaml"), CTX)
    assert campaign.schedule == {"at": "2026-12-01T09:00"}
    assert campaign.languages == ("en",)
    assert campaign.subject == {"en": "Special"}


def test_social_campaign_has_one_section_from_select() -> None:
    campaign = load_campaign(fixture("social.yaml"), CTX)
    assert (campaign.name, campaign.kind, campaign.approval) == ("bfi-auto", "social", "auto")
    assert campaign.template == "social/item.j2"
    [section] = campaign.sections
    assert section.select == Selection(sources=("bfi-news",), since=timedelta(days=7))


def test_social_campaign_keys_are_checked() -> None:
    path = fixture("social_broken.yaml")
    assert errors_of(path) == [
        f"{path}:2:18: channels[1]: unknown channel 'twitter' (known: mastodon, x-de)",
        f"{path}:3:1: trigger: give trigger (a post per new item) or schedule (a digest post), not both",
        f"{path}:6:1: subject: only for a newsletter campaign (allowed here: name, kind, languages, "
        "schedule, late_policy, grace, approval, min_items, template, channels, trigger, select)",
    ]


# -- broken files ---------------------------------------------------------------------------------------


def test_unknown_key_has_line_allowed_keys_and_hint() -> None:
    path = fixture("unknown_key.yaml")
    assert errors_of(path) == [
        f"{path}:5:5: sections[0].selct: unknown key (allowed: id, heading, select) (did you mean 'select'?)",
        f"{path}:6:1: colour: unknown key (allowed: name, kind, languages, schedule, late_policy, grace, "
        "approval, min_items, template, list, subject, intro, preheader, sections)",
    ]


def test_wrong_types_are_all_reported() -> None:
    path = fixture("wrong_types.yaml")
    assert errors_of(path) == [
        f"{path}:2:1: languages: expected a list (e.g. [a, b]), got text 'de'",
        f"{path}:3:1: min_items: expected a whole number, got text 'three'",
        f"{path}:4:1: late_policy: Input should be 'send' or 'hold'",
        f"{path}:5:1: approval: Input should be 'required' or 'auto'",
        f"{path}:6:1: subject: give one text per language, e.g. {{de: ..., en: ...}}",
        f"{path}:10:14: sections[0].select.tags: expected a list (e.g. [a, b]), got text 'film'",
        f"{path}:10:26: sections[0].select.max: Input should be greater than or equal to 1",
    ]


def test_unknown_list_language_template_tag_and_source() -> None:
    path = fixture("unknown_refs.yaml")
    assert errors_of(path) == [
        f"{path}:1:1: list: unknown list 'newsleter'; did you mean 'newsletter'? (known: film, newsletter)",
        f"{path}:2:17: languages[1]: unknown language 'fr' (known: de, en)",
        f"{path}:3:1: template: template 'newsletter/missing.mjml.j2' not found in the templates folder "
        "or the shipped templates",
        f"{path}:9:20: sections[0].select.tags[1]: unknown tag 'flim'; did you mean 'film'? "
        "(known: blockchain, film, fintech, games, iot, ki, vfx)",
        f"{path}:10:17: sections[0].select.sources[0]: unknown source 'film-higlights'; did you mean "
        "'film-highlights'? (known: bfi-news, cluster-news, dehub-iot, film-highlights, games-xr)",
    ]


def test_long_lists_of_known_names_are_cut() -> None:
    ctx = CampaignContext(**{**CTX.__dict__, "tags": frozenset(f"tag{n:02}" for n in range(30))})
    [message] = [m for m in errors_of(fixture("minimal.yaml").parent / "mixed" / "b-broken.yaml", ctx)]
    assert message.endswith("unknown tag 'flim' (known: tag00, tag01, tag02, tag03, tag04, tag05, tag06, "
                            "tag07, tag08, tag09, tag10, tag11, ...)")  # fmt: skip


def test_missing_language_text_names_the_key() -> None:
    path = fixture("missing_language.yaml")
    assert errors_of(path) == [
        f"{path}:1:1: subject.en: missing text for language 'en'",
        f"{path}:3:20: intro.en: missing text for language 'en'",  # blank counts as missing
        f"{path}:6:5: sections[0].heading.en: missing text for language 'en'",
    ]


def test_bad_cron() -> None:
    path = fixture("bad_cron.yaml")
    assert errors_of(path) == [
        f"{path}:1:12: schedule.cron: '0 25 1 * *': hour field '25': expected 0-23, got '25'"
    ]


def test_bad_since() -> None:
    path = fixture("bad_since.yaml")
    assert errors_of(path) == [
        f"{path}:5:28: sections[0].select.since: '7 days' is not a duration (use e.g. 30m, 2h, 7d, 1w)",
        f"{path}:8:29: sections[1].select.since: '0d': the duration must be longer than zero",
    ]


def test_duplicate_section_ids() -> None:
    path = fixture("duplicate_sections.yaml")
    assert errors_of(path) == [
        f"{path}:5:6: sections[2].id: section id 'media' is already used by sections[0]"
    ]


def test_broken_subject_jinja_names_language_and_line() -> None:
    path = fixture("broken_subject.yaml")
    assert errors_of(path) == [
        f"{path}:3:3: subject.en: Jinja syntax error in line 1 of the text: unexpected '}}'"
    ]


def test_jinja_error_line_inside_a_multi_line_text(tmp_path: Path) -> None:
    path = tmp_path / "multi.yaml"
    path.write_text(
        "subject: {de: A, en: B}\nintro:\n  de: |\n    Hallo\n    {{ name }\n    Bye\n  en: Hello\n"
        "sections: [{id: a, heading: {de: A, en: A}}]\n",
        encoding="utf-8",
    )
    [message] = errors_of(path)
    assert message == f"{path}:3:3: intro.de: Jinja syntax error in line 2 of the text: unexpected '}}'"


def test_yaml_syntax_error_has_line() -> None:
    path = fixture("syntax_error.yaml")
    assert errors_of(path) == [f"{path}:4:3: YAML syntax error: expected ',' or '}}', but got '-'"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a list\n", "not a mapping of keys"), ("", "empty"), ("# only a comment\n", "empty")],
)
def test_not_a_mapping(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    [error] = errors_of(path)
    assert error.startswith(f"{path}") and message in error


def test_pin_must_be_an_http_url() -> None:
    path = fixture("bad_urls.yaml")
    assert errors_of(path) == [
        f"{path}:6:13: sections[0].select.pin[0]: 'ftp://example.org/file' is not an http(s) URL"
    ]


def test_pinned_and_excluded_compares_canonical_urls() -> None:
    path = fixture("pinned_and_excluded.yaml")
    assert errors_of(path) == [
        f"{path}:5:5: sections[0].select: https://example.org/a is both pinned and excluded; keep one"
    ]


def test_newsletter_needs_sections() -> None:
    path = fixture("no_sections.yaml")
    assert errors_of(path) == [f"{path}:1:1: sections: a newsletter needs at least one section"]


def test_key_written_twice() -> None:
    path = fixture("duplicate_keys.yaml")
    assert errors_of(path) == [
        f"{path}:5:1: min_items: key 'min_items' is written twice (first in line 2); YAML keeps only the last"
    ]


def test_file_stem_must_be_a_valid_name_unless_name_is_given(tmp_path: Path) -> None:
    text = "subject: {de: A, en: B}\nsections: [{id: a, heading: {de: A, en: A}}]\n"
    path = tmp_path / "Monthly News.yaml"
    path.write_text(text, encoding="utf-8")
    [message] = errors_of(path)
    assert message.startswith(f"{path}:1:1: name: the file name 'Monthly News' is not a valid campaign name")
    path.write_text("name: monthly-news\n" + text, encoding="utf-8")
    assert load_campaign(path, CTX).name == "monthly-news"


def test_list_is_required_when_no_list_is_called_newsletter(tmp_path: Path) -> None:
    ctx = CampaignContext(**{**CTX.__dict__, "lists": frozenset({"film"})})
    path = tmp_path / "x.yaml"
    path.write_text(
        "subject: {de: A, en: B}\nsections: [{id: a, heading: {de: A, en: A}}]\n", encoding="utf-8"
    )
    assert errors_of(path, ctx) == [f"{path}:1:1: list: required key is missing (configured lists: film)"]


def test_every_problem_of_a_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "list: nope\nschedule: {cron: '* * *'}\nsubject: {de: '{{ x'}\n"
        "sections:\n  - {id: a, heading: {de: A, en: A}, select: {tags: [nope], since: soon}}\n"
        "  - {id: a, heading: {de: B}}\n",
        encoding="utf-8",
    )
    keys = [message.split(": ")[1] for message in errors_of(path)]
    assert sorted(keys) == sorted(
        [
            "list",
            "schedule.cron",
            "subject.de",
            "subject.en",
            "sections[0].select.tags[0]",
            "sections[0].select.since",
            "sections[1].id",
            "sections[1].heading.en",
        ]
    )


# -- cron and durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 1 * *",
        "*/15 * * * *",
        "0 9 * * mon-fri",
        "0 9 * * 1,3,5",
        "30 8-18/2 1-7 JAN,jul 0",
        "0 0 31 12 7",
    ],
)
def test_cron_accepts(expression: str) -> None:
    assert check_cron(f"  {expression}  ") == expression


@pytest.mark.parametrize(
    ("expression", "fault"),
    [
        ("0 9 1 *", "5 fields"),
        ("0 9 1 * * *", "5 fields"),
        ("60 9 1 * *", "minute field '60': expected 0-59"),
        ("0 9 0 * *", "day field '0': expected 1-31"),
        ("0 9 1 13 *", "month field '13': expected 1-12 or jan-dec"),
        ("0 9 * * 8", "weekday field '8': expected 0-7 or sun-sat"),
        ("0 9 * * mnd", "weekday field 'mnd'"),
        ("0 9 * * fri-mon", "runs backwards"),
        ("*/0 * * * *", "step '0'"),
        ("5/10 * * * *", "a step needs '*' or a range"),
        ("0 9,,10 * * *", "hour field '9,,10'"),
        ("0 9 * * @", "weekday field '@'"),
    ],
)
def test_cron_refuses(expression: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault.replace("*", r"\*")):
        check_cron(expression)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("31d", timedelta(days=31)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
     ("1d12h", timedelta(hours=36)), ("90M", timedelta(minutes=90)), ("1 w 2 d", timedelta(days=9))],
)  # fmt: skip
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "7d-", "soon", "-7d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# -- folders --------------------------------------------------------------------------------------------


def test_load_all_reports_a_broken_file_and_loads_the_others() -> None:
    campaigns, errors = load_all(FIXTURES / "mixed", CTX)
    assert [c.name for c in campaigns] == ["a-good", "c-good"]  # sorted; .yml too; notes.txt ignored
    assert campaigns[1].list == "film"
    assert [str(e) for e in errors] == [
        f"{FIXTURES / 'mixed' / 'b-broken.yaml'}:3:67: sections[0].select.tags[0]: unknown tag 'flim'; "
        "did you mean 'film'? (known: blockchain, film, fintech, games, iot, ki, vfx)"
    ]


def test_load_all_duplicate_names_name_both_files() -> None:
    folder = FIXTURES / "same_names"
    campaigns, errors = load_all(folder, CTX)
    assert [(c.name, Path(c.path).name) for c in campaigns] == [("digest", "first.yaml")]
    assert [str(e) for e in errors] == [
        f"{folder / 'second.yaml'}:2:1: name: campaign name 'digest' is already used by "
        f"{folder / 'first.yaml'} (names must be unique)"
    ]


def test_load_all_same_stem_twice(tmp_path: Path) -> None:
    text = "subject: {de: A, en: B}\nsections: [{id: a, heading: {de: A, en: A}}]\n"
    (tmp_path / "news.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "news.yml").write_text(text, encoding="utf-8")
    (tmp_path / ".news.yaml").write_text("broken: [", encoding="utf-8")  # editor backup: ignored
    campaigns, errors = load_all(tmp_path, CTX)
    assert [Path(c.path).name for c in campaigns] == ["news.yaml"]
    [error] = errors
    assert str(error).startswith(f"{tmp_path / 'news.yml'}:1:1: name: campaign name 'news' is already used")


def test_load_all_missing_folder_has_no_campaigns(tmp_path: Path) -> None:
    assert load_all(tmp_path / "nope", CTX) == ([], [])


# -- the shipped campaigns ------------------------------------------------------------------------------


def shipped_context() -> CampaignContext:
    settings = load_settings(REPO / "config.yaml")
    tags = set(settings.tagging) | {tag for source in settings.sources for tag in source.tags}
    return CampaignContext(
        languages=settings.languages,
        lists=frozenset(settings.lists),
        sources=frozenset(source.name for source in settings.sources),
        tags=frozenset(tags),
        template_exists=lambda name: name == "newsletter/default.mjml.j2",
        canonicalize=canonical_url,
        channels=frozenset(channel.name for channel in settings.channels),
    )


def test_shipped_campaigns_load_against_the_shipped_config() -> None:
    campaigns, errors = load_all(REPO / "campaigns", shipped_context())
    assert [str(e) for e in errors] == []
    by_name = {c.name: c for c in campaigns}
    assert sorted(by_name) == ["bfi-auto", "film-weekly", "monthly"]
    bfi = by_name["bfi-auto"]
    assert (bfi.kind, bfi.channels, bfi.trigger, bfi.approval) == (
        "social",
        ("x-de", "mastodon"),
        "new_items",
        "auto",
    )
    assert bfi.sections[0].select.sources == ("bfi-news",)
    monthly = by_name["monthly"]
    assert (monthly.list, monthly.languages) == ("newsletter", ("de", "en"))
    assert [s.id for s in monthly.sections] == ["innovation", "media", "finance", "cluster"]
    assert monthly.sections[3].select.sources == ("cluster-news",)
    film = by_name["film-weekly"]
    assert film.list == "film" and film.min_items == 3
    assert film.sections[0].select.since == timedelta(days=7)
    assert set(film.sections[0].select.tags) == {"film", "vfx", "games"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("languages: []\n", ":1:1: languages: list at least one"),
        ("languages: [de, de]\n", ":1:1: languages: 'de' is listed twice"),
        ("sections:\n", ":1:1: sections: expected a list (e.g. [a, b]), got nothing"),
        ("subject:\n", ":1:1: subject: expected a mapping (key: value), got nothing"),
        ("schedule: {}\n", ":1:1: schedule: give either cron"),
        ("schedule: {cron: '0 9 * * *', at: 2026-12-01T09:00}\n", ":1:1: schedule: give either cron"),
        ("schedule: {at: 2026-12-01}\n", ":1:12: schedule.at: 2026-12-01 has no time of day"),
        ("schedule: {at: 2026-12-01T09:00:30+01:00}\n", None),
        ("schedule: {at: next monday}\n", ":1:12: schedule.at: 'next monday' is not a date and time"),
        ("min_items: -1\n", ":1:1: min_items: Input should be greater than or equal to 0"),
        ("min_items: true\n", ":1:1: min_items: expected a whole number, got bool True"),
        ("kind: mail\n", ":1:1: kind: Input should be 'newsletter' or 'social'"),
        ("name: Monthly\n", ":1:1: name: 'Monthly': use lower-case letters"),
        ("grace: 0h\n", ":1:1: grace: '0h': the duration must be longer than zero"),
        ("grace: soon\n", ":1:1: grace: "),
    ],
)
def test_single_key_faults(tmp_path: Path, text: str, expected: str | None) -> None:
    body = "subject: {de: A, en: B}\nsections: [{id: a, heading: {de: A, en: A}}]\n"
    path = tmp_path / "c.yaml"
    # the faulty key replaces the body's line of the same key
    kept = [line + "\n" for line in body.splitlines() if line.split(":")[0] not in text]
    path.write_text(text + "".join(kept), encoding="utf-8")
    if expected is None:
        assert load_campaign(path, CTX).schedule == {"at": "2026-12-01T09:00:30+01:00"}
        return
    messages = errors_of(path)
    assert any(m.startswith(f"{path}{expected}") for m in messages), messages
