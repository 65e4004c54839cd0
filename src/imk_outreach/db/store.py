"""Functions named by intent. The service opens the transaction and passes the Connection in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from imk_outreach.db.tables import (
    UTCDateTime,
    app_settings,
    edition_items,
    edition_messages,
    editions,
    erased_addresses,
    item_sources,
    item_tags,
    items,
    outbox,
    sources,
    subscriber_lists,
    subscribers,
)
from imk_outreach.errors import DatabaseError
from imk_outreach.models import (
    Delivery,
    Edition,
    EditionSection,
    NewsItem,
    RenderedEmail,
    SourceHealth,
    Subscriber,
    Translation,
    Validators,
)

MIGRATIONS = Path(__file__).with_name("migrations")
_CHUNK = 500


# -- engine and migrations -------------------------------------------------------------------------


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process crashes, fewer fsyncs
    cursor.close()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as given
        return url


def open_database(url: str, migrate: bool = True) -> Engine:
    """An Engine for ``url`` with the schema migrated to the newest revision.

    :raises DatabaseError: the URL is wrong or the server cannot be reached.
    """
    shown = _redacted(url)
    try:
        if url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise DatabaseError(shown, f"cannot use this database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            orig = getattr(exc, "orig", None)
            reason = (str(orig or exc).strip().splitlines() or ["unknown error"])[0]
            raise DatabaseError(shown, f"cannot open or migrate: {reason}") from exc
    return engine


def upgrade(engine: Engine) -> None:
    """Run pending Alembic migrations (cheap when the schema is current)."""
    with engine.begin() as conn:
        head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        command.upgrade(_alembic_config(conn), "head")


# -- items -----------------------------------------------------------------------------------------


def content_hash(item: NewsItem) -> str:
    """A hash over what a reader sees; an estimated date is not content."""
    payload = {
        "url": item.url,
        "title": item.title,
        "summary": item.summary_html,
        "published": None if item.date_estimated else item.published_at.isoformat(),
        "language": item.language,
        "image": item.image,
        "translations": {k: [t.title, t.summary_html] for k, t in sorted(item.translations.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _insert(conn: Connection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _existing(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in _chunks(ids):
        query = select(items.c.id, items.c.source, items.c.content_hash).where(items.c.id.in_(chunk))
        found.update({row.id: row for row in conn.execute(query)})
    return found


def _item_row(item: NewsItem, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "id": item.id,
        "url": item.url,
        "source": item.source,
        "title": item.title,
        "summary_html": item.summary_html,
        "published_at": item.published_at,
        "date_estimated": item.date_estimated,
        "language": item.language,
        "image": item.image,
        "translations": {
            k: {"title": t.title, "summary_html": t.summary_html} for k, t in item.translations.items()
        },
        "content_hash": digest,
        "first_seen_at": now,
        "updated_at": now,
    }


def upsert_items(conn: Connection, source: str, batch: Sequence[NewsItem], now: datetime) -> tuple[int, int]:
    """Store the items one source delivered; returns (new, updated).

    An item already known (same canonical URL, from any source) is not added again; the source is
    remembered beside it and its tags are merged. Its text is updated only from the source that first
    brought it, so two sources with different teasers for one URL do not flip it back and forth.
    """
    existing = _existing(conn, [item.id for item in batch])
    new_rows: list[dict[str, Any]] = []
    changed: list[tuple[NewsItem, str]] = []
    tag_rows: list[dict[str, Any]] = []
    source_rows: list[dict[str, Any]] = []
    for item in batch:
        digest = content_hash(item)
        known = existing.get(item.id)
        if known is None:
            new_rows.append(_item_row(item, digest, now))
        elif known.source == source and known.content_hash != digest:
            changed.append((item, digest))
        tag_rows.extend({"item_id": item.id, "tag": tag} for tag in item.tags)
        source_rows.append({"item_id": item.id, "source": source, "first_seen_at": now})
    for chunk in _chunks(new_rows, 200):
        conn.execute(_insert(conn, items).on_conflict_do_nothing(index_elements=["id"]), list(chunk))
    for item, digest in changed:
        _update_item(conn, item, digest, now)
    _insert_ignoring_duplicates(conn, item_tags, tag_rows, ["item_id", "tag"])
    _insert_ignoring_duplicates(conn, item_sources, source_rows, ["item_id", "source"])
    return len(new_rows), len(changed)


def _update_item(conn: Connection, item: NewsItem, digest: str, now: datetime) -> None:
    row = _item_row(item, digest, now)
    for key in ("id", "first_seen_at", "source"):
        row.pop(key)
    if item.date_estimated:  # keep the first-seen date an undated item was given
        row.pop("published_at")
    conn.execute(update(items).where(items.c.id == item.id).values(**row))


def _insert_ignoring_duplicates(
    conn: Connection, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    for chunk in _chunks(rows):
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=keys), list(chunk))


def list_items(
    conn: Connection,
    since: datetime | None = None,
    tags: Iterable[str] = (),
    sources_: Iterable[str] = (),
    limit: int | None = None,
) -> list[NewsItem]:
    """Items newest first, optionally published at or after ``since``, with any of ``tags``, from any of
    ``sources_`` (the source that brought an item or any other that had it too)."""
    query = select(items).order_by(items.c.published_at.desc(), items.c.id)
    if since is not None:
        query = query.where(items.c.published_at >= since)
    tag_list, source_list = list(tags), list(sources_)
    if tag_list:
        query = query.where(
            exists().where(and_(item_tags.c.item_id == items.c.id, item_tags.c.tag.in_(tag_list)))
        )
    if source_list:
        query = query.where(
            exists().where(and_(item_sources.c.item_id == items.c.id, item_sources.c.source.in_(source_list)))
        )
    if limit is not None:
        query = query.limit(limit)
    return _load_items(conn, query)


def get_items(conn: Connection, ids: Sequence[str]) -> dict[str, NewsItem]:
    """The stored items with these ids (missing ids are left out)."""
    found: dict[str, NewsItem] = {}
    for chunk in _chunks(list(ids)):
        found.update(
            (item.id, item) for item in _load_items(conn, select(items).where(items.c.id.in_(chunk)))
        )
    return found


def known_tags(conn: Connection) -> set[str]:
    """Every tag some stored item carries."""
    return set(conn.execute(select(item_tags.c.tag).distinct()).scalars())


def _load_items(conn: Connection, query: Any) -> list[NewsItem]:
    rows = list(conn.execute(query))
    ids = [row.id for row in rows]
    tag_map = _related(conn, item_tags.c.tag, ids)
    source_map = _related(conn, item_sources.c.source, ids, order=item_sources.c.first_seen_at)
    return [_item_from_row(row, tag_map.get(row.id, []), source_map.get(row.id, [])) for row in rows]


def _related(conn: Connection, column: Any, ids: Sequence[str], order: Any = None) -> dict[str, list[str]]:
    table = column.table
    result: dict[str, list[str]] = {}
    for chunk in _chunks(ids):
        query = select(table.c.item_id, column).where(table.c.item_id.in_(chunk))
        query = query.order_by(table.c.item_id, order if order is not None else column, column)
        for item_id, value in conn.execute(query):
            result.setdefault(item_id, []).append(value)
    return result


def _item_from_row(row: Any, tags: list[str], item_source_names: list[str]) -> NewsItem:
    translations = {
        lang: Translation(title=t["title"], summary_html=t["summary_html"])
        for lang, t in row.translations.items()
    }
    others = [name for name in item_source_names if name != row.source]
    return NewsItem(
        id=row.id,
        url=row.url,
        source=row.source,
        title=row.title,
        summary_html=row.summary_html,
        published_at=row.published_at,
        language=row.language,
        tags=tuple(sorted(tags)),
        image=row.image,
        date_estimated=row.date_estimated,
        translations=translations,
        sources=(row.source, *others),
    )


def count_items(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(items)).scalar_one())


# -- source health ---------------------------------------------------------------------------------


def get_source_health(conn: Connection, name: str) -> SourceHealth | None:
    row = conn.execute(select(sources).where(sources.c.name == name)).first()
    return _health_from_row(row) if row is not None else None


def all_source_health(conn: Connection) -> dict[str, SourceHealth]:
    return {row.name: _health_from_row(row) for row in conn.execute(select(sources))}


def _health_from_row(row: Any) -> SourceHealth:
    return SourceHealth(
        name=row.name,
        type=row.type,
        url=row.url,
        last_run_at=row.last_run_at,
        last_status=row.last_status,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        last_warning=row.last_warning,
        consecutive_failures=row.consecutive_failures,
        items_seen=row.items_seen,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
    )


def save_source_health(conn: Connection, health: SourceHealth) -> None:
    """Insert or replace the stored state of one source."""
    values = {
        "type": health.type,
        "url": health.url,
        "etag": health.validators.etag,
        "last_modified": health.validators.last_modified,
        "last_run_at": health.last_run_at,
        "last_status": health.last_status,
        "last_success_at": health.last_success_at,
        "last_error": health.last_error,
        "last_error_at": health.last_error_at,
        "last_warning": health.last_warning,
        "consecutive_failures": health.consecutive_failures,
        "items_seen": health.items_seen,
    }
    statement = _insert(conn, sources).values(name=health.name, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def count_items_by_source(conn: Connection) -> dict[str, int]:
    """How many stored items each source has had (including items another source brought first)."""
    query = select(item_sources.c.source, func.count()).group_by(item_sources.c.source)
    return {name: int(count) for name, count in conn.execute(query)}


# -- editions --------------------------------------------------------------------------------------

# States in which an edition's items count as sent: they are never repeated by the same campaign.
SENT_STATES = ("queued", "sending", "sent")
OPEN_STATES = ("draft", "approved")


def create_edition(conn: Connection, edition: Edition) -> int:
    """Store a new edition with its frozen selection; returns its id (``edition.id`` is ignored)."""
    values = _edition_values(edition)
    new_id = conn.execute(editions.insert().values(**values).returning(editions.c.id)).scalar_one()
    _store_selection(conn, int(new_id), edition.sections)
    return int(new_id)


def update_edition(conn: Connection, edition: Edition) -> None:
    """Replace an edition's selection, state, hash and approval fields."""
    conn.execute(update(editions).where(editions.c.id == edition.id).values(**_edition_values(edition)))
    conn.execute(edition_items.delete().where(edition_items.c.edition_id == edition.id))
    _store_selection(conn, edition.id, edition.sections)


def _edition_values(edition: Edition) -> dict[str, Any]:
    return {
        "campaign": edition.campaign,
        "created_at": edition.created_at,
        "date": edition.date,
        "state": edition.state,
        "sections": [{"id": s.id, "heading": dict(s.heading)} for s in edition.sections],
        "content_hash": edition.content_hash,
        "approved_by": edition.approved_by,
        "approved_at": edition.approved_at,
        "approved_hash": edition.approved_hash,
        "skip_reason": edition.skip_reason,
    }


def _store_selection(conn: Connection, edition_id: int, sections: Sequence[EditionSection]) -> None:
    rows = [
        {"edition_id": edition_id, "item_id": item.id, "section": section.id, "position": position}
        for section in sections
        for position, item in enumerate(section.items)
    ]
    if rows:
        conn.execute(edition_items.insert(), rows)


def get_edition(conn: Connection, edition_id: int) -> Edition | None:
    row = conn.execute(select(editions).where(editions.c.id == edition_id)).first()
    return _edition_from_row(conn, row) if row is not None else None


def list_editions(conn: Connection, campaign: str | None = None, states: Sequence[str] = ()) -> list[Edition]:
    """Editions newest first, optionally of one campaign and in some states."""
    query = select(editions).order_by(editions.c.id.desc())
    if campaign is not None:
        query = query.where(editions.c.campaign == campaign)
    if states:
        query = query.where(editions.c.state.in_(list(states)))
    return [_edition_from_row(conn, row) for row in conn.execute(query).all()]


def _edition_from_row(conn: Connection, row: Any) -> Edition:
    query = (
        select(edition_items.c.item_id, edition_items.c.section)
        .where(edition_items.c.edition_id == row.id)
        .order_by(edition_items.c.section, edition_items.c.position)
    )
    placed = list(conn.execute(query))
    found = get_items(conn, [item_id for item_id, _ in placed])
    by_section: dict[str, list[NewsItem]] = {}
    for item_id, section in placed:
        if item_id in found:
            by_section.setdefault(section, []).append(found[item_id])
    sections = tuple(
        EditionSection(s["id"], s["heading"], tuple(by_section.get(s["id"], []))) for s in row.sections
    )
    return Edition(
        id=row.id,
        campaign=row.campaign,
        created_at=row.created_at,
        date=row.date,
        sections=sections,
        state=row.state,
        content_hash=row.content_hash,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        approved_hash=row.approved_hash,
        skip_reason=row.skip_reason,
    )


def sent_item_ids(conn: Connection, campaign: str) -> set[str]:
    """Ids of the items that earlier editions of ``campaign`` sent (or are sending)."""
    query = (
        select(edition_items.c.item_id)
        .join(editions, editions.c.id == edition_items.c.edition_id)
        .where(editions.c.campaign == campaign, editions.c.state.in_(SENT_STATES))
    )
    return set(conn.execute(query).scalars())


def set_edition_state(conn: Connection, edition_id: int, state: str, list_name: str | None = None) -> None:
    values: dict[str, Any] = {"state": state}
    if list_name is not None:
        values["list_name"] = list_name
    conn.execute(update(editions).where(editions.c.id == edition_id).values(**values))


def lock_edition(conn: Connection, edition_id: int) -> str | None:
    """Lock an edition's row for the rest of the transaction and return its state (None: no such
    edition). SQLite has no row locks: there the transaction takes the database's write lock first, so
    call this as the transaction's first statement."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    query = select(editions.c.state).where(editions.c.id == edition_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).scalar_one_or_none()


def edition_lists(conn: Connection, edition_ids: Sequence[int]) -> dict[int, str]:
    """The mailing list each edition was queued for."""
    query = select(editions.c.id, editions.c.list_name).where(editions.c.id.in_(list(edition_ids)))
    return {edition_id: name for edition_id, name in conn.execute(query) if name is not None}


# -- app settings ----------------------------------------------------------------------------------


def get_setting(conn: Connection, key: str) -> str | None:
    return conn.execute(select(app_settings.c.value).where(app_settings.c.key == key)).scalar_one_or_none()


def set_setting_once(conn: Connection, key: str, value: str) -> str:
    """Store ``value`` under ``key`` unless one is there already; returns the stored value (so two
    processes starting at once agree on one)."""
    conn.execute(
        _insert(conn, app_settings)
        .values(key=key, value=value)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    stored = get_setting(conn, key)
    assert stored is not None
    return stored


# -- subscribers -----------------------------------------------------------------------------------


def email_key(email: str) -> str:
    """The form an address is unique in: whitespace trimmed, lower case."""
    return email.strip().lower()


def _subscriber_values(sub: Subscriber, now: datetime) -> dict[str, Any]:
    return {
        "email": sub.email.strip(),
        "email_key": email_key(sub.email),
        "name": sub.name,
        "language": sub.language,
        "status": sub.status,
        "updated_at": now,
        "signup_at": sub.signup_at,
        "confirmed_at": sub.confirmed_at,
        "unsubscribed_at": sub.unsubscribed_at,
        "consent_version": sub.consent_version,
        "ip_hash": sub.ip_hash,
        "source": sub.source,
        "bounce_reason": sub.bounce_reason,
    }


def find_subscriber(conn: Connection, email: str) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
    return _subscriber_from_row(conn, row) if row is not None else None


def get_subscriber(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber_from_row(conn, row) if row is not None else None


def _subscriber_from_row(conn: Connection, row: Any, lists: list[str] | None = None) -> Subscriber:
    if lists is None:
        query = select(subscriber_lists.c.list).where(subscriber_lists.c.subscriber_id == row.id)
        lists = sorted(conn.execute(query).scalars())
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        language=row.language,
        lists=tuple(lists),
        status=row.status,
        created_at=row.created_at,
        signup_at=row.signup_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        consent_version=row.consent_version,
        ip_hash=row.ip_hash,
        source=row.source,
        bounce_reason=row.bounce_reason,
    )


def save_subscriber(conn: Connection, sub: Subscriber, now: datetime) -> Subscriber:
    """Insert (``sub.id`` None) or update a subscriber and replace their lists; returns it with its id.

    :raises sqlalchemy.exc.IntegrityError: inserting an address that exists (compare case-insensitively
        with :func:`find_subscriber` first).
    """
    values = _subscriber_values(sub, now)
    if sub.id is None:
        new_id = conn.execute(
            subscribers.insert().values(created_at=now, **values).returning(subscribers.c.id)
        ).scalar_one()
        sub_id = int(new_id)
    else:
        sub_id = sub.id
        conn.execute(update(subscribers).where(subscribers.c.id == sub_id).values(**values))
        conn.execute(subscriber_lists.delete().where(subscriber_lists.c.subscriber_id == sub_id))
    if sub.lists:
        conn.execute(
            subscriber_lists.insert(),
            [{"subscriber_id": sub_id, "list": name} for name in sorted(set(sub.lists))],
        )
    stored = get_subscriber(conn, sub_id)
    assert stored is not None
    return stored


def delete_subscriber(conn: Connection, subscriber_id: int) -> None:
    conn.execute(subscribers.delete().where(subscribers.c.id == subscriber_id))


def remember_erased(conn: Connection, email_hash: str, now: datetime) -> None:
    statement = _insert(conn, erased_addresses).values(email_hash=email_hash, erased_at=now)
    conn.execute(statement.on_conflict_do_nothing(index_elements=["email_hash"]))


def is_erased(conn: Connection, email_hash: str) -> bool:
    query = select(erased_addresses.c.email_hash).where(erased_addresses.c.email_hash == email_hash)
    return conn.execute(query).first() is not None


def iter_subscribers(
    conn: Connection, list_name: str | None = None, statuses: Sequence[str] = (), batch: int = 1000
) -> Iterator[Subscriber]:
    """Subscribers in id order, streamed in batches (memory stays flat however long the list is)."""
    last = 0
    while True:
        query = select(subscribers).where(subscribers.c.id > last).order_by(subscribers.c.id).limit(batch)
        if list_name is not None:
            query = query.where(
                exists().where(
                    and_(
                        subscriber_lists.c.subscriber_id == subscribers.c.id,
                        subscriber_lists.c.list == list_name,
                    )
                )
            )
        if statuses:
            query = query.where(subscribers.c.status.in_(list(statuses)))
        rows = conn.execute(query).all()
        if not rows:
            return
        lists = _lists_of(conn, [row.id for row in rows])
        for row in rows:
            yield _subscriber_from_row(conn, row, lists.get(row.id, []))
        last = rows[-1].id


def _lists_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    query = (
        select(subscriber_lists.c.subscriber_id, subscriber_lists.c.list)
        .where(subscriber_lists.c.subscriber_id.in_(list(ids)))
        .order_by(subscriber_lists.c.subscriber_id, subscriber_lists.c.list)
    )
    for sub_id, name in conn.execute(query):
        result.setdefault(sub_id, []).append(name)
    return result


def recipients_by_language(conn: Connection, list_name: str) -> dict[str, int]:
    """How many confirmed subscribers of ``list_name`` read each language."""
    query = (
        select(subscribers.c.language, func.count())
        .join(subscriber_lists, subscriber_lists.c.subscriber_id == subscribers.c.id)
        .where(subscriber_lists.c.list == list_name, subscribers.c.status == "confirmed")
        .group_by(subscribers.c.language)
    )
    return {language: int(count) for language, count in conn.execute(query)}


# -- outbox ----------------------------------------------------------------------------------------

PENDING_STATES = ("queued", "retry", "sending")
FINAL_STATES = ("sent", "failed", "unknown", "cancelled")


def enqueue_edition(
    conn: Connection, edition_id: int, list_name: str, languages: Sequence[str], channel: str, now: datetime
) -> int:
    """One outbox row per confirmed subscriber of ``list_name`` (set-based: the list is never loaded).

    The UNIQUE (edition, channel, recipient) key makes a second call, or two at once, add nothing.
    A subscriber whose language the edition lacks gets the first of ``languages``.
    :returns: the number of rows added.
    """
    language = case(
        (subscribers.c.language.in_(list(languages)), subscribers.c.language), else_=literal(languages[0])
    )
    chosen = (
        select(
            literal(edition_id).label("edition_id"),
            literal(channel).label("channel"),
            subscribers.c.id.label("subscriber_id"),
            language.label("language"),
            literal("queued").label("state"),
            literal(0).label("attempts"),
            literal(now, UTCDateTime()).label("next_attempt_at"),
            literal(now, UTCDateTime()).label("created_at"),
            literal(now, UTCDateTime()).label("updated_at"),
        )
        .join(subscriber_lists, subscriber_lists.c.subscriber_id == subscribers.c.id)
        .where(subscriber_lists.c.list == list_name, subscribers.c.status == "confirmed")
        .order_by(subscribers.c.id)
    )
    columns = [
        "edition_id",
        "channel",
        "subscriber_id",
        "language",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ]
    statement = _insert(conn, outbox).from_select(columns, chosen)
    statement = statement.on_conflict_do_nothing(index_elements=["edition_id", "channel", "subscriber_id"])
    before = _outbox_rows(conn, edition_id, channel)
    conn.execute(statement)
    # rowcount of INSERT ... SELECT ... ON CONFLICT is not reported by every driver (psycopg gives -1)
    return _outbox_rows(conn, edition_id, channel) - before


def _outbox_rows(conn: Connection, edition_id: int, channel: str) -> int:
    query = (
        select(func.count())
        .select_from(outbox)
        .where(outbox.c.edition_id == edition_id, outbox.c.channel == channel)
    )
    return int(conn.execute(query).scalar_one())


def claim_batch(
    conn: Connection, worker: str, now: datetime, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Claim up to ``limit`` due rows for ``worker`` under a lease and count the attempt.

    Due: queued or retry rows whose time has come, and rows of a worker whose lease ran out (it
    crashed). On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets workers claim side by side without waiting
    or overlapping; SQLite takes the write lock first (``BEGIN IMMEDIATE``), which serialises claims.
    Call it as the first statement of a transaction.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    due = or_(
        and_(outbox.c.state.in_(["queued", "retry"]), outbox.c.next_attempt_at <= now),
        and_(outbox.c.state == "sending", outbox.c.lease_until < now),
    )
    chosen = select(outbox.c.id).where(due).order_by(outbox.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    statement = (
        update(outbox)
        .where(outbox.c.id.in_(chosen.scalar_subquery()))
        .values(
            state="sending",
            claimed_by=worker,
            lease_until=lease_until,
            attempts=outbox.c.attempts + 1,
            updated_at=now,
        )
        .returning(*outbox.c)
    )
    rows = sorted(conn.execute(statement).all(), key=lambda row: row.id)
    return [_delivery_from_row(row) for row in rows]


def _delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        edition_id=row.edition_id,
        channel=row.channel,
        subscriber_id=row.subscriber_id,
        language=row.language,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
        message_id=row.message_id,
        reply=row.reply,
        error=row.error,
    )


def mark_deliveries(conn: Connection, worker: str, results: Sequence[dict[str, Any]], now: datetime) -> int:
    """Record outcomes in one round trip: each dict has ``id``, ``state`` and optionally ``message_id``,
    ``reply``, ``error``, ``next_attempt_at``. Only rows still claimed by ``worker`` change (a worker that
    lost its lease must not overwrite the new owner's result). Returns the rows changed."""
    if not results:
        return 0
    statement = (
        update(outbox)
        .where(outbox.c.id == bindparam("b_id"), outbox.c.claimed_by == worker, outbox.c.state == "sending")
        .values(
            state=bindparam("b_state"),
            message_id=bindparam("b_message_id"),
            reply=bindparam("b_reply"),
            error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"),
            lease_until=None,
            updated_at=now,
        )
    )
    params = [
        {
            "b_id": r["id"],
            "b_state": r["state"],
            "b_message_id": r.get("message_id"),
            "b_reply": r.get("reply"),
            "b_error": r.get("error"),
            "b_next": r.get("next_attempt_at") or now,
        }
        for r in results
    ]
    return int(conn.execute(statement, params).rowcount or 0)


def outbox_counts(conn: Connection, edition_ids: Sequence[int] | None = None) -> dict[int, dict[str, int]]:
    """Rows per state for each edition."""
    query = select(outbox.c.edition_id, outbox.c.state, func.count()).group_by(
        outbox.c.edition_id, outbox.c.state
    )
    if edition_ids is not None:
        query = query.where(outbox.c.edition_id.in_(list(edition_ids)))
    counts: dict[int, dict[str, int]] = {}
    for edition_id, state, count in conn.execute(query):
        counts.setdefault(edition_id, {})[state] = int(count)
    return counts


def pending_deliveries(conn: Connection) -> int:
    query = select(func.count()).select_from(outbox).where(outbox.c.state.in_(PENDING_STATES))
    return int(conn.execute(query).scalar_one())


def next_due(conn: Connection) -> datetime | None:
    """When the next row becomes claimable: a queued/retry time or a lease running out."""
    waiting = select(func.min(outbox.c.next_attempt_at)).where(outbox.c.state.in_(["queued", "retry"]))
    leased = select(func.min(outbox.c.lease_until)).where(outbox.c.state == "sending")
    times = [conn.execute(waiting).scalar(), conn.execute(leased).scalar()]
    found = [UTCDateTime().process_result_value(t, conn.dialect) for t in times if t is not None]
    return min((t for t in found if t is not None), default=None)


def subscribers_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, Subscriber]:
    """The subscribers with these ids, with their lists (for a claimed batch)."""
    rows = conn.execute(select(subscribers).where(subscribers.c.id.in_(list(ids)))).all()
    lists = _lists_of(conn, [row.id for row in rows])
    return {row.id: _subscriber_from_row(conn, row, lists.get(row.id, [])) for row in rows}


def mark_bounced(conn: Connection, subscriber_ids: Sequence[int], reason: str, now: datetime) -> None:
    if subscriber_ids:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id.in_(list(subscriber_ids)))
            .values(status="bounced", bounce_reason=reason, updated_at=now)
        )


def save_edition_messages(conn: Connection, edition_id: int, rendered: Sequence[RenderedEmail]) -> None:
    """Freeze what an edition rendered to (replacing an earlier freeze of the same edition)."""
    conn.execute(edition_messages.delete().where(edition_messages.c.edition_id == edition_id))
    rows = [
        {
            "edition_id": edition_id,
            "language": r.language,
            "subject": r.subject,
            "preheader": r.preheader,
            "html": r.html,
            "text": r.text,
            "fallbacks": list(r.fallbacks),
        }
        for r in rendered
    ]
    if rows:
        conn.execute(edition_messages.insert(), rows)


def get_edition_messages(conn: Connection, edition_id: int) -> dict[str, RenderedEmail]:
    query = select(edition_messages).where(edition_messages.c.edition_id == edition_id)
    return {
        row.language: RenderedEmail(
            language=row.language,
            subject=row.subject,
            preheader=row.preheader,
            html=row.html,
            text=row.text,
            fallbacks=tuple(row.fallbacks),
        )
        for row in conn.execute(query)
    }
