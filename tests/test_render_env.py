"""The one Jinja environment: loader order, strictness, catalogs, per-language rendering, filters, errors."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po
from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from imk_outreach.errors import TemplateError
from imk_outreach.render.env import (
    available_languages,
    catalog_path,
    make_env,
    plaintext,
    render_string,
    render_template,
    shipped_templates_dir,
    teaser,
    translations,
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
RENDER_PY = (REPO / "src" / "imk_outreach" / "render" / "email.py",)
JINJA_METHOD = [("**.j2", "jinja2.ext:babel_extract")]


@pytest.fixture(scope="module")
def env() -> Environment:
    return make_env([])


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- catalogs ------------------------------------------------------------------------------------------


def extracted_msgids(template_dir: Path, python_files: Iterable[Path] = ()) -> set[str]:
    """Every msgid (singular) used by the templates under ``template_dir`` and the given Python files."""
    found: set[str] = set()
    for _name, _line, message, _comments, _context in extract_from_dir(str(template_dir), JINJA_METHOD):
        found.add(_singular(message))
    for path in python_files:
        for _line, message, _comments, _context in extract_from_file("python", str(path)):
            found.add(_singular(message))
    return found


def _singular(message: object) -> str:
    return _texts(message)[0]


def _texts(value: object) -> tuple[str, ...]:
    """A catalog message's id or string as a tuple (plural messages have several)."""
    return tuple(str(v) for v in value) if isinstance(value, tuple | list) else (str(value or ""),)


def load_catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as handle:
        return read_po(handle, locale=language)


def missing_in_catalog(msgids: set[str], catalog: Catalog) -> set[str]:
    """msgids the catalog lacks or leaves untranslated (empty or fuzzy)."""
    missing = set()
    for msgid in msgids:
        message = catalog.get(msgid)
        strings = message.string if message is not None else ""
        if message is None or message.fuzzy or not all(strings if isinstance(strings, tuple) else [strings]):
            missing.add(msgid)
    return missing


def test_catalogs_exist_for_german_and_english() -> None:
    assert available_languages() == ("de", "en")


@pytest.mark.parametrize("language", ["de", "en"])
def test_every_template_string_is_in_the_catalog(language: str) -> None:
    used = extracted_msgids(TEMPLATES, RENDER_PY)
    assert "Read more" in used
    assert not missing_in_catalog(used, load_catalog(language)), "run the extraction and translate"


@pytest.mark.parametrize("language", ["de", "en"])
def test_catalog_has_no_stale_entries(language: str) -> None:
    in_catalog = {_singular(m.id) for m in load_catalog(language) if m.id}
    assert in_catalog == extracted_msgids(TEMPLATES, RENDER_PY)


def test_the_check_fails_for_a_string_missing_in_the_german_catalog(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "newsletter/extra.mjml.j2",
        "{% trans %}A brand-new sentence{% endtrans %} {{ _('Read more') }}",
    )
    assert missing_in_catalog(extracted_msgids(tmp_path), load_catalog("de")) == {"A brand-new sentence"}


def test_english_catalog_maps_to_itself() -> None:
    for message in load_catalog("en"):
        if message.id:
            assert message.string == message.id


def test_german_translations_keep_the_placeholders() -> None:
    for message in load_catalog("de"):
        ids = _texts(message.id)
        strings = _texts(message.string)
        wanted = {name for msgid in ids for name in re.findall(r"%\((\w+)\)s", msgid)}
        for text in strings:
            assert set(re.findall(r"%\((\w+)\)s", text)) <= wanted, text


def test_catalog_is_compiled_in_memory() -> None:
    german = translations("de")
    assert german.gettext("Read more") == "Weiterlesen"
    assert german.ngettext("One news item in this edition", "%(count)s news items in this edition", 3) == (
        "%(count)s Meldungen in dieser Ausgabe"
    )
    assert translations("en").gettext("Read more") == "Read more"


def test_unknown_language_has_no_catalog() -> None:
    with pytest.raises(TemplateError, match="no message catalog for language 'fr'"):
        translations("fr")


# -- the environment -----------------------------------------------------------------------------------


def test_environment_is_strict_and_escapes_html_and_mjml(env: Environment) -> None:
    assert issubclass(env.undefined, StrictUndefined)
    assert "jinja2.ext.InternationalizationExtension" in env.extensions
    assert callable(env.autoescape)
    for name in ("newsletter/default.mjml.j2", "a.mjml", "a.html", "a.html.j2"):
        assert env.autoescape(name), name
    for name in ("newsletter/default.txt.j2", "social/item.j2"):
        assert not env.autoescape(name), name


def test_one_environment_renders_each_language_with_its_catalog(env: Environment) -> None:
    source = "{% trans %}Read more{% endtrans %} / {{ _('Unsubscribe') }} / {{ 1234.5|number }}"
    assert render_string(env, source, "s", "de", {}) == "Weiterlesen / Abmelden / 1.234,5"
    assert render_string(env, source, "s", "en", {}) == "Read more / Unsubscribe / 1,234.5"


def test_languages_render_in_parallel_without_mixing(env: Environment) -> None:
    source = "{% trans %}Read more{% endtrans %} {{ day|date }}"
    day = date(2026, 12, 1)
    expected = {"de": "Weiterlesen 1. Dezember 2026", "en": "Read more December 1, 2026"}
    jobs = ["de", "en"] * 100
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda lang: render_string(env, source, "s", lang, {"day": day}), jobs))
    assert results == [expected[lang] for lang in jobs]


def test_trans_with_variables_escapes_them_in_html(env: Environment) -> None:
    source = "{% trans name=who %}Hello {{ name }},{% endtrans %}"
    html = render_string(env, source, "s", "de", {"who": "<b>Anna</b>"}, autoescape=True)
    assert html == "Hallo &lt;b&gt;Anna&lt;/b&gt;,"
    assert render_string(env, source, "s", "de", {"who": "<b>Anna</b>"}) == "Hallo <b>Anna</b>,"


def test_plural_forms(env: Environment) -> None:
    source = (
        "{% trans count=n %}One news item in this edition{% pluralize %}"
        "{{ count }} news items in this edition{% endtrans %}"
    )
    assert render_string(env, source, "s", "de", {"n": 1}) == "Eine Meldung in dieser Ausgabe"
    assert render_string(env, source, "s", "de", {"n": 4}) == "4 Meldungen in dieser Ausgabe"
    assert render_string(env, source, "s", "en", {"n": 4}) == "4 news items in this edition"


def test_a_macro_imported_without_context_fails_instead_of_rendering_english(tmp_path: Path) -> None:
    _write(tmp_path, "macros.j2", "{% macro more() %}{{ _('Read more') }}{% endmacro %}")
    _write(tmp_path, "bad.txt.j2", '{% import "macros.j2" as m %}\n{{ m.more() }}')
    _write(tmp_path, "good.txt.j2", '{% import "macros.j2" as m with context %}\n{{ m.more() }}')
    staff_env = make_env([tmp_path])
    assert render_template(staff_env, "good.txt.j2", "de", {}) == "Weiterlesen"
    with pytest.raises(TemplateError, match="no language in this render context"):
        render_template(staff_env, "bad.txt.j2", "de", {})


# -- filters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "long_date", "month"),
    [("de", "1. Dezember 2026", "Dezember 2026"), ("en", "December 1, 2026", "December 2026")],
)
def test_date_and_month_follow_the_language(
    env: Environment, language: str, long_date: str, month: str
) -> None:
    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert (
        render_string(env, "{{ d|date }}|{{ d|month }}", "s", language, {"d": when}) == f"{long_date}|{month}"
    )


def test_dates_are_shown_in_the_environment_timezone(env: Environment) -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 on 1 December in Berlin
    assert render_string(env, "{{ d|date }}", "s", "de", {"d": late}) == "1. Dezember 2026"
    utc_env = make_env([], timezone="UTC")
    assert render_string(utc_env, "{{ d|date }}", "s", "de", {"d": late}) == "30. November 2026"


def test_date_accepts_a_babel_format(env: Environment) -> None:
    day = date(2026, 12, 1)
    assert render_string(env, "{{ d|date('medium') }}", "s", "de", {"d": day}) == "01.12.2026"
    assert render_string(env, "{{ d|date('d. MMM') }}", "s", "en", {"d": day}) == "1. Dec"


def test_date_filter_rejects_a_string(env: Environment) -> None:
    with pytest.raises(TemplateError, match=r"^s:1: TypeError: expected a date or datetime, got str"):
        render_string(env, "{{ d|date }}", "s", "de", {"d": "2026-12-01"})


def test_teaser_shortens_at_a_word_boundary_and_balances_tags() -> None:
    source = (
        "<p>Ein <strong>sehr wichtiger</strong> Text über "
        "<a href='https://x.org/?a=1&amp;b=2'>KI und XR</a></p>"
    )
    short = teaser(source, 31)
    assert isinstance(short, Markup)
    assert (
        short == 'Ein <strong>sehr wichtiger</strong> Text über <a href="https://x.org/?a=1&amp;b=2">KI…</a>'
    )
    assert teaser(source) == (
        'Ein <strong>sehr wichtiger</strong> Text über <a href="https://x.org/?a=1&amp;b=2">KI und XR</a>'
    )


def test_teaser_drops_blocks_images_scripts_and_unsafe_links() -> None:
    source = (
        "<h2>Titel</h2><ul><li>eins</li><li>zwei</li></ul><img src='x.jpg' alt='Bild'>"
        "<script>alert(1)</script><a href='javascript:alert(1)' onclick='x()'>Link</a> 3 &lt; 4"
    )
    assert teaser(source) == "Titel eins zwei <a>Link</a> 3 &lt; 4"


def test_teaser_of_a_single_long_word_cuts_it() -> None:
    assert teaser("Donaudampfschifffahrtsgesellschaftskapitän", 10) == "Donaudampf…"


def test_plaintext_decodes_entities_and_shortens() -> None:
    assert (
        plaintext("<p>R&amp;D&nbsp;news</p><p>second <b>part</b></p>") == "R&D news second part"
    )  # nbsp collapses too
    assert plaintext("one two three four", 12) == "one two…"


# -- loader and errors ---------------------------------------------------------------------------------


def test_shipped_templates_are_the_repository_folder() -> None:
    assert shipped_templates_dir() == TEMPLATES
    assert (shipped_templates_dir() / "newsletter" / "default.mjml.j2").is_file()


def test_pyproject_ships_templates_as_package_data() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setuptools["package-dir"]["imk_outreach._templates"] == "templates"
    assert "**/*.j2" in setuptools["package-data"]["imk_outreach._templates"]
    assert "render/locale/*/LC_MESSAGES/*.po" in setuptools["package-data"]["imk_outreach"]


def test_staff_template_overrides_the_shipped_one_and_others_fall_back(tmp_path: Path) -> None:
    _write(tmp_path, "newsletter/default.txt.j2", "staff {{ _('Read more') }}")
    staff_env = make_env([tmp_path])
    assert render_template(staff_env, "newsletter/default.txt.j2", "de", {}) == "staff Weiterlesen"
    assert staff_env.loader is not None
    _source, filename, _uptodate = staff_env.loader.get_source(staff_env, "newsletter/default.mjml.j2")
    assert filename is not None
    assert Path(filename).is_relative_to(TEMPLATES)


def test_first_staff_folder_wins(tmp_path: Path) -> None:
    _write(tmp_path / "a", "x.txt.j2", "a")
    _write(tmp_path / "b", "x.txt.j2", "b")
    assert render_template(make_env([tmp_path / "a", tmp_path / "b"]), "x.txt.j2", "en", {}) == "a"


def test_missing_template_is_named(env: Environment) -> None:
    with pytest.raises(TemplateError, match=r"^newsletter/nope\.mjml\.j2: template not found") as info:
        render_template(env, "newsletter/nope.mjml.j2", "de", {})
    assert info.value.template == "newsletter/nope.mjml.j2"


def test_missing_include_names_the_partial_and_where_it_is_used(tmp_path: Path) -> None:
    _write(tmp_path, "main.txt.j2", 'one\n{% include "_gone.txt.j2" %}\n')
    with pytest.raises(
        TemplateError, match=r"^_gone\.txt\.j2: template not found .*; used at main\.txt\.j2:2$"
    ):
        render_template(make_env([tmp_path]), "main.txt.j2", "de", {})


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    _write(tmp_path, "broken.mjml.j2", "<mjml>\n<mj-body>\n{% if %}\n</mj-body>\n</mjml>\n")
    with pytest.raises(TemplateError, match=r"^broken\.mjml\.j2:3: ") as info:
        render_template(make_env([tmp_path]), "broken.mjml.j2", "de", {})
    assert info.value.line == 3


def test_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path, "broken.mjml.j2", "<mjml>\n<mj-body>\n{{ language }}\n\n{{ foo }}\n</mj-body>\n</mjml>\n"
    )
    with pytest.raises(TemplateError) as info:
        render_template(make_env([tmp_path]), "broken.mjml.j2", "de", {})
    assert str(info.value) == "broken.mjml.j2:5: 'foo' is undefined (variables: language)"


def test_undefined_in_a_partial_names_the_partial(tmp_path: Path) -> None:
    _write(tmp_path, "main.txt.j2", 'a\n{% include "part/_p.txt.j2" %}\n')
    _write(tmp_path, "part/_p.txt.j2", "x\ny\n{{ item.missing }}\n")
    with pytest.raises(TemplateError) as info:
        render_template(make_env([tmp_path]), "main.txt.j2", "de", {"item": {}})
    assert str(info.value).startswith("part/_p.txt.j2:3: ")
    assert "'dict object' has no attribute 'missing'" in str(info.value)


def test_error_in_a_template_string_names_the_string(env: Environment) -> None:
    with pytest.raises(TemplateError) as info:
        render_string(env, "Hallo\n{{ edition.nope }}", "campaigns/m.yaml (subject.de)", "de", {"edition": 1})
    assert str(info.value).startswith("campaigns/m.yaml (subject.de):2: ")
    with pytest.raises(TemplateError, match=r"^campaigns/m\.yaml \(intro\.en\):1: "):
        render_string(env, "{% for %}", "campaigns/m.yaml (intro.en)", "en", {})
