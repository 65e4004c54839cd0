"""The database layer, run on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from imk_outreach.db import store
from imk_outreach.db.tables import metadata
from imk_outreach.errors import DatabaseError
from imk_outreach.models import NewsItem, SourceHealth, Translation, Validators
from tests.support.postgres import free_port

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def item(n: int, **changes: object) -> NewsItem:
    values: dict[str, object] = {
        "id": f"id{n}",
        "url": f"https://example.org/news/{n}",
        "source": "iot",
        "title": f"Meldung {n}",
        "summary_html": f"<p>Text {n}</p>",
        "published_at": NOW - timedelta(days=n),
        "language": "de",
        "tags": ("iot",),
        "translations": {"en": Translation(f"News {n}", f"<p>Text {n} en</p>")},
    }
    values.update(changes)
    return NewsItem(**values)  # type: ignore[arg-type]


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = store.open_database(db_url)
    yield engine
    engine.dispose()


def test_migrations_create_exactly_the_tables_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_opening_twice_is_harmless(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1)], NOW)
    again = store.open_database(db_url)
    with again.connect() as conn:
        assert store.count_items(conn) == 1
    again.dispose()


def test_upsert_counts_new_then_nothing(engine: Engine) -> None:
    batch = [item(1), item(2), item(3)]
    with engine.begin() as conn:
        assert store.upsert_items(conn, "iot", batch, NOW) == (3, 0)
    with engine.begin() as conn:
        assert store.upsert_items(conn, "iot", batch, NOW + timedelta(hours=1)) == (0, 0)
        assert store.count_items(conn) == 3


def test_changed_text_from_owning_source_is_an_update(engine: Engine) -> None:
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1)], NOW)
        assert store.upsert_items(conn, "iot", [item(1, title="Neuer Titel")], NOW) == (0, 1)
        [stored] = store.list_items(conn)
    assert stored.title == "Neuer Titel"


def test_same_url_from_second_source_is_one_item_remembering_both(engine: Engine) -> None:
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1)], NOW)
        other = item(1, source="bfi", title="Anderer Teaser", tags=("fintech",))
        assert store.upsert_items(conn, "bfi", [other], NOW + timedelta(minutes=5)) == (0, 0)
        [stored] = store.list_items(conn)
        assert store.count_items_by_source(conn) == {"iot": 1, "bfi": 1}
    assert stored.title == "Meldung 1"  # the first source keeps the text
    assert stored.sources == ("iot", "bfi")
    assert stored.tags == ("fintech", "iot")


def test_undated_item_keeps_its_first_seen_date(engine: Engine) -> None:
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1, published_at=NOW, date_estimated=True)], NOW)
        later = NOW + timedelta(days=1)
        changed = item(1, published_at=later, date_estimated=True, title="Korrigiert")
        assert store.upsert_items(conn, "iot", [changed], later) == (0, 1)
        [stored] = store.list_items(conn)
    assert stored.published_at == NOW and stored.date_estimated
    assert stored.title == "Korrigiert"


def test_datetimes_come_back_aware_in_utc(engine: Engine) -> None:
    berlin_time = datetime(2026, 7, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1, published_at=berlin_time)], NOW)
        [stored] = store.list_items(conn)
    assert stored.published_at == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert stored.published_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1, published_at=datetime(2026, 1, 1))], NOW)


def test_list_items_filters(engine: Engine) -> None:
    with engine.begin() as conn:
        store.upsert_items(conn, "iot", [item(1), item(5, tags=("film",)), item(40)], NOW)
        store.upsert_items(
            conn, "bfi", [item(7, source="bfi", url="https://example.org/b", tags=("fintech",))], NOW
        )
        assert [i.id for i in store.list_items(conn)] == ["id1", "id5", "id7", "id40"]
        assert [i.id for i in store.list_items(conn, since=NOW - timedelta(days=6))] == ["id1", "id5"]
        assert [i.id for i in store.list_items(conn, tags=["film", "fintech"])] == ["id5", "id7"]
        assert [i.id for i in store.list_items(conn, sources_=["bfi"])] == ["id7"]
        assert [i.id for i in store.list_items(conn, limit=2)] == ["id1", "id5"]
        [first] = store.list_items(conn, limit=1)
    assert first.translations["en"] == Translation("News 1", "<p>Text 1 en</p>")


def test_source_health_round_trip(engine: Engine) -> None:
    health = SourceHealth(
        name="iot",
        type="rss",
        url="https://example.org/feed",
        last_run_at=NOW,
        last_status="error",
        last_success_at=NOW - timedelta(hours=2),
        last_error="the server answered HTTP 500",
        last_error_at=NOW,
        consecutive_failures=2,
        items_seen=12,
        validators=Validators('"abc"', "Mon, 23 Nov 2026 10:00:00 GMT"),
    )
    with engine.begin() as conn:
        store.save_source_health(conn, health)
        store.save_source_health(conn, health)  # replacing is fine
        assert store.get_source_health(conn, "iot") == health
        assert store.get_source_health(conn, "nope") is None


def test_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot use this database URL"):
        store.open_database("nosuchdb://x")


@pytest.mark.postgres
def test_unreachable_postgres_is_a_clear_error() -> None:
    url = f"postgresql+psycopg://imk:secret@127.0.0.1:{free_port()}/imk"
    with pytest.raises(DatabaseError) as info:
        store.open_database(url)
    message = str(info.value)
    assert "cannot open or migrate" in message and "secret" not in message
