"""Items for staff (services/items_admin.py), on SQLite and PostgreSQL: search filters and paging,
an excluded item left out by compose, a manual item written as a YAML file, gathered at once and kept
by the next gather, and bad input answered with the field to fix."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.tables import items as items_table
from imk_outreach.db.tables import sources as sources_table
from imk_outreach.models import NewsItem, Translation
from imk_outreach.services import compose, ingest, items_admin
from imk_outreach.services.database import engine_for
from imk_outreach.services.items_admin import ManualItemError, UnknownItemError
from imk_outreach.sources.normalize import canonical_url, item_id
from tests.conftest import ConfigFactory

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CAMPAIGN = """\
name: digest
list: newsletter
languages: [de, en]
approval: required
min_items: 1
subject: {de: "Digest", en: "Digest"}
intro: {de: "Hallo.", en: "Hello."}
sections:
  - {id: all, heading: {de: Alles, en: All}, select: {since: 30d}}
"""


def news(n: int, **changes: object) -> NewsItem:
    values: dict[str, object] = {
        "id": f"item{n:02d}",
        "url": f"https://example.org/{n}",
        "source": "feed",
        "title": f"Meldung {n}",
        "summary_html": f"<p>Text {n}</p>",
        "published_at": NOW - timedelta(days=n),
        "language": "de",
        "tags": ("iot",),
    }
    values.update(changes)
    return NewsItem(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(make_settings: ConfigFactory, tmp_path: Path) -> Settings:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "digest.yaml").write_text(CAMPAIGN, "utf-8")
    (tmp_path / "manual").mkdir()
    (tmp_path / "single.yaml").write_text("[]\n", "utf-8")
    return make_settings(
        [
            {"name": "feed", "type": "rss", "url": "https://example.org/feed.xml"},
            {"name": "news-desk", "type": "manual", "url": "manual", "language": "de"},
            {"name": "single", "type": "manual", "url": "single.yaml"},
        ],
        lists={"newsletter": {"de": "Newsletter", "en": "Newsletter"}},
    )


def _store(settings: Settings, source: str, batch: list[NewsItem]) -> None:
    with engine_for(settings).begin() as conn:
        store.upsert_items(conn, source, batch, NOW)


def _stock(settings: Settings) -> None:
    _store(
        settings,
        "feed",
        [
            news(1, title="Drehstart in Babelsberg", tags=("film",)),
            news(2, title="IoT-Messe", language="en"),
            news(3, title="Games-Förderung", translations={"en": Translation("Games funding", "")}),
            news(12, title="Alte Meldung"),
        ],
    )
    _store(settings, "other", [news(2, source="other"), news(4, source="other", title="Andere Quelle")])


def _ids(rows: list[items_admin.ItemRow]) -> list[str]:
    return [row.item.id for row in rows]


# -- search ----------------------------------------------------------------------------------------


def test_search_filters_by_text_source_tag_language_and_dates(settings: Settings) -> None:
    _stock(settings)
    everything, total = items_admin.search_items(settings)
    assert _ids(everything) == ["item01", "item02", "item03", "item04", "item12"] and total == 5
    assert _ids(items_admin.search_items(settings, text="drehSTART")[0]) == ["item01"]
    assert _ids(items_admin.search_items(settings, text="funding")[0]) == ["item03"]  # a translation
    assert _ids(items_admin.search_items(settings, text="förderung")[0]) == ["item03"]
    assert _ids(items_admin.search_items(settings, text="100%")[0]) == []  # % is no wildcard
    # the source that brought an item, or any other that had it too
    assert _ids(items_admin.search_items(settings, source="other")[0]) == ["item02", "item04"]
    assert _ids(items_admin.search_items(settings, tag="FILM")[0]) == ["item01"]
    assert _ids(items_admin.search_items(settings, language="en")[0]) == ["item02"]
    since, until = items_admin.day_range(
        settings, (NOW - timedelta(days=3)).date(), (NOW - timedelta(days=2)).date()
    )
    assert _ids(items_admin.search_items(settings, since=since, until=until)[0]) == ["item02", "item03"]
    combined = items_admin.search_items(settings, source="feed", tag="iot", since=since)
    assert _ids(combined[0]) == ["item02", "item03"] and combined[1] == 2


def test_search_pages_and_counts_all_matches(settings: Settings) -> None:
    _stock(settings)
    first, total = items_admin.search_items(settings, limit=2)
    second, _ = items_admin.search_items(settings, limit=2, offset=2)
    last, _ = items_admin.search_items(settings, limit=2, offset=4)
    assert total == 5
    assert _ids(first) + _ids(second) + _ids(last) == _ids(items_admin.search_items(settings)[0])
    assert len(last) == 1


def test_day_range_is_whole_local_days(settings: Settings) -> None:
    since, until = items_admin.day_range(settings, date(2026, 11, 20), date(2026, 11, 20))
    assert since == datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # midnight in Berlin (UTC+1)
    assert until == datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    assert items_admin.day_range(settings, None, None) == (None, None)


# -- exclusion -------------------------------------------------------------------------------------


def _composed_ids(settings: Settings, now: datetime) -> list[str]:
    result = compose.compose(settings, "digest", now, keep_short=True)
    assert result.edition is not None
    return [item.id for section in result.edition.sections for item in section.items]


def test_excluded_item_is_left_out_by_compose_until_included_again(settings: Settings) -> None:
    _stock(settings)
    assert "item01" in _composed_ids(settings, NOW)
    row = items_admin.exclude_item(settings, "item01", "anna", NOW)
    assert row.excluded and row.excluded_at == NOW and row.excluded_by == "anna"
    assert "item01" not in _composed_ids(settings, NOW + timedelta(minutes=1))  # the draft refreshed
    visible, total = items_admin.search_items(settings, include_excluded=False)
    assert "item01" not in _ids(visible) and total == 4
    marked = {row.item.id: row for row in items_admin.search_items(settings)[0]}
    assert marked["item01"].excluded_by == "anna" and not marked["item02"].excluded
    back = items_admin.include_item(settings, "item01", "ben")
    assert not back.excluded and back.excluded_by is None
    assert "item01" in _composed_ids(settings, NOW + timedelta(minutes=2))


def test_excluding_an_unknown_item_is_an_error(settings: Settings) -> None:
    with pytest.raises(UnknownItemError, match="nope"):
        items_admin.exclude_item(settings, "nope", "anna", NOW)
    with pytest.raises(UnknownItemError):
        items_admin.include_item(settings, "nope", "anna")


# -- manual items ----------------------------------------------------------------------------------

TITLE = {"de": "Drehstart in Babelsberg: „Über Grenzen“", "en": "Shooting starts in Babelsberg"}
SUMMARY = {"de": "Die **Dreharbeiten** beginnen.", "en": "Filming *begins*."}


def _add(settings: Settings, **changes: object) -> NewsItem:
    values: dict[str, object] = {
        "url": "https://example.org/news/drehstart?utm_source=x",
        "title": TITLE,
        "summary": SUMMARY,
        "tags": ["Film", "Künstliche Intelligenz"],
        "published": "2026-11-20",
        "now": NOW,
        "by": "anna",
    }
    values.update(changes)
    return items_admin.add_manual_item(settings, "news-desk", **values)  # type: ignore[arg-type]


def test_manual_item_is_written_gathered_and_kept_by_the_next_gather(
    settings: Settings, tmp_path: Path
) -> None:
    item = _add(settings)
    files = sorted((tmp_path / "manual").iterdir())
    assert [p.name for p in files] == ["2026-11-20-drehstart-in-babelsberg-ueber-grenzen.yaml"]
    written = yaml.safe_load(files[0].read_text("utf-8"))
    assert written == [
        {
            "url": "https://example.org/news/drehstart?utm_source=x",
            "published": "2026-11-20",
            "tags": ["film", "künstliche-intelligenz"],
            "title": TITLE,
            "summary": SUMMARY,
        }
    ]
    assert "anna" in files[0].read_text("utf-8").splitlines()[0]  # who added it, in a comment
    assert item.url == "https://example.org/news/drehstart" and item.source == "news-desk"
    assert item.title == TITLE["de"] and item.language == "de"
    assert item.translations["en"].title == TITLE["en"]
    assert "<strong>Dreharbeiten</strong>" in item.summary_html
    assert item.tags == ("film", "künstliche-intelligenz")
    assert item.published_at == datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # midnight in Berlin
    # the file keeps it: gone from the database (item and the source's validators, as in a new
    # database), the next gather brings it back the same
    with engine_for(settings).begin() as conn:
        conn.execute(delete(items_table).where(items_table.c.id == item.id))
        conn.execute(delete(sources_table).where(sources_table.c.name == "news-desk"))
    report = ingest.gather(settings, ["news-desk"], now=NOW + timedelta(hours=1)).reports[0]
    assert report.status == "ok" and report.new == 1 and report.warning is None
    with engine_for(settings).connect() as conn:
        again = store.get_items(conn, [item.id])[item.id]
    assert (again.title, again.translations, again.tags) == (item.title, item.translations, item.tags)


def test_a_second_item_with_the_same_title_gets_its_own_file(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "manual" / "2026-11-20-drehstart-in-babelsberg-ueber-grenzen.yaml").write_text(
        "- url: https://example.org/other\n  title: Schon da\n", "utf-8"
    )
    before = (tmp_path / "manual" / "2026-11-20-drehstart-in-babelsberg-ueber-grenzen.yaml").read_text(
        "utf-8"
    )
    _add(settings)
    names = sorted(p.name for p in (tmp_path / "manual").iterdir())
    assert names == [
        "2026-11-20-drehstart-in-babelsberg-ueber-grenzen-2.yaml",
        "2026-11-20-drehstart-in-babelsberg-ueber-grenzen.yaml",
    ]
    assert (tmp_path / "manual" / names[1]).read_text("utf-8") == before  # never overwritten


def test_an_address_stored_or_written_already_is_refused(settings: Settings, tmp_path: Path) -> None:
    _stock(settings)
    with pytest.raises(ManualItemError, match="stored already") as stored:
        _add(settings, url="https://example.org/1")
    assert stored.value.field == "url"
    (tmp_path / "manual" / "waiting.yaml").write_text(
        "- url: https://example.org/waiting\n  title: Noch nicht gesammelt\n", "utf-8"
    )
    with pytest.raises(ManualItemError, match="waiting.yaml"):
        _add(settings, url="https://EXAMPLE.org/waiting?utm_medium=mail")
    assert sorted(p.name for p in (tmp_path / "manual").iterdir()) == ["waiting.yaml"]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"title": {"de": "Nur Deutsch"}}, "title.en", "required"),
        ({"title": {"de": "  ", "en": "Only English"}}, "title.de", "required"),
        ({"title": {**TITLE, "fr": "Français"}}, "title", "unknown language 'fr'"),
        ({"url": "ftp://example.org/x"}, "url", "not an http(s) web address"),
        ({"url": "Drehstart"}, "url", "not an http(s) web address"),
        ({"url": ""}, "url", "required"),
        ({"tags": ["film", "#ki"]}, "tags", "'#ki' is not a tag"),
        ({"tags": ["a/b"]}, "tags", "not a tag"),
        ({"published": "20.11.2026"}, "published", "not a date"),
        ({"image": "javascript:alert(1)"}, "image", "not an http(s) web address"),
        ({"summary": {"de": "x" * 20_001}}, "summary.de", "longer than 20000"),
    ],
)
def test_bad_input_names_the_field(
    settings: Settings, tmp_path: Path, changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ManualItemError, match=re.escape(words)) as error:
        _add(settings, **changes)
    assert error.value.field == field and str(error.value).startswith(f"{field}: ")
    assert list((tmp_path / "manual").iterdir()) == []  # nothing written


def test_only_a_manual_source_that_reads_a_folder_takes_items(settings: Settings) -> None:
    with pytest.raises(ManualItemError, match="no source named 'nope'") as unknown:
        items_admin.add_manual_item(
            settings, "nope", url="https://example.org/a", title=TITLE, summary={}, now=NOW
        )
    assert unknown.value.field == "source"
    with pytest.raises(ManualItemError, match="single file"):
        items_admin.add_manual_item(
            settings, "single", url="https://example.org/a", title=TITLE, summary={}, now=NOW
        )
    with pytest.raises(ManualItemError, match="feed is a rss source"):
        items_admin.add_manual_item(
            settings, "feed", url="https://example.org/a", title=TITLE, summary={}, now=NOW
        )
    assert [s.name for s in items_admin.manual_sources(settings)] == ["news-desk"]


def test_item_without_date_or_summary_is_dated_when_gathered(settings: Settings) -> None:
    item = _add(settings, published=None, summary={}, tags=[])
    assert item.published_at == NOW and item.date_estimated
    assert item.summary_html == "" and item.tags == ()
    assert item.id == item_id(canonical_url("https://example.org/news/drehstart") or "")


def test_slug_of_titles() -> None:
    assert items_admin.slug("Größe & Maß: Über 100 %!") == "groesse-mass-ueber-100"
    assert items_admin.slug("<script>") == "script"
    assert items_admin.slug("日本") == "item"
    assert len(items_admin.slug("wort " * 40)) <= 60


def test_a_folder_that_cannot_be_written_is_a_clear_error_and_nothing_is_added(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Path.write_text

    def disk_full(self: Path, *args: object, **kwargs: object) -> int:
        if self.parent == tmp_path / "manual":
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(ManualItemError, match="cannot be written \\(No space left on device\\)") as error:
        _add(settings)
    assert error.value.field == "source" and str(tmp_path / "manual") in str(error.value)
    monkeypatch.undo()
    assert [p for p in (tmp_path / "manual").iterdir() if p.suffix == ".yaml"] == []
