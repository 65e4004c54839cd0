"""Real-world MJML (the MJML project's own email templates) compiles with compile_mjml.

The files live outside the repository, in ``../shared/fixtures/mjml-real`` beside it, and are never copied
into the project: they carry no licence. The test skips when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imk_outreach.render.email import compile_mjml

REAL_MJML = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mjml-real"
FILES = sorted(REAL_MJML.glob("*.mjml")) if REAL_MJML.is_dir() else []

pytestmark = pytest.mark.skipif(not FILES, reason=f"no real-world MJML at {REAL_MJML}")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_mjml_compiles_as_bytes(path: Path) -> None:
    html = compile_mjml(path.read_bytes(), path.name)  # bytes as on disk: some use CRLF line endings
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "</html>" in html


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_mjml_compiles_as_str(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")  # CRLF kept: compile_mjml must cope with it
    assert compile_mjml(text, path.name) == compile_mjml(path.read_bytes(), path.name)


def test_the_fixtures_are_not_in_the_project() -> None:
    repo = Path(__file__).resolve().parents[1]
    names = {p.name for p in FILES}
    copied = [p for p in repo.rglob("*.mjml") if p.name in names and ".venv" not in p.parts]
    assert not copied
