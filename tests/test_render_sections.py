"""What an edition shows: no heading for a section without items, a true item count, no date for undated
items (which still sort by first-seen time), and images only from our own public_url."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from jinja2 import Environment

from imk_outreach.campaigns.selection import select_sections
from imk_outreach.db import store
from imk_outreach.errors import TemplateError
from imk_outreach.models import Brand, Campaign, Edition, EditionSection, NewsItem, Section, Selection
from imk_outreach.render.email import image_url, render_email
from imk_outreach.render.env import make_env
from imk_outreach.services import compose
from imk_outreach.services.database import engine_for
from imk_outreach.services.rendering import render_all
from tests.conftest import ConfigFactory

DATE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PUBLIC_URL = "https://news.example.org/"
HEADINGS = {
    "full": {"de": "Innovationsfelder", "en": "Innovation fields"},
    "empty": {"de": "Finanzen und FinTech", "en": "Finance and fintech"},
    "later": {"de": "Aus dem Cluster", "en": "From the cluster"},
}
CAMPAIGN = Campaign(
    name="monthly",
    path="campaigns/monthly.yaml",
    subject={"de": "Ausgabe {{ edition.date|month }}", "en": "Edition {{ edition.date|month }}"},
    intro={"de": "Hallo.", "en": "Hello."},
    sections=tuple(Section(key, heading, Selection()) for key, heading in HEADINGS.items()),
)
BRAND = Brand(
    name={"de": "Cluster", "en": "Cluster"},
    imprint={"de": "Impressum-Text", "en": "Imprint text"},
    public_url=PUBLIC_URL,
    sender_name="Cluster",
    sender_email="newsletter@example.org",
)


def news(number: int, **fields: object) -> NewsItem:
    values: dict[str, object] = {
        "id": f"item-{number}",
        "url": f"https://example.org/news/{number}",
        "source": "feed",
        "title": f"Meldung Nummer {number}",
        "summary_html": f"<p>Text {number}.</p>",
        "published_at": DATE - timedelta(days=number),
        "language": "de",
    }
    values.update(fields)
    return NewsItem(**values)  # type: ignore[arg-type]


def edition(**items: tuple[NewsItem, ...]) -> Edition:
    sections = tuple(EditionSection(key, HEADINGS[key], items.get(key, ())) for key in HEADINGS)
    return Edition(id=1, campaign="monthly", created_at=DATE, date=DATE, sections=sections)


@pytest.fixture(scope="module")
def env() -> Environment:
    return make_env([])


def both(env: Environment, shown: Edition, language: str) -> tuple[str, str]:
    message = render_email(env, CAMPAIGN, shown, language, BRAND, DATE)
    return message.html, message.text


def day(moment: datetime, language: str) -> str:
    """A date as the shipped templates show it (Berlin time, Babel's long format)."""
    return format_date(moment.astimezone(ZoneInfo("Europe/Berlin")).date(), "long", locale=language)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src"))


def images(document: str) -> list[str | None]:
    parser = _Images()
    parser.feed(document)
    return parser.sources


# -- sections without items ----------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "en"])
def test_a_section_without_items_shows_no_heading(env: Environment, language: str) -> None:
    shown = edition(full=(news(1), news(2)), later=(news(3),))
    html, text = both(env, shown, language)
    for part in (html, text):
        assert HEADINGS["full"][language] in part
        assert HEADINGS["later"][language] in part
        assert HEADINGS["empty"][language] not in part
    assert text.index(HEADINGS["full"][language]) < text.index(HEADINGS["later"][language])


@pytest.mark.parametrize(
    ("language", "line"), [("de", "3 Meldungen in dieser Ausgabe"), ("en", "3 news items")]
)
def test_the_count_line_counts_the_items_of_every_section(env: Environment, language: str, line: str) -> None:
    html, text = both(env, edition(full=(news(1), news(2)), later=(news(3),)), language)
    assert line in html and line in text
    assert not re.search(r"\b0 (Meldungen|news items)", html + text)


def test_an_item_in_two_sections_counts_once(env: Environment) -> None:
    html, text = both(env, edition(full=(news(1), news(2)), later=(news(2),)), "en")
    assert "2 news items in this edition" in text
    assert "2 news items in this edition" in html


@pytest.mark.parametrize("language", ["de", "en"])
def test_an_edition_without_items_shows_no_heading_and_no_zero_count(env: Environment, language: str) -> None:
    html, text = both(env, edition(), language)
    for part in (html, text):
        assert not any(heading[language] in part for heading in HEADINGS.values())
        assert not re.search(r"\b0 (Meldungen|news items)", part)
        assert "=====" not in part


# -- undated items -------------------------------------------------------------------------------------

GATHERED = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # the day an undated item was first seen
PUBLISHED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("language", ["de", "en"])
def test_an_undated_item_shows_no_date(env: Environment, language: str) -> None:
    undated = news(1, published_at=GATHERED, date_estimated=True, title="Ohne Datum", language=language)
    dated = news(2, published_at=PUBLISHED, title="Mit Datum", language=language)
    html, text = both(env, edition(full=(undated, dated)), language)
    for part in (html, text):
        assert day(GATHERED, language) not in part
        assert day(PUBLISHED, language) in part
    block = text[text.index("* Ohne Datum") : text.index("* Mit Datum")]
    assert block.splitlines()[1].strip() == "Text 1."  # the summary follows the title directly


def test_an_undated_fallback_item_keeps_its_note_without_a_date(env: Environment) -> None:
    undated = news(1, published_at=GATHERED, date_estimated=True, title="Ohne Datum")
    _html, text = both(env, edition(full=(undated,)), "en")
    lines = text.splitlines()
    note = lines[lines.index("* Ohne Datum") + 1]
    assert note == "  (Only in German)"


def test_the_card_has_no_date_but_the_item_keeps_its_first_seen_time(
    env: Environment, tmp_path: Path
) -> None:
    folder = tmp_path / "newsletter"
    folder.mkdir()
    (folder / "dates.txt.j2").write_text(
        "{% for s in sections %}{% for c in s.cards %}{{ c.id }}={{ c.published_at }}/"
        "{{ c.item.published_at.isoformat() }};{% endfor %}{% endfor %}",
        "utf-8",
    )
    (folder / "dates.mjml.j2").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section></mj-body></mjml>",
        "utf-8",
    )
    campaign = Campaign(**{**CAMPAIGN.__dict__, "template": "newsletter/dates.mjml.j2"})
    undated = news(1, published_at=GATHERED, date_estimated=True)
    message = render_email(make_env([tmp_path]), campaign, edition(full=(undated,)), "de", BRAND, DATE)
    assert message.text.strip() == f"item-1=None/{GATHERED.isoformat()};"


def test_a_staff_template_formatting_an_undated_date_is_told_how_to_guard_it(
    env: Environment, tmp_path: Path
) -> None:
    folder = tmp_path / "newsletter"
    folder.mkdir()
    (folder / "_card_text.mjml.j2").write_text(
        "<mj-text>{{ card.published_at|date }}</mj-text>\n<mj-text>{{ card.title }}</mj-text>\n", "utf-8"
    )
    undated = news(1, published_at=GATHERED, date_estimated=True)
    with pytest.raises(TemplateError) as info:
        render_email(make_env([tmp_path]), CAMPAIGN, edition(full=(undated,)), "de", BRAND, DATE)
    assert str(info.value).startswith("newsletter/_card_text.mjml.j2:1: ")
    assert "{% if card.published_at %}" in str(info.value)


def test_undated_items_sort_by_first_seen_time() -> None:
    dated = [news(n, published_at=DATE - timedelta(hours=10 * n)) for n in (1, 3, 5)]
    undated = [news(n, published_at=DATE - timedelta(hours=10 * n), date_estimated=True) for n in (2, 4, 6)]
    mixed = [undated[2], dated[0], undated[0], dated[2], dated[1], undated[1]]
    campaign = Campaign(name="c", path="c.yaml", sections=(Section("all", {"de": "Alle"}, Selection()),))
    [section] = select_sections(campaign, mixed, DATE, frozenset())
    order = [item.id for item in section.items]
    assert order == [item.id for item in sorted(mixed, key=lambda item: item.published_at, reverse=True)]
    assert order == [f"item-{n}" for n in range(1, 7)]  # newest first, dated and undated interleaved


CAMPAIGN_FILE = """\
name: digest
list: newsletter
languages: [de, en]
min_items: 1
subject: {de: "Digest", en: "Digest"}
sections:
  - {id: tech, heading: {de: Technik, en: Tech}, select: {tags: [iot], since: 30d}}
"""


def test_an_undated_item_stored_and_composed_shows_no_date(
    make_settings: ConfigFactory, tmp_path: Path
) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN_FILE, "utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual"}], tagging={"iot": ["IoT"]}
    )
    undated = news(1, published_at=GATHERED, date_estimated=True, tags=("iot",), title="Ohne Datum")
    dated = news(2, published_at=PUBLISHED, tags=("iot",), title="Mit Datum")
    with engine_for(settings).begin() as conn:
        store.upsert_items(conn, "manual", [undated, dated], GATHERED)
    result = compose.compose(settings, "digest", DATE)
    assert result.edition is not None
    assert [item.id for item in result.edition.items] == ["item-1", "item-2"]  # first seen is newer
    rendered = render_all(settings, result.campaign, result.edition, DATE)
    for language, message in rendered.items():
        for part in (message.html, message.text):
            assert "Ohne Datum" in part
            assert day(GATHERED, language) not in part
            assert day(PUBLISHED, language) in part


# -- images --------------------------------------------------------------------------------------------


def test_a_stored_image_is_linked_from_public_url(env: Environment) -> None:
    shown = edition(full=(news(1, image="media/3f2a9c.jpg"), news(2, image="/media/b 7.png")))
    html, _text = both(env, shown, "de")
    assert images(html) == [
        "https://news.example.org/media/3f2a9c.jpg",
        "https://news.example.org/media/b%207.png",
    ]


@pytest.mark.parametrize(
    "hot_link",
    [
        "https://example.com/img/drehstart.jpg",
        "http://example.com/img/drehstart.jpg",
        "HTTPS://EXAMPLE.COM/a.jpg",
        "//cdn.example.com/a.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
    ],
)
def test_an_image_that_is_a_url_is_not_shown(env: Environment, hot_link: str) -> None:
    shown = edition(full=(news(1, image=hot_link), news(2, image="media/ok.jpg")))
    html, text = both(env, shown, "de")
    assert images(html) == ["https://news.example.org/media/ok.jpg"]
    host = hot_link.split("//")[-1].split("/")[0] if "//" in hot_link else hot_link
    assert host not in html
    assert "Meldung Nummer 1" in html and "Meldung Nummer 1" in text  # the item itself stays


@pytest.mark.parametrize(
    ("value", "public_url", "expected"),
    [
        ("media/a.jpg", "https://n.example.org", "https://n.example.org/media/a.jpg"),
        ("media/a.jpg", "https://n.example.org/news/", "https://n.example.org/news/media/a.jpg"),
        (None, "https://n.example.org", None),
        ("", "https://n.example.org", None),
        ("media/a.jpg", "", None),
        ("https://elsewhere.example/a.jpg", "https://n.example.org", None),
    ],
)
def test_image_url(value: str | None, public_url: str, expected: str | None) -> None:
    assert image_url(value, public_url) == expected


def test_the_service_renders_images_under_the_configured_public_url(
    make_settings: ConfigFactory, tmp_path: Path
) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN_FILE, "utf-8")
    settings = make_settings(
        [{"name": "manual", "type": "manual", "url": "manual"}],
        tagging={"iot": ["IoT"]},
        public_url="https://outreach.example.net/imk",
    )
    campaign = compose.get_campaign(settings, "digest")
    items = (news(1, image="media/ab12.jpg"), news(2, image="https://news-site.example/b.jpg"))
    shown = Edition(
        id=1,
        campaign="digest",
        created_at=DATE,
        date=DATE,
        sections=(EditionSection("tech", {"de": "Technik", "en": "Tech"}, items),),
    )
    for message in render_all(settings, campaign, shown, DATE).values():
        assert images(message.html) == ["https://outreach.example.net/imk/media/ab12.jpg"]
        assert "news-site.example" not in message.html
