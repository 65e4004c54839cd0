"""The default newsletter and the preview page in a real headless Chromium (Debian's /usr/bin/chromium),
at phone (375 px) and desktop-mail (600 px) widths. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imk_outreach.services import ingest
from imk_outreach.services.preview import PreviewResult, preview
from tests.conftest import IN_CI, REPO, ConfigFactory
from tests.support.httpserver import FixtureServer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("IMK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Fixed strings of the shipped template, as msgids (English) and their German translations.
ENGLISH_ONLY = ["Read more", "Unsubscribe", "Preferences"]
GERMAN_ONLY = ["Weiterlesen", "Abmelden"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"browser tests are required in CI: {CHROMIUM} not found (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} not found (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def previewed(make_settings: ConfigFactory, tmp_path: Path) -> PreviewResult:
    samples = FixtureServer(REPO / "samples").start()
    try:
        sources = [
            {"name": "dehub-iot", "type": "rss", "url": samples.url("feeds/dehub-iot.xml"), "tags": ["iot"]},
            {
                "name": "film-highlights",
                "type": "jsonfeed",
                "url": samples.url("feeds/film-highlights.json"),
                "language": "en",
                "tags": ["film"],
            },
            {"name": "cluster-news", "type": "manual", "url": str(REPO / "samples" / "manual")},
        ]
        campaigns = tmp_path / "campaigns"
        campaigns.mkdir()
        (campaigns / "monthly.yaml").write_text(MONTHLY, encoding="utf-8")
        settings = make_settings(sources, tagging={"ki": ["KI"], "iot": ["IoT"], "film": ["Film"]})
        ingest.gather(settings)
    finally:
        samples.stop()
    return preview(settings, "monthly", tmp_path / "preview")


MONTHLY = """\
name: monthly
kind: newsletter
list: newsletter
languages: [de, en]
approval: required
min_items: 1
subject:
  de: "Der Blick nach vorne – {{ edition.date|month }}"
  en: "Looking ahead – {{ edition.date|month }}"
intro: {de: "Neues aus dem Cluster.", en: "News from the cluster."}
sections:
  - id: innovation
    heading: {de: Innovationsfelder, en: Innovation fields}
    select: {tags: [iot, ki], max: 4}
  - {id: media, heading: {de: Medien, en: Media}, select: {tags: [film], max: 3}}
"""


def _open(browser: object, path: Path, width: int) -> object:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
    )
    page.goto(path.as_uri())
    return page


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("language", ["de", "en"])
def test_newsletter_in_chromium(browser: object, previewed: PreviewResult, width: int, language: str) -> None:
    html_path, _ = previewed.files[language]
    page = _open(browser, html_path, width)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"newsletter-{language}-{width}.png"), full_page=True)  # type: ignore[attr-defined]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
    assert overflow <= 0, f"horizontal overflow of {overflow}px at {width}px"
    no_alt = "[...document.images].filter(i => !i.hasAttribute('alt') || (!i.alt.trim() && i.width > 1))"
    missing_alt = page.evaluate(no_alt + ".map(i => i.src)")  # type: ignore[attr-defined]
    assert missing_alt == []
    assert page.evaluate("document.documentElement.lang") == language  # type: ignore[attr-defined]
    text = page.inner_text("body")  # type: ignore[attr-defined]
    for item in previewed.result.edition.items[:3]:  # type: ignore[union-attr]
        shown = item.translations[language].title if language in item.translations else item.title
        assert shown in text
    wrong, right = (ENGLISH_ONLY, GERMAN_ONLY) if language == "de" else (GERMAN_ONLY, ENGLISH_ONLY)
    assert any(word in text for word in right)
    leaked = [word for word in wrong if word in text]
    assert leaked == [], f"untranslated strings in the {language} newsletter: {leaked}"
    page.close()  # type: ignore[attr-defined]


def test_preview_index_shows_both_languages(browser: object, previewed: PreviewResult) -> None:
    page = _open(browser, previewed.index, 1400)
    page.screenshot(path=str(ARTIFACTS / "preview-index.png"), full_page=True)  # type: ignore[attr-defined]
    subjects = page.eval_on_selector_all("[data-subject]", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert subjects == [previewed.rendered["de"].subject, previewed.rendered["en"].subject]
    assert subjects[0].startswith("Der Blick nach vorne") and subjects[1].startswith("Looking ahead")
    frames = page.eval_on_selector_all("iframe", "els => els.length")  # type: ignore[attr-defined]
    assert frames == 2
    fallback_count = page.eval_on_selector_all(".fallbacks li", "els => els.length")  # type: ignore[attr-defined]
    assert fallback_count == sum(len(m.fallbacks) for m in previewed.rendered.values()) > 0
    page.close()  # type: ignore[attr-defined]
