"""Item images: gathering stores a checked, resized copy without metadata and never hot-links.

Images come from a real HTTP server on loopback (good ones, a decompression bomb, HTML labelled as
JPEG, an oversized body, a 404, one that answers too late) and from files beside a manual source; the
gather runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from PIL import Image, ImageCms
from sqlalchemy import Connection, text

from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.db.engine import MIGRATIONS
from imk_outreach.models import NewsItem
from imk_outreach.services import catalog, ingest, media
from imk_outreach.services.database import engine_for
from imk_outreach.sources import images
from imk_outreach.sources.normalize import image_url
from tests.conftest import ConfigFactory
from tests.support.httpserver import FixtureServer

# The bomb makes Pillow warn while opening; images.py silences that for the process (it refuses such
# images itself), but pytest resets warning filters per test.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
JPEG = {"Content-Type": "image/jpeg"}
PNG = {"Content-Type": "image/png"}


# -- test images (made here, so each test says what it feeds in) --------------------------------------


def jpeg(width: int = 2400, height: int = 1600, exif: bool = False, **save: Any) -> bytes:
    """A JPEG photo; with ``exif``, camera, author and GPS position, rotated by EXIF (Orientation 6)."""
    image = Image.new("RGB", (width, height), (200, 40, 30))
    image.paste((20, 60, 200), (0, 0, width // 2, height // 3))  # a corner to see the orientation by
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "SpyCam"  # Make
        tags[0x013B] = "Anna Fotografin"  # Artist
        tags[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
        tags[0x8825] = {1: "N", 2: (52.0, 30.0, 1.5), 3: "E", 4: (13.0, 24.0, 0.0)}  # GPS
        save |= {"exif": tags.tobytes(), "comment": b"shot at home"}
        save["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def transparent_png(width: int = 900, height: int = 600) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((18, 53, 91, 255), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    out = BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def encoded(image: Image.Image, fmt: str, **save: Any) -> bytes:
    out = BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def bomb() -> bytes:
    """A real PNG of a few kilobytes that decodes to 100 million pixels."""
    return encoded(Image.new("1", (10_000, 10_000)), "PNG", optimize=True)


def opened(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


# -- the pure copy ---------------------------------------------------------------------------------


def test_a_photo_is_turned_upright_resized_and_stripped_of_every_metadata() -> None:
    original = jpeg(1200, 800, exif=True)
    assert b"Anna Fotografin" in original and b"shot at home" in original  # the test image has them
    copy = images.prepare(original)
    assert (copy.extension, copy.width, copy.height) == ("jpg", 600, 900)  # rotated, then 600 wide
    result = Image.open(BytesIO(copy.data))
    assert result.format == "JPEG" and result.size == (600, 900) and result.mode == "RGB"
    assert dict(result.getexif()) == {} and "icc_profile" not in result.info and "comment" not in result.info
    assert b"Anna Fotografin" not in copy.data and b"SpyCam" not in copy.data and b"Exif" not in copy.data
    red, green, blue = result.convert("RGB").getpixel((580, 20))[:3]
    assert blue > 150 and red < 100  # the blue corner went from top left to top right: turned upright
    assert copy.name == hashlib.sha256(copy.data).hexdigest() + ".jpg"


def test_transparency_stays_a_png_and_an_opaque_png_becomes_a_jpeg() -> None:
    copy = images.prepare(transparent_png(900, 600))
    result = Image.open(BytesIO(copy.data))
    assert (copy.extension, result.format, result.mode, result.size) == ("png", "PNG", "RGBA", (600, 400))
    assert result.getpixel((0, 0))[3] == 0 and result.getpixel((300, 200))[3] == 255
    opaque = encoded(Image.new("RGBA", (700, 700), (10, 200, 10, 255)), "PNG")
    assert images.prepare(opaque).extension == "jpg"
    paletted = Image.new("P", (400, 300), 0)
    paletted.paste(1, (100, 100, 300, 200))
    assert images.prepare(encoded(paletted, "PNG", transparency=0)).extension == "png"


def test_webp_and_gif_become_jpeg_small_images_are_not_enlarged() -> None:
    webp = images.prepare(encoded(Image.new("RGB", (1000, 500), "teal"), "WEBP"))
    assert (webp.extension, webp.width, webp.height) == ("jpg", 600, 300)
    frames = [Image.new("RGB", (320, 200), color) for color in ("red", "blue", "green")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    copy = images.prepare(gif)
    assert (copy.extension, copy.width, copy.height) == ("jpg", 320, 200)  # first frame, size kept
    red, _, blue = Image.open(BytesIO(copy.data)).getpixel((10, 10))
    assert red > 200 and blue < 60
    tall = images.prepare(jpeg(600, 6000))
    assert (tall.width, tall.height) == (120, 1200)  # an infographic is scaled to fit twice the width


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<!doctype html><html><body>Not found</body></html>", "not an image"),
        (jpeg(800, 600)[:3000], "broken or unreadable"),  # cut off
        (bomb(), "too many pixels (10000×10000"),
        (encoded(Image.new("RGB", (1, 1)), "GIF"), "too small to show (1×1 px"),
        (encoded(Image.new("RGB", (200, 200)), "BMP"), "not an image"),  # a decoder never tried
        (encoded(Image.new("RGB", (200, 200)), "TIFF"), "not an image"),
    ],
    ids=["html", "truncated", "bomb", "pixel", "bmp", "tiff"],
)
def test_what_is_not_a_usable_picture_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(images.ImageError) as info:
        images.prepare(data)
    assert reason in info.value.reason


def test_only_a_document_read_from_disk_may_name_a_local_image() -> None:
    local = "file:///srv/news/items.yaml"
    assert image_url("bild.jpg", local) == "file:///srv/news/bild.jpg"
    assert image_url("bilder/mit leerzeichen.jpg", local) == "file:///srv/news/bilder/mit%20leerzeichen.jpg"
    assert image_url("https://e.org/a.jpg", local) == "https://e.org/a.jpg"
    assert image_url("/etc/passwd", local) is None  # only paths relative to the document
    assert image_url("javascript:alert(1)", local) is None
    assert image_url("file:///etc/passwd", "https://e.org/feed.xml") is None
    assert image_url("../../etc/passwd", "https://e.org/a/feed.xml") == "https://e.org/etc/passwd"


# -- gathering -------------------------------------------------------------------------------------


def _feed(entries: list[tuple[str, str | None]]) -> bytes:
    """An RSS feed: one item per (slug, image path or None), images as enclosures."""
    items = []
    for slug, image in entries:
        enclosure = f'<enclosure url="{image}" type="image/jpeg" length="0"/>' if image else ""
        items.append(
            f"<item><title>Nachricht {slug}</title><link>https://news.example/{slug}</link>"
            f"<pubDate>Mon, 23 Nov 2026 10:00:00 +0100</pubDate>{enclosure}</item>"
        )
    body = "".join(items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


FAULTS = {  # slug -> (path, route or None for the server's own special path, reason in the log)
    "bomb": ("/img/bomb.png", (200, PNG, bomb()), "too many pixels"),
    "html": ("/img/html.jpg", (200, JPEG, b"<!doctype html><title>Login</title>"), "not an image"),
    "label": (
        "/img/label.jpg",
        (200, {"Content-Type": "text/html"}, jpeg(800, 600)),
        "Content-Type text/html",
    ),
    "huge": ("/img/huge.jpg", (200, JPEG, b"\xff" * (images.MAX_IMAGE_BYTES + 1)), "larger than the 5 MB"),
    "gone": ("/img/gone.jpg", None, "HTTP 404"),
    "slow": ("/slow/5/img/photo.jpg", None, "timeout"),
}


@pytest.fixture
def image_server(http_server: FixtureServer) -> FixtureServer:
    http_server.routes["/img/photo.jpg"] = (200, JPEG, jpeg(2400, 1600, exif=True))
    http_server.routes["/img/logo.png"] = (200, PNG, transparent_png(900, 600))
    for path, route, _ in FAULTS.values():
        if route is not None:
            http_server.routes[path] = route
    return http_server


def _gather_feed(
    make_settings: ConfigFactory, server: FixtureServer, entries: list[tuple[str, str | None]], **extra: Any
) -> tuple[Settings, ingest.GatherResult]:
    server.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, _feed(entries))
    sources = [{"name": "news", "type": "rss", "url": server.url("feed.xml")}, *extra.pop("sources", [])]
    settings = make_settings(sources, gather={"timeout": 1}, **extra)
    return settings, ingest.gather(settings)


def _by_slug(settings: Settings) -> dict[str, NewsItem]:
    return {item.url.rsplit("/", 1)[1]: item for item in catalog.find_items(settings)}


def _stored(settings: Settings, item: NewsItem) -> Path:
    assert item.image is not None and item.image.startswith("media/")
    return media.media_folder(settings) / item.image.removeprefix("media/")


def _image_sources(settings: Settings) -> dict[str, str | None]:
    with engine_for(settings).connect() as conn:
        ids = [item.id for item in catalog.find_items(settings)]
        return {item_id: s.image_source for item_id, s in store.stored_images(conn, ids).items()}


def test_gather_stores_copies_and_a_failed_image_only_leaves_its_item_without_one(
    make_settings: ConfigFactory, image_server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    entries = [("photo", "/img/photo.jpg"), ("logo", "/img/logo.png"), ("plain", None)]
    entries += [(slug, path) for slug, (path, _, _) in FAULTS.items()]
    with caplog.at_level(logging.WARNING, logger="imk_outreach.services.media"):
        settings, result = _gather_feed(make_settings, image_server, entries)
    [report] = result.reports
    assert (report.status, report.error, report.new, result.exit_code) == ("ok", None, len(entries), 0)
    assert report.warning is not None and f"{len(FAULTS)} item images left out" in report.warning
    items = _by_slug(settings)
    photo = opened(_stored(settings, items["photo"]))
    assert (photo.format, photo.size) == ("JPEG", (600, 900)) and dict(photo.getexif()) == {}  # upright
    assert _stored(settings, items["photo"]).name.endswith(".jpg")
    logo = opened(_stored(settings, items["logo"]))
    assert (logo.format, logo.mode, logo.size) == ("PNG", "RGBA", (600, 400))
    for path in media.media_folder(settings).iterdir():  # content-addressed, nothing half written
        assert path.name == hashlib.sha256(path.read_bytes()).hexdigest() + path.suffix
    assert items["plain"].image is None
    for slug, (path, _, reason) in FAULTS.items():
        assert items[slug].image is None, slug
        [line] = [r.getMessage() for r in caplog.records if f"/{slug}:" in r.getMessage()]
        assert line.startswith(f"source news: item https://news.example/{slug}: image ")
        assert image_server.url(path) in line and reason in line, line
    sources = _image_sources(settings)
    assert sources[items["photo"].id] == image_server.url("/img/photo.jpg")
    assert sources[items["plain"].id] is None


def test_an_unchanged_image_is_not_fetched_again(
    make_settings: ConfigFactory, image_server: FixtureServer
) -> None:
    entries: list[tuple[str, str | None]] = [("photo", "/img/photo.jpg"), ("gone", "/img/gone.jpg")]
    settings, _ = _gather_feed(make_settings, image_server, entries)
    first = _by_slug(settings)["photo"].image
    settings, again = _gather_feed(make_settings, image_server, entries)  # the feed has no validators
    assert _by_slug(settings)["photo"].image == first and again.reports[0].updated == 0
    assert image_server.hits["/img/photo.jpg"] == 1
    assert image_server.hits["/img/gone.jpg"] == 2  # a failed image is tried again
    _stored(settings, _by_slug(settings)["photo"]).unlink()  # the copy is lost: it is made again
    settings, _ = _gather_feed(make_settings, image_server, entries)
    assert (
        image_server.hits["/img/photo.jpg"] == 2 and _stored(settings, _by_slug(settings)["photo"]).is_file()
    )
    image_server.routes["/img/other.png"] = (200, PNG, transparent_png(300, 300))
    settings, changed = _gather_feed(make_settings, image_server, [("photo", "/img/other.png")])
    assert changed.reports[0].updated == 1
    assert _stored(settings, _by_slug(settings)["photo"]).suffix == ".png"


def test_a_manual_source_names_images_beside_its_file(
    make_settings: ConfigFactory, image_server: FixtureServer, tmp_path: Path
) -> None:
    folder = tmp_path / "manual"
    folder.mkdir()
    (folder / "bild.jpg").write_bytes(jpeg(1000, 500))
    (folder / "items.yaml").write_text(
        "- {url: 'https://cluster.example/a', title: Mit Bild, image: bild.jpg}\n"
        "- {url: 'https://cluster.example/b', title: Ohne Datei, image: fehlt.jpg}\n",
        encoding="utf-8",
    )
    manual = {"name": "manual", "type": "manual", "url": "manual"}
    settings, result = _gather_feed(
        make_settings, image_server, [("gone", "/img/gone.jpg")], sources=[manual]
    )
    assert [(r.name, r.status) for r in result.reports] == [("news", "ok"), ("manual", "ok")]
    items = _by_slug(settings)
    assert opened(_stored(settings, items["a"])).size == (600, 300)
    assert items["b"].image is None and items["gone"].image is None
    manual_report = result.reports[1]
    assert manual_report.warning is not None and "file not found" in manual_report.warning
    (folder / "bild.jpg").write_bytes(transparent_png(400, 400))  # staff replace the picture ...
    with (folder / "items.yaml").open("a", encoding="utf-8") as yaml_file:
        yaml_file.write("# neues Bild\n")  # ... and save the YAML file
    settings, again = _gather_feed(make_settings, image_server, [], sources=[manual])
    assert again.reports[1].updated == 1
    assert opened(_stored(settings, _by_slug(settings)["a"])).size == (400, 400)


def test_media_dir_that_cannot_be_written_leaves_images_out_but_gathers(
    make_settings: ConfigFactory, image_server: FixtureServer, tmp_path: Path
) -> None:
    (tmp_path / "not-a-folder").write_text("x", encoding="utf-8")
    settings, result = _gather_feed(
        make_settings, image_server, [("photo", "/img/photo.jpg")], media_dir="not-a-folder"
    )
    [report] = result.reports
    assert (report.status, report.new) == ("ok", 1) and "cannot write into media_dir" in (
        report.warning or ""
    )
    assert _by_slug(settings)["photo"].image is None


# -- a database from before stored copies ----------------------------------------------------------


def _alembic(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_migration_0007_keeps_the_old_image_url_as_where_a_copy_comes_from(db_url: str) -> None:
    engine = store.open_database(db_url, migrate=False)
    when = "2026-11-20 09:00:00+00:00"
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0006")
        conn.execute(
            text(
                "INSERT INTO items (id, url, source, title, summary_html, published_at, date_estimated,"
                " language, image, translations, content_hash, first_seen_at, updated_at) VALUES"
                " ('a', 'https://e.org/a', 'news', 'A', '', :t, false, 'de', 'https://e.org/a.jpg',"
                " '{}', 'h', :t, :t),"
                " ('b', 'https://e.org/b', 'news', 'B', '', :t, false, 'de', NULL, '{}', 'h', :t, :t)"
            ),
            {"t": when},
        )
        conn.execute(
            text(
                "INSERT INTO sources (name, type, url, etag, last_modified, consecutive_failures, items_seen)"
                " VALUES ('news', 'rss', 'https://e.org/feed', '\"v1\"', 'Mon, 23 Nov 2026', 0, 2)"
            )
        )
    engine.dispose()
    engine = store.open_database(db_url)  # migrates to the newest revision
    with engine.begin() as conn:
        known = store.stored_images(conn, ["a", "b"])
        assert known == {
            "a": store.StoredImage("news", None, "https://e.org/a.jpg"),
            "b": store.StoredImage("news", None, None),
        }
        health = store.get_source_health(conn, "news")
        assert health is not None and health.validators.etag is None  # the next gather reads it in full
        assert health.validators.last_modified is None
        command.downgrade(_alembic(conn), "0006")
        rows = conn.execute(text("SELECT id, image FROM items ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [("a", "https://e.org/a.jpg"), ("b", None)]
    engine.dispose()
