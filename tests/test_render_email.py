"""Edition -> email: the shipped newsletter in German and English, staff templates, errors, placeholders."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from jinja2 import Environment

from imk_outreach.errors import TemplateError
from imk_outreach.models import Brand, Campaign, Edition, EditionSection, NewsItem, RenderedEmail, Translation
from imk_outreach.render import email as email_module
from imk_outreach.render.email import (
    PLACEHOLDERS,
    Personalizer,
    compile_mjml,
    first_sentence,
    greeting,
    personalize,
    render_email,
    wrap_text,
)
from imk_outreach.render.env import catalog_path, make_env

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
UPDATE_GOLDEN = os.environ.get("IMK_UPDATE_GOLDEN") == "1"


# -- a fixed synthetic edition -------------------------------------------------------------------------


def _item(number: int, **fields: object) -> NewsItem:
    values: dict[str, object] = {
        "id": f"item-{number}",
        "url": f"https://example.org/news/{number}",
        "source": "iot-hub",
        "title": f"Meldung {number}",
        "summary_html": f"<p>Kurzer Text {number}.</p>",
        "published_at": datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        "language": "de",
        "image": f"media/img-{number}.jpg",  # the stored copy, served under public_url
    }
    values.update(fields)
    return NewsItem(**values)  # type: ignore[arg-type]


ITEMS = (
    _item(
        1,
        title="Drehstart in Babelsberg",
        summary_html="<p>Die Dreharbeiten für die <strong>neue Serie</strong> haben begonnen.</p>",
        translations={
            "en": Translation(
                "Shooting starts in Babelsberg",
                "<p>Filming of the <strong>new series</strong> has begun.</p>",
            )
        },
    ),
    _item(
        2,
        title="KI-Sprechstunde für kleine Unternehmen",
        summary_html=(
            "<p>Jeden Dienstag beantworten Expertinnen und Experten Fragen zu KI im Mittelstand: "
            "Datenschutz, Einstieg &amp; Förderung. Anmeldung über das "
            '<a href="https://example.org/ki-sprechstunde?utm=x&amp;ref=nl">Formular</a>.</p>'
        ),
        image=None,
    ),
    _item(
        3,
        title="Berlin start-ups raise record funding",
        summary_html="<p>Young companies in the capital region raised more money than ever this autumn.</p>",
        language="en",
        source="startup-news",
        published_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    ),
    _item(
        4,
        title="XR-Festival „Immersion & Alltag“ öffnet seine Türen",
        summary_html=(
            "<p>Drei Tage lang zeigen Studios aus Berlin und Brandenburg, wie Extended Reality den Alltag "
            "verändert: von der Ausbildung in der Pflege über digitale Zwillinge in der Industrie bis "
            "zur Kunst. <em>Der Eintritt ist frei</em>, eine Anmeldung wird empfohlen, weil die Plätze in "
            "den Workshops begrenzt sind und die Nachfrage im vergangenen Jahr sehr groß war.</p>"
        ),
        translations={
            "en": Translation(
                "XR festival “Immersion & everyday life” opens its doors",
                "<p>For three days, studios from Berlin and Brandenburg show how extended reality changes "
                "everyday life: from nursing training to digital twins in industry and art. "
                "<em>Admission is free</em>; registration is recommended because workshop places are "
                "limited and demand was very high last year.</p>",
            )
        },
        published_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),  # 1 December in Berlin
    ),
    _item(
        5,
        title="Games-Förderung: neue Runde",
        summary_html="<p>Die nächste Förderrunde für Games startet im Januar.</p>",
        translations={
            "en": Translation("Games funding: new round", "<p>The next round starts in January.</p>")
        },
        published_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
    ),
)
EDITION = Edition(
    id=7,
    campaign="monthly",
    created_at=NOW,
    date=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    sections=(
        EditionSection("innovation", {"de": "Innovationsfelder", "en": "Innovation fields"}, ITEMS[:3]),
        EditionSection(
            "media", {"de": "Medien & Kreativwirtschaft", "en": "Media & creative industries"}, ITEMS[3:]
        ),
    ),
)
CAMPAIGN = Campaign(
    name="monthly",
    path="campaigns/monthly.yaml",
    subject={
        "de": "Der Blick nach vorne – {{ edition.date|month }}",
        "en": "Looking ahead – {{ edition.date|month }}",
    },
    intro={
        "de": "Willkommen zur Ausgabe vom {{ edition.date|date }}. Diesmal geht es um KI, XR und Film aus "
        "Berlin-Brandenburg.\n\nWir wünschen viel Freude beim Lesen!",
        "en": "Welcome to the edition of {{ edition.date|date }}. This time: AI, XR and film from "
        "Berlin-Brandenburg.\n\nEnjoy reading!",
    },
)
BRAND = Brand(
    name={
        "de": "Cluster IKT, Medien und Kreativwirtschaft",
        "en": "Cluster ICT, Media and Creative Industries",
    },
    imprint={
        "de": "Beispiel-Agentur GmbH\nMusterstraße 1, 10115 Berlin\nVertreten durch: Erika Mustermann",
        "en": "Example Agency GmbH\nMusterstrasse 1, 10115 Berlin, Germany\nRepresented by: Erika Mustermann",
    },
    public_url="https://news.example.org",
    sender_name="Cluster IMK",
    sender_email="newsletter@example.org",
    social_links=(
        ("LinkedIn", "https://www.linkedin.example/company/cluster"),
        ("Mastodon", "https://m.example/@c"),
    ),
)
VALUES = {
    "greeting": "Hallo Anna,",
    "unsubscribe_url": "https://news.example.org/u/abc?list=newsletter&sig=1",
    "preferences_url": "https://news.example.org/p/abc",
    "email": "anna@example.org",
}


@pytest.fixture(scope="module")
def env() -> Environment:
    return make_env([])


@pytest.fixture(scope="module")
def rendered(env: Environment) -> dict[str, RenderedEmail]:
    return {lang: render_email(env, CAMPAIGN, EDITION, lang, BRAND, NOW) for lang in ("de", "en")}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(document: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(document)
    return [attrs for tag, attrs in parser.tags if tag == name]


def _texts(value: object) -> tuple[str, ...]:
    """A catalog message's id or string as a tuple (plural messages have several)."""
    return tuple(str(v) for v in value) if isinstance(value, tuple | list) else (str(value or ""),)


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# -- the shipped newsletter ----------------------------------------------------------------------------


def test_subject_and_preheader(rendered: dict[str, RenderedEmail]) -> None:
    assert rendered["de"].subject == "Der Blick nach vorne – Dezember 2026"
    assert rendered["en"].subject == "Looking ahead – December 2026"
    assert rendered["de"].preheader == "Willkommen zur Ausgabe vom 1. Dezember 2026."
    assert rendered["en"].preheader == "Welcome to the edition of December 1, 2026."


@pytest.mark.parametrize("language", ["de", "en"])
def test_html_structure(rendered: dict[str, RenderedEmail], language: str) -> None:
    message = rendered[language]
    html = message.html
    assert re.search(rf'<html\b[^>]*\blang="{language}"', html)
    assert f"<title>{message.subject}</title>" in html
    assert message.preheader in html  # mj-preview: the hidden preheader at the top of the body
    assert html.index(message.preheader) < html.index(BRAND.name[language])
    for token in PLACEHOLDERS.values():
        assert token in html
    assert "googleapis" not in html  # web-safe fonts only: no third-party request
    images = _tags(html, "img")
    assert len(images) == 4  # five items, one without an image, no other images
    assert all(img.get("alt") for img in images)
    assert all(str(img.get("src")).startswith(f"{BRAND.public_url}/media/img-") for img in images)
    links = {a.get("href") for a in _tags(html, "a")}
    assert {item.url for item in ITEMS} <= links
    assert {PLACEHOLDERS["unsubscribe_url"], PLACEHOLDERS["preferences_url"]} <= links
    assert {url for _label, url in BRAND.social_links} <= links


def test_image_alt_is_the_title_shown(rendered: dict[str, RenderedEmail]) -> None:
    alts = [img["alt"] for img in _tags(rendered["en"].html, "img")]
    assert alts == [
        "Shooting starts in Babelsberg",
        "Berlin start-ups raise record funding",
        "XR festival “Immersion & everyday life” opens its doors",
        "Games funding: new round",
    ]


def test_german_strings(rendered: dict[str, RenderedEmail]) -> None:
    de = rendered["de"]
    for part in (de.html, de.text):
        assert "Weiterlesen" in part
        assert "1. Dezember 2026" in part
        assert "Innovationsfelder" in part
        assert "Nur auf Englisch" in part
        assert "Abmelden" in part
        assert "Impressum" in part
        assert "Beispiel-Agentur GmbH" in part
        assert "5 Meldungen in dieser Ausgabe" in part
    assert "Read more" not in de.html + de.text


def test_english_strings(rendered: dict[str, RenderedEmail]) -> None:
    en = rendered["en"]
    for part in (en.html, en.text):
        assert "Read more" in part
        assert "December 1, 2026" in part
        assert "November 28, 2026" in part
        assert "Innovation fields" in part
        assert "Only in German" in part
        assert "Unsubscribe" in part
        assert "Example Agency GmbH" in part
    assert "Weiterlesen" not in en.html + en.text


def test_no_msgid_left_untranslated_in_german_output(rendered: dict[str, RenderedEmail]) -> None:
    with catalog_path("de").open("rb") as handle:
        catalog = read_po(handle, locale="de")
    checked = 0
    for message in catalog:
        ids = _texts(message.id)
        strings = _texts(message.string)
        for msgid in ids:
            if not msgid or msgid in strings:
                continue
            fixed = re.split(r"%\(\w+\)s", msgid)  # the fixed text around placeholders
            for piece in (p.strip() for p in fixed if len(p.strip()) > 3):
                assert piece not in rendered["de"].html, piece
                assert piece not in rendered["de"].text, piece
                checked += 1
    assert checked >= 8


def test_item_in_the_render_language_or_translated(rendered: dict[str, RenderedEmail]) -> None:
    assert "Drehstart in Babelsberg" in rendered["de"].html
    assert "Shooting starts in Babelsberg" in rendered["en"].html
    assert "Drehstart in Babelsberg" not in rendered["en"].html
    assert "Filming of the <strong>new series</strong> has begun." in rendered["en"].html


def test_fallback_is_marked_and_listed(rendered: dict[str, RenderedEmail]) -> None:
    assert rendered["de"].fallbacks == ("item-3",)
    assert rendered["en"].fallbacks == ("item-2",)
    de_html = rendered["de"].html
    card = de_html[de_html.index('lang="en"', de_html.index("<body")) :]
    assert card.index("Berlin start-ups raise record funding") < card.index("Nur auf Englisch")
    en_html = rendered["en"].html
    assert 'lang="de"' in en_html[en_html.index("<body") :]
    assert "KI-Sprechstunde für kleine Unternehmen" in en_html
    assert "Nur auf" not in en_html


def test_teaser_is_safe_html_and_shortened(rendered: dict[str, RenderedEmail]) -> None:
    html = rendered["de"].html
    assert "Die Dreharbeiten für die <strong>neue Serie</strong> haben begonnen." in html
    assert '<a href="https://example.org/ki-sprechstunde?utm=x&amp;ref=nl">Formular</a>' in html
    assert "weil die Plätze in den Workshops begrenzt sind" not in html  # shortened ...
    assert "…" in html  # ... with an ellipsis


def test_intro_is_text_rendered_with_the_edition(env: Environment) -> None:
    campaign = replace(CAMPAIGN, intro={"de": "Ausgabe {{ edition.id }}: <b>fett</b> & mehr\nZeile zwei"})
    message = render_email(env, campaign, EDITION, "de", BRAND, NOW)
    assert "Ausgabe 7: &lt;b&gt;fett&lt;/b&gt; &amp; mehr<br />Zeile zwei" in message.html
    assert "Ausgabe 7: <b>fett</b> & mehr\nZeile zwei" in message.text
    assert message.preheader == "Ausgabe 7: <b>fett</b> & mehr Zeile zwei"


def test_subject_is_plain_text_on_one_line(env: Environment) -> None:
    campaign = replace(
        CAMPAIGN, subject={"de": "R&D <News>\n– {{ edition.date|month }}"}, preheader={"de": "Kurz & gut"}
    )
    message = render_email(env, campaign, EDITION, "de", BRAND, NOW)
    assert message.subject == "R&D <News> – Dezember 2026"
    assert "<title>R&amp;D &lt;News&gt; – Dezember 2026</title>" in message.html
    assert message.preheader == "Kurz & gut"


def test_missing_subject_is_an_error(env: Environment) -> None:
    with pytest.raises(
        TemplateError, match=r"^campaigns/monthly\.yaml \(subject\.fr\): the subject is empty"
    ):
        render_email(env, CAMPAIGN, EDITION, "fr", BRAND, NOW)


def test_error_in_the_subject_names_campaign_and_key(env: Environment) -> None:
    campaign = replace(CAMPAIGN, subject={"de": "{{ edition.nope }}"})
    with pytest.raises(TemplateError, match=r"^campaigns/monthly\.yaml \(subject\.de\):1: .*nope"):
        render_email(env, campaign, EDITION, "de", BRAND, NOW)


# -- text part -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "en"])
def test_text_part_matches_golden(rendered: dict[str, RenderedEmail], language: str) -> None:
    golden = GOLDEN / f"newsletter-{language}.txt"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered[language].text, encoding="utf-8")
    assert rendered[language].text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("language", ["de", "en"])
def test_text_part_content_and_wrapping(rendered: dict[str, RenderedEmail], language: str) -> None:
    text = rendered[language].text
    for token in PLACEHOLDERS.values():
        assert token in text
    for item in ITEMS:
        assert item.url in text.split()
    for line in text.splitlines():
        assert len(line) <= 76 or "://" in line, line
    assert "<" not in text  # no markup


def test_wrap_text_keeps_urls_and_indent() -> None:
    url = "https://example.org/" + "a" * 90
    text = wrap_text("  " + "wort " * 30 + "\n  Read more: " + url + "\n\n\n\nend   \n")
    lines = text.splitlines()
    assert all(line.startswith("  ") for line in lines[:3])
    assert "  " + url in lines  # on its own line, indented, never broken
    assert text.endswith("end\n")
    assert "\n\n\n" not in text
    assert wrap_text("* " + "x " * 60).splitlines()[1].startswith("  x")


def test_first_sentence_ignores_ordinals_and_abbreviations() -> None:
    assert first_sentence("Am 1. Dezember geht es los. Mehr folgt.") == "Am 1. Dezember geht es los."
    assert first_sentence("Wir zeigen z. B. Dr. Muster. Danach mehr.") == "Wir zeigen z. B. Dr. Muster."
    assert first_sentence("Seit 2026. Danach mehr.") == "Seit 2026."
    assert first_sentence("Kein Satzende") == "Kein Satzende"


# -- staff templates and errors ------------------------------------------------------------------------

MINIMAL = (
    '<mjml lang="{{ language }}"><mj-body><mj-section><mj-column><mj-text>STAFF {{ subject }} '
    "{{ ph.greeting }}</mj-text></mj-column></mj-section></mj-body></mjml>"
)


def test_staff_template_overrides_the_shipped_newsletter(tmp_path: Path) -> None:
    _write(tmp_path, "newsletter/default.mjml.j2", MINIMAL)
    message = render_email(make_env([tmp_path]), CAMPAIGN, EDITION, "de", BRAND, NOW)
    assert "STAFF Der Blick nach vorne" in message.html
    assert "Weiterlesen" in message.text  # no staff text template: the shipped one


def test_staff_partial_overrides_only_that_part(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "newsletter/_footer.mjml.j2",
        "<mj-section><mj-column><mj-text>OUR FOOTER</mj-text></mj-column></mj-section>",
    )
    html = render_email(make_env([tmp_path]), CAMPAIGN, EDITION, "en", BRAND, NOW).html
    assert "OUR FOOTER" in html
    assert "Read more" in html
    assert "Example Agency GmbH" not in html


def test_text_template_beside_the_campaign_template(tmp_path: Path) -> None:
    _write(tmp_path, "newsletter/monthly.mjml.j2", MINIMAL)
    _write(tmp_path, "newsletter/monthly.txt.j2", "{{ ph.greeting }} {{ _('Read more') }} {{ item_count }}")
    campaign = replace(CAMPAIGN, template="newsletter/monthly.mjml.j2")
    message = render_email(make_env([tmp_path]), campaign, EDITION, "de", BRAND, NOW)
    assert message.text == f"{PLACEHOLDERS['greeting']} Weiterlesen 5\n"


def test_mjml_without_lang_gets_the_render_language(tmp_path: Path) -> None:
    _write(tmp_path, "plain.mjml.j2", MINIMAL.replace(' lang="{{ language }}"', ""))
    message = render_email(
        make_env([tmp_path]), replace(CAMPAIGN, template="plain.mjml.j2"), EDITION, "en", BRAND, NOW
    )
    assert re.search(r'<html\b[^>]*\blang="en"', message.html)
    assert 'lang="und"' not in message.html


def test_broken_template_syntax_error(tmp_path: Path) -> None:
    _write(tmp_path, "broken.mjml.j2", "<mjml>\n  <mj-body>\n    {% for x in %}\n  </mj-body>\n</mjml>\n")
    campaign = replace(CAMPAIGN, template="broken.mjml.j2")
    with pytest.raises(TemplateError) as info:
        render_email(make_env([tmp_path]), campaign, EDITION, "de", BRAND, NOW)
    assert str(info.value).startswith("broken.mjml.j2:3: ")
    assert (info.value.template, info.value.line) == ("broken.mjml.j2", 3)


def test_broken_template_undefined_variable(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "broken.mjml.j2",
        "<mjml>\n  <mj-body>\n    {{ subject }}\n\n    {{ foo }}\n  </mj-body>\n</mjml>\n",
    )
    campaign = replace(CAMPAIGN, template="broken.mjml.j2")
    with pytest.raises(TemplateError) as info:
        render_email(make_env([tmp_path]), campaign, EDITION, "de", BRAND, NOW)
    assert str(info.value).startswith("broken.mjml.j2:5: 'foo' is undefined (variables: brand, ")


def test_template_producing_invalid_mjml(tmp_path: Path) -> None:
    _write(tmp_path, "newsletter/bad.mjml.j2", "<mjml>\n<mj-body>\n<mj-section>{{ subject }}\n")
    campaign = replace(CAMPAIGN, template="newsletter/bad.mjml.j2")
    with pytest.raises(TemplateError, match=r"^newsletter/bad\.mjml\.j2: invalid MJML: ") as info:
        render_email(make_env([tmp_path]), campaign, EDITION, "de", BRAND, NOW)
    assert info.value.template == "newsletter/bad.mjml.j2"


def test_unknown_template(env: Environment) -> None:
    with pytest.raises(TemplateError, match=r"^newsletter/nope\.mjml\.j2: template not found"):
        render_email(env, replace(CAMPAIGN, template="newsletter/nope.mjml.j2"), EDITION, "de", BRAND, NOW)


# -- compile_mjml --------------------------------------------------------------------------------------

SIMPLE_MJML = (
    "<mjml>\r\n<mj-head>\r\n<mj-title>Ä</mj-title>\r\n</mj-head>\r\n"
    "<mj-body><mj-text>ö</mj-text></mj-body></mjml>"
)


def test_compile_mjml_accepts_str_bytes_bom_and_crlf() -> None:
    for source in (
        SIMPLE_MJML,
        SIMPLE_MJML.encode(),
        b"\xef\xbb\xbf" + SIMPLE_MJML.encode(),
        "\ufeff" + SIMPLE_MJML,
    ):
        html = compile_mjml(source, "simple.mjml")
        assert "<title>Ä</title>" in html
        assert "ö" in html


def test_compile_mjml_error_names_template_and_line() -> None:
    source = '<mjml>\n<mj-head>\n<mj-include path="other.mjml" />\n</mj-head>\n<mj-body></mj-body>\n</mjml>'
    with pytest.raises(TemplateError, match=r"^x\.mjml:3: invalid MJML: ") as info:
        compile_mjml(source, "x.mjml")
    assert info.value.line == 3
    with pytest.raises(TemplateError, match=r"^y\.mjml: invalid MJML: unexpected end of stream"):
        compile_mjml(b"<mjml><mj-body><mj-section>", "y.mjml")
    with pytest.raises(TemplateError, match=r"^z\.mjml:2: not UTF-8"):
        compile_mjml(b"<mjml>\n\xff</mjml>", "z.mjml")


def test_compile_mjml_rejects_an_empty_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(email_module, "mjml2html", lambda source: " ")
    with pytest.raises(TemplateError, match=r"^e\.mjml: invalid MJML: the result is empty"):
        compile_mjml("<mjml></mjml>", "e.mjml")


# -- per recipient -------------------------------------------------------------------------------------


def test_placeholders_are_plain_tokens() -> None:
    assert set(PLACEHOLDERS) == {"greeting", "unsubscribe_url", "preferences_url", "email"}
    for token in PLACEHOLDERS.values():
        assert re.fullmatch(r"[A-Z][A-Z_]+[A-Z]", token)
        assert not any(token != other and other.startswith(token) for other in PLACEHOLDERS.values())


def test_personalize_fills_and_escapes(rendered: dict[str, RenderedEmail]) -> None:
    values = dict(VALUES, greeting="Hallo <script>alert(1)</script> & Co,")
    html, text = personalize(rendered["de"], values)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co," in html
    assert "<script>" not in html
    assert "Hallo <script>alert(1)</script> & Co," in text.splitlines()
    assert 'href="https://news.example.org/u/abc?list=newsletter&amp;sig=1"' in html
    assert "Abmelden: https://news.example.org/u/abc?list=newsletter&sig=1" in text
    assert "anna@example.org" in html
    assert "anna@example.org" in text
    for token in PLACEHOLDERS.values():
        assert token not in html
        assert token not in text


def test_personalize_never_recompiles(
    rendered: dict[str, RenderedEmail], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(source: str) -> str:
        raise AssertionError("compiled per recipient")

    monkeypatch.setattr(email_module, "mjml2html", fail)
    filler = Personalizer(rendered["en"])
    for number in range(200):
        html, _text = filler.fill(dict(VALUES, email=f"r{number}@example.org"))
        assert f"r{number}@example.org" in html
    assert personalize(rendered["en"], VALUES) == Personalizer(rendered["en"]).fill(VALUES)


def test_personalize_checks_the_keys(rendered: dict[str, RenderedEmail]) -> None:
    with pytest.raises(ValueError, match="missing values for \\['email'\\]"):
        personalize(rendered["de"], {k: v for k, v in VALUES.items() if k != "email"})
    with pytest.raises(ValueError, match="unknown keys \\['name'\\]"):
        personalize(rendered["de"], dict(VALUES, name="x"))


def test_greeting() -> None:
    assert greeting("de", "Anna") == "Hallo Anna,"
    assert greeting("de", "  ") == "Hallo,"
    assert greeting("en", None) == "Hello,"
    assert greeting("en", "%(name)s <b>") == "Hello %(name)s <b>,"
