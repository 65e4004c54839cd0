"""``GET /media/{name}`` through the app in process: the stored copies with their type, ETag and a year
of caching; every other name is 404, whatever path tricks it tries."""

from __future__ import annotations

from pathlib import Path

import pytest

from imk_outreach.config import Settings
from imk_outreach.render.email import image_url
from imk_outreach.services import catalog, ingest, media
from imk_outreach.web.app import create_app
from tests.conftest import ConfigFactory
from tests.support.httpserver import FixtureServer
from tests.support.subscribers import WebClient
from tests.test_images import jpeg, transparent_png

CACHED = "public, max-age=31536000, immutable"


@pytest.fixture
def settings(make_settings: ConfigFactory) -> Settings:
    return make_settings([{"name": "a", "type": "rss", "url": "a.xml"}], public_url="https://news.example")


@pytest.fixture
def client(settings: Settings) -> WebClient:
    return WebClient(create_app(settings))


def test_a_stored_copy_is_served_with_its_type_and_cached_for_a_year(
    settings: Settings, client: WebClient
) -> None:
    folder = media.media_folder(settings)
    for data, content_type in ((jpeg(900, 600), "image/jpeg"), (transparent_png(), "image/png")):
        name = media.store_copy(folder, data)
        response = client.get(f"/media/{name}")
        assert response.status_code == 200
        assert response.content == (folder / name).read_bytes()
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Cache-Control"] == CACHED
        assert response.headers["ETag"] == f'"{name.split(".")[0]}"'
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        again = client.get(f"/media/{name}", headers={"If-None-Match": response.headers["ETag"]})
        assert (again.status_code, again.content, again.headers["ETag"]) == (
            304,
            b"",
            response.headers["ETag"],
        )
        other = client.get(f"/media/{name}", headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200
        head = client.request("HEAD", f"/media/{name}")
        assert (head.status_code, head.content, head.headers["Cache-Control"]) == (200, b"", CACHED)


def test_only_names_of_stored_copies_are_served(
    settings: Settings, client: WebClient, tmp_path: Path
) -> None:
    folder = media.media_folder(settings)
    name = media.store_copy(folder, jpeg(900, 600))
    stem = name.split(".")[0]
    (tmp_path / "secret.jpg").write_bytes(b"private")
    (folder / "notes.jpg").write_bytes(b"not a copy")
    attempts = [
        "/media/../config.yaml",
        "/media/..%2Fconfig.yaml",
        "/media/%2e%2e%2fconfig.yaml",
        "/media/..%5Csecret.jpg",
        "/media/%2e%2e/%2e%2e/secret.jpg",
        "/media/notes.jpg",
        f"/media/{stem.upper()}.jpg",
        f"/media/{stem}.JPG",
        f"/media/{stem}.gif",
        f"/media/{stem[:-1]}.jpg",
        f"/media/{stem}.jpg.png",
        f"/media/{stem}.jpg%00",
        f"/media/{'0' * 64}.jpg",  # the right shape, but no such copy
        "/media/",
    ]
    for path in attempts:
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"private" not in response.content and b"not a copy" not in response.content, path
    assert client.get(f"/media/{name}").status_code == 200  # the same client serves the real one


def test_an_edition_links_the_copy_gather_stored_and_the_app_serves_it(
    make_settings: ConfigFactory, http_server: FixtureServer
) -> None:
    http_server.routes["/photo.jpg"] = (200, {"Content-Type": "image/jpeg"}, jpeg(1600, 900))
    http_server.routes["/feed.xml"] = (
        200,
        {"Content-Type": "application/rss+xml"},
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Bild</title>'
        b'<link>https://news.example/bild</link><enclosure url="/photo.jpg" type="image/jpeg"/></item>'
        b"</channel></rss>",
    )
    public_url = "https://outreach.example"
    settings = make_settings(
        [{"name": "news", "type": "rss", "url": http_server.url("feed.xml")}], public_url=public_url
    )
    assert ingest.gather(settings).exit_code == 0
    [item] = catalog.find_items(settings)
    link = image_url(item.image, public_url)
    assert link is not None and link.startswith(f"{public_url}/media/") and http_server.base not in link
    response = WebClient(create_app(settings)).get(link.removeprefix(public_url))
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert response.content == (media.media_folder(settings) / link.rsplit("/", 1)[1]).read_bytes()
