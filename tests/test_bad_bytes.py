"""Bad bytes get a clear 400, never a 500 or a half-made row: control and invisible characters in names
and addresses, form data that is not UTF-8, and names longer than allowed, through the web form, the
``subscribers add`` command and the import (the row refused, the rest imported), on SQLite and
PostgreSQL (which refuses a NUL byte itself, with a 500 before the check)."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html

from imk_outreach import cli
from imk_outreach.config import Settings
from imk_outreach.db import store
from imk_outreach.models import Subscriber
from imk_outreach.services.database import engine_for
from imk_outreach.services.subscriber_base import MAX_NAME, InputError, check_address, check_name
from imk_outreach.web.app import create_app
from tests.support.smtpserver import SmtpTestServer
from tests.support.subscribers import WebClient, subscriber_settings

FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def settings(make_settings: Any, smtp_server: SmtpTestServer) -> Settings:
    return subscriber_settings(make_settings, smtp_server)


@pytest.fixture
def client(settings: Settings) -> WebClient:
    return WebClient(create_app(settings))


def _find(settings: Settings, email: str) -> Subscriber | None:
    with engine_for(settings).connect() as conn:
        return store.find_subscriber(conn, email)


# -- the rule, in the shared checks -------------------------------------------------------------------

REFUSED = [
    ("Anna\x00", "U+0000", "Cc"),
    ("Anna\x07Ben", "U+0007", "Cc"),
    ("Anna\tMüller", "U+0009", "Cc"),
    ("Anna\x85", "U+0085", "Cc"),  # NEL: Python's str.split() takes it for a space
    ("Anna\u200bMüller", "U+200B ZERO WIDTH SPACE", "Cf"),
    ("\u202eAnna", "U+202E RIGHT-TO-LEFT OVERRIDE", "Cf"),
    ("Anna\u2028Ben", "U+2028 LINE SEPARATOR", "Zl"),
    ("Anna\u2029", "U+2029 PARAGRAPH SEPARATOR", "Zp"),
    ("M\udcfcller", "U+DCFC", "Cs"),  # what a non-UTF-8 terminal puts into sys.argv
]


@pytest.mark.parametrize(("name", "shown", "category"), REFUSED)
def test_a_name_with_a_control_or_invisible_character_is_refused_naming_it(
    name: str, shown: str, category: str
) -> None:
    assert category in {unicodedata.category(c) for c in name}  # the table says what it tries
    with pytest.raises(InputError) as caught:
        check_name(name)

    assert caught.value.field == "name"
    assert shown in caught.value.reason and "position" in caught.value.reason


@pytest.mark.parametrize(("text", "shown", "category"), REFUSED)
def test_an_address_with_such_a_character_is_refused_naming_it(text: str, shown: str, category: str) -> None:
    with pytest.raises(InputError) as caught:
        check_address(f"{text}@example.org".replace("Anna", "anna").replace(" ", ""))

    assert caught.value.field == "email"
    assert caught.value.reason.startswith("address contains ") and shown in caught.value.reason


def test_a_line_separator_after_an_address_is_refused_where_spaces_are_trimmed() -> None:
    assert check_address("  anna@example.org \n") == "anna@example.org"
    assert check_address("\u00a0anna@example.org\u3000") == "anna@example.org"  # copied from a page
    for end in ("\u2028", "\x85", "\x1c"):  # str.strip() would have dropped these silently
        with pytest.raises(InputError, match="U\\+"):
            check_address(f"anna@example.org{end}")


def test_names_are_nfc_normalised_before_their_length_is_counted() -> None:
    decomposed = "Mu\u0308ller"  # u + COMBINING DIAERESIS, as macOS file names and some keyboards send it
    assert check_name(f"  {decomposed}  Zoë\u00a0Chen ") == "Müller Zoë Chen"
    assert check_name(decomposed) == unicodedata.normalize("NFC", decomposed)
    assert check_name("e\u0301" * MAX_NAME) == "é" * MAX_NAME  # 400 code points, 200 characters
    with pytest.raises(InputError, match=f"longer than {MAX_NAME}"):
        check_name("é" * (MAX_NAME + 1))


def test_an_address_longer_than_rfc_5321_allows_is_refused_before_it_is_parsed() -> None:
    from imk_outreach.services.subscriber_base import MAX_ADDRESS

    label = "d" * 60
    longest = f"{'a' * 64}@{label}.{label}.{label}.{'e' * (MAX_ADDRESS - 64 - 1 - 3 * 61 - 4)}.org"
    assert len(longest) == MAX_ADDRESS == 254
    assert check_address(longest) == longest
    with pytest.raises(InputError) as caught:
        check_address("x" + longest)
    assert caught.value.reason == "address longer than 254 characters"


# -- the web form ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Anna\x00", "Anna\x1b[31mBen", "\u202eAnna", "Anna\u2028Ben"])
def test_a_sign_up_with_such_a_name_is_400_with_the_reason_and_stores_nothing(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer, name: str
) -> None:
    form = {"email": "anna@example.org", "name": name, "language": "de", "lists": ["newsletter"]}
    german = client.post("/subscribe?lang=de", data=form)
    english = client.post("/subscribe?lang=en", data=form)

    assert german.status_code == english.status_code == 400
    assert "ohne unsichtbare Steuerzeichen" in german.text
    assert "no invisible control characters" in english.text
    assert lxml_html.fromstring(german.text).forms[0].inputs["email"].value == "anna@example.org"
    assert _find(settings, "anna@example.org") is None
    assert smtp_server.messages == []


def test_form_data_that_is_not_utf8_is_a_neutral_400_and_stores_nothing(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    bodies = [
        b"email=anna%40example.org&name=M%FCller&lists=newsletter",  # Latin-1, percent-encoded
        b"email=anna%40example.org&name=M\xfcller&lists=newsletter",  # Latin-1, raw
        b"email=anna%40example.org&name=%ED%A0%80&lists=newsletter",  # an encoded surrogate
        b"email=anna%40example.org&name=%C3&lists=newsletter",  # cut in the middle of a character
    ]
    for body in bodies:
        response = client.post("/subscribe?lang=en", content=body, headers=FORM_TYPE)

        assert response.status_code == 400, body
        assert response.headers["content-type"].startswith("text/html")
        assert "This request cannot be processed" in response.text
    german = client.post("/subscribe?lang=de", content=bodies[0], headers=FORM_TYPE)
    assert german.status_code == 400 and "Diese Anfrage können wir nicht bearbeiten" in german.text
    assert _find(settings, "anna@example.org") is None
    assert smtp_server.messages == []


def test_multipart_form_data_that_is_not_utf8_is_refused_too(
    settings: Settings, client: WebClient, smtp_server: SmtpTestServer
) -> None:
    boundary = "b0undary"
    fields = [("email", b"anna@example.org"), ("name", b"M\xfcller"), ("lists", b"newsletter")]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode() + value + b"\r\n"
            for key, value in fields
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/subscribe?lang=en", content=body, headers=headers)

    assert response.status_code == 400 and "This request cannot be processed" in response.text
    assert _find(settings, "anna@example.org") is None


def test_raw_utf8_in_a_form_body_is_read_as_utf8_not_latin1(settings: Settings, client: WebClient) -> None:
    """``curl -d 'name=Müller'`` sends the bytes unencoded; the name must not become ``MÃ¼ller``."""
    body = "email=anna%40example.org&name=Jürgen+Müller&lists=newsletter".encode()
    response = client.post("/subscribe?lang=en", content=body, headers=FORM_TYPE)

    assert response.status_code == 200
    stored = _find(settings, "anna@example.org")
    assert stored is not None and stored.name == "Jürgen Müller"


# -- the command line: exit 1 with one line; the import refuses the row, keeps the rest --------------


def _run(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--config", str(settings.config_path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "shown"),
    [("Anna\x07", "U+0007"), ("M\udcfcller", "U+DCFC"), ("Anna\u200dBen", "U+200D ZERO WIDTH JOINER")],
)
def test_subscribers_add_refuses_such_a_name_with_exit_1_and_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str], name: str, shown: str
) -> None:
    code, out, err = _run(settings, capsys, "subscribers", "add", "anna@example.org", "--name", name)

    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: name contains ") and shown in err
    assert _find(settings, "anna@example.org") is None


def test_the_import_refuses_the_row_with_such_a_name_and_imports_the_rest(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        'email,name\nerika@example.org,Erika\nanna@example.org,"Anna\x07"\njane@example.com,"Jane\u2028Doe"\n'
        "kofi@example.com,Kofi\n",
        encoding="utf-8",
    )
    code, out, _ = _run(settings, capsys, "subscribers", "import", str(path), "--status", "pending")

    assert code == 3
    assert "line 3" in out and "U+0007" in out and "line 4" in out and "U+2028 LINE SEPARATOR" in out
    assert _find(settings, "anna@example.org") is None and _find(settings, "jane@example.com") is None
    assert (
        _find(settings, "erika@example.org") is not None and _find(settings, "kofi@example.com") is not None
    )
