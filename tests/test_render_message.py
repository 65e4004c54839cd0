"""MessageTemplate: one MIME structure per (edition, language), bytes per recipient.

Every check parses the produced bytes with the standard library's email parser (policy.default), and
one test sends them over SMTP to a real aiosmtpd server.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import smtplib
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from imk_outreach.models import RenderedEmail
from imk_outreach.render.message import MessageTemplate, format_date

PLACEHOLDERS = {
    "greeting_name": "IMKPH_GREETING_NAME",
    "unsubscribe_url": "IMKPH_UNSUBSCRIBE_URL",
    "preferences_url": "IMKPH_PREFERENCES_URL",
}
GERMAN = "Grüße aus Potsdam: Ärger, Öl, Übermut, Straße, 5 €, „Zitat“ …"
HTML = (
    '<!doctype html><html lang="de"><body><p>Hallo IMKPH_GREETING_NAME,</p>'
    f"<p>{GERMAN}</p>"
    '<a href="IMKPH_UNSUBSCRIBE_URL">Abmelden</a> <a href="IMKPH_PREFERENCES_URL">Einstellungen</a>'
    "</body></html>"
)
TEXT = f"Hallo IMKPH_GREETING_NAME,\n\n{GERMAN}\n\nAbmelden: IMKPH_UNSUBSCRIBE_URL\n"
SUBJECT = "Der Blick nach vorne – „Dezember“ für Bäcker & Ölmüller €"
DATE = "Tue, 01 Dec 2026 09:00:00 +0100"
UNSUBSCRIBE = "https://imk.example.org/u/1-abc.DEF_ghi?s=sig%3D"
HEADERS = (
    "From To Subject Date Message-ID Reply-To MIME-Version Content-Language List-Id List-Unsubscribe "
    "List-Unsubscribe-Post Content-Type"
).split()


def build(**overrides: Any) -> MessageTemplate:
    args: dict[str, Any] = {
        "html": HTML,
        "text": TEXT,
        "subject": SUBJECT,
        "from_name": "Cluster IMK – Medien & Kreativwirtschaft",
        "from_email": "newsletter@imk.example.org",
        "reply_to": "info@imk.example.org",
        "list_id": "newsletter.imk.example.org",
        "language": "de",
        "placeholders": PLACEHOLDERS,
    }
    return MessageTemplate.build(**{**args, **overrides})


def render(template: MessageTemplate, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "to_email": "joerg@example.com",
        "to_name": "Jörg Müßig",
        "message_id": "<outbox-17.edition-3@imk.example.org>",
        "date": DATE,
        "values": {"greeting_name": "Jörg", "preferences_url": "https://imk.example.org/p/1?a=1&b=2"},
        "unsubscribe_url": UNSUBSCRIBE,
    }
    return template.render(**{**args, **overrides})


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects, message.defects
    return message


def parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    text, html = list(message.iter_parts())
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text, html


def content(part: EmailMessage) -> str:
    value = part.get_content()
    assert isinstance(value, str)
    return value.replace("\r\n", "\n")


def lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


# -- structure and content -------------------------------------------------------------------------


def test_multipart_alternative_with_text_then_html_in_utf8() -> None:
    message = parse(render(build()))
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    for part, kind in ((text, "text/plain"), (html, "text/html")):
        assert part.get_content_type() == kind
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert not part.defects
    assert content(text) == TEXT.replace("IMKPH_GREETING_NAME", "Jörg").replace(
        "IMKPH_UNSUBSCRIBE_URL", UNSUBSCRIBE
    )
    assert content(html) == (
        HTML.replace("IMKPH_GREETING_NAME", "Jörg")
        .replace("IMKPH_UNSUBSCRIBE_URL", UNSUBSCRIBE)
        .replace("IMKPH_PREFERENCES_URL", "https://imk.example.org/p/1?a=1&amp;b=2")
    )


def test_non_ascii_survives_in_subject_display_names_and_bodies() -> None:
    data = render(build(), to_name="Jürgen „Jo“ Weiß €")
    assert data.isascii()  # 7-bit clean: RFC 2047 headers, quoted-printable bodies
    message = parse(data)
    assert message["Subject"] == SUBJECT
    assert message["From"].addresses[0].display_name == "Cluster IMK – Medien & Kreativwirtschaft"
    assert message["To"].addresses[0].display_name == "Jürgen „Jo“ Weiß €"
    text, html = parts(message)
    assert GERMAN in content(text) and GERMAN in content(html)


def test_html_values_are_escaped_and_text_values_are_not() -> None:
    name = '<script>alert("x")</script> & Co'
    text, html = parts(parse(render(build(), values={"greeting_name": name, "preferences_url": "p"})))
    assert "Hallo &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co," in content(html)
    assert "<script>" not in content(html)
    assert f"Hallo {name}," in content(text)
    assert "IMKPH_" not in content(text) + content(html)


def test_every_header_once_with_the_right_values() -> None:
    data = render(
        build(extra_headers={"Feedback-ID": "3:monthly:imk"}), unsubscribe_mailto="u@imk.example.org"
    )
    message = parse(data)
    counts = Counter(name.lower() for name in message.keys())
    assert all(n == 1 for n in counts.values()), counts
    assert set(counts) == {h.lower() for h in HEADERS} | {"feedback-id"}
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <mailto:u@imk.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<outbox-17.edition-3@imk.example.org>"
    assert message["Date"].datetime == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert message["Content-Language"] == "de"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == "<newsletter.imk.example.org>"
    assert message["Reply-To"].addresses[0].addr_spec == "info@imk.example.org"
    assert message["To"].addresses[0].addr_spec == "joerg@example.com"
    assert message["Feedback-ID"] == "3:monthly:imk"


def test_optional_headers() -> None:
    message = parse(render(build(reply_to=None, list_name="Newsletter (DE)"), message_id="a.b@c.example"))
    assert "Reply-To" not in message
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["Message-ID"] == "<a.b@c.example>"
    assert message["List-Id"] == '"Newsletter (DE)" <newsletter.imk.example.org>'
    message = parse(render(build(list_name="Neuigkeiten für Bäcker")))
    assert str(message["List-Id"]) == "Neuigkeiten für Bäcker <newsletter.imk.example.org>"


def test_format_date_and_date_validation() -> None:
    berlin = timezone(timedelta(hours=1))
    date = format_date(datetime(2026, 12, 1, 9, 0, tzinfo=berlin))
    assert parse(render(build(), date=date))["Date"].datetime == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        format_date(datetime(2026, 12, 1, 9, 0))
    for bad in ("yesterday", "Tue, 01 Dec 2026 09:00:00", DATE + "\r\nBcc: x@y.org"):
        with pytest.raises(ValueError):
            render(build(), date=bad)


def test_crlf_everywhere_and_lines_short() -> None:
    data = render(build(), unsubscribe_mailto="mailto:u@imk.example.org?subject=unsubscribe")
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None
    assert max(len(line) for line in lines(data)) <= 78


def test_no_long_lines_with_a_50_kb_single_line_html_and_long_values() -> None:
    filler = "<td>" + "".join(f"Zelle{i}äöü€=" for i in range(4000)) + "</td>"  # no spaces, no newline
    html = f"<html><body>{filler}IMKPH_GREETING_NAME{filler}IMKPH_UNSUBSCRIBE_URL</body></html>"
    assert len(html.encode()) > 50_000 and "\n" not in html
    long_name = "Ä" * 3000 + "x" * 3000
    long_url = "https://imk.example.org/u/" + "a" * 870
    template = build(html=html, text="IMKPH_GREETING_NAME" * 3 + "\n" + "ß" * 5000)
    data = render(template, values={"greeting_name": long_name}, unsubscribe_url=long_url)
    assert max(len(line) for line in lines(data)) <= 998
    header, _, body = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in lines(body)) <= 76  # quoted-printable's own limit
    text, html_part = parts(parse(data))
    assert content(text) == long_name * 3 + "\n" + "ß" * 5000
    assert content(html_part) == html.replace("IMKPH_GREETING_NAME", long_name).replace(
        "IMKPH_UNSUBSCRIBE_URL", long_url
    )


def test_long_subjects_and_names_fold() -> None:
    subjects = ["Wort " * 60, "Straßenfest " * 40, "x" * 950, "Subject with =?utf-8?q?Fake?= inside"]
    name = "Dr. Ölmüller-Weiß und die Bäckerinnen " * 8  # runs of non-ASCII words between ASCII atoms
    for subject in subjects:
        data = render(build(subject=subject.strip()), to_name=name.strip())
        header = data.partition(b"\r\n\r\n")[0] + b"\r\n"
        assert max(len(line) for line in lines(header)) <= (78 if subject != "x" * 950 else 998)
        message = parse(data)
        assert message["Subject"] == subject.strip()
        assert message["To"].addresses[0].display_name == name.strip()


def test_a_long_run_of_non_ascii_words_decodes_per_rfc_2047() -> None:
    """Adjacent encoded-words: RFC 2047 decoders (here the legacy email.header) join them; Python's
    policy.default parser keeps the folding white space inside display names, a known quirk."""
    name = "Ölmüller Jürgen-Weiß " * 10
    data = render(build(), to_name=name.strip())
    assert max(len(line) for line in lines(data.partition(b"\r\n\r\n")[0] + b"\r\n")) <= 78
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["To"]
    assert str(make_header(decode_header(raw))) == f"{name.strip()} <joerg@example.com>"


def test_repeated_spaces_in_long_names_give_no_empty_encoded_word() -> None:
    name = "  Jürgen   Müller  " + "Beratung " * 10
    data = render(build(), to_name=name)
    assert b"?b??=" not in data
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["To"]
    assert "Jürgen   Müller" in str(make_header(decode_header(raw)))


def test_random_contents_round_trip_with_short_lines() -> None:
    """The quoted-printable encoder against the parser, over random text with placeholders anywhere."""
    rng = random.Random(20261201)
    alphabet = "aZ09 =.\t\n<>&\"'äß€„“…\U0001f600-_"
    names = list(PLACEHOLDERS)
    for _ in range(200):
        pieces: list[str] = []
        for _ in range(rng.randint(0, 6)):
            pieces.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))))
            pieces.append(rng.choice(names))
        pieces.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))))
        values = {
            n: "".join(rng.choice(alphabet.replace("\n", "")) for _ in range(rng.randint(0, 90)))
            for n in names
        }
        body = "".join(PLACEHOLDERS[p] if i % 2 else p for i, p in enumerate(pieces))
        data = render(build(html=body, text=body), values=values, unsubscribe_url=UNSUBSCRIBE)
        assert max(len(line) for line in lines(data.partition(b"\r\n\r\n")[2])) <= 76
        text, _ = parts(parse(data))
        expected = "".join(values[p] if i % 2 else p for i, p in enumerate(pieces))
        assert content(text) == expected.replace("\r\n", "\n")


# -- placeholders ----------------------------------------------------------------------------------


def test_placeholder_edge_cases() -> None:
    placeholders = {"a": "PH_A", "ab": "PH_AB", "unsubscribe_url": "PH_U"}
    body = "PH_APH_ABPH_A\nPH_A PH_U\n\nPH_AB"
    template = build(html=body, text=body, placeholders=placeholders)
    assert template.placeholder_names == {"a", "ab", "unsubscribe_url"}
    data = render(template, values={"a": "1", "ab": ""})
    text, html = parts(parse(data))
    assert content(text) == content(html) == f"11\n1 {UNSUBSCRIBE}\n\n"
    data = render(template, values={"a": "1", "ab": "2", "unsubscribe_url": "own"})
    assert content(parts(parse(data))[0]) == "121\n1 own\n\n2"


def test_placeholder_errors() -> None:
    template = build()
    with pytest.raises(ValueError, match="greeting_name"):
        render(template, values={"preferences_url": "x"})
    with pytest.raises(ValueError, match="token"):
        build(placeholders={"a": "PH-A"})
    with pytest.raises(ValueError, match="token"):
        build(placeholders={"a": "PH", "b": "PH"})
    with pytest.raises(ValueError, match="subject"):
        build(subject="Hallo IMKPH_GREETING_NAME")


def test_from_rendered() -> None:
    rendered = RenderedEmail(language="en", subject="Looking ahead", preheader="", html=HTML, text=TEXT)
    template = MessageTemplate.from_rendered(
        rendered,
        from_name="Cluster IMK",
        from_email="newsletter@imk.example.org",
        reply_to=None,
        list_id="newsletter.imk.example.org",
        placeholders=PLACEHOLDERS,
    )
    message = parse(render(template))
    assert message["Content-Language"] == "en" and message["Subject"] == "Looking ahead"


# -- safety ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("to_name", "Eve\r\nBcc: x@y.org"),
        ("to_name", "Eve\nBcc: x@y.org"),
        ("to_name", "Eve\rBcc: x@y.org"),
        ("to_email", "eve@example.org\r\nBcc: x@y.org"),
        ("message_id", "<a@b>\r\nBcc: x@y.org"),
        ("unsubscribe_url", "https://x.org/u\r\nBcc: x@y.org"),
        ("unsubscribe_mailto", "u@x.org\r\nBcc: x@y.org"),
        ("values", {"greeting_name": "Eve\r\nBcc: x@y.org", "preferences_url": "p"}),
        ("values", {"greeting_name": "Eve", "preferences_url": "p\n"}),
    ],
)
def test_crlf_in_recipient_data_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        render(build(), **{field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "Hallo\r\nBcc: x@y.org"),
        ("subject", "Hallo\nBcc: x@y.org"),
        ("from_name", "Eve\r\nBcc: x@y.org"),
        ("from_email", "a@b.org\nBcc: x@y.org"),
        ("reply_to", "a@b.org\r\nBcc: x@y.org"),
        ("list_id", "a.b\r\nBcc: x@y.org"),
        ("list_name", "List\r\nBcc: x@y.org"),
        ("language", "de\r\nBcc: x@y.org"),
        ("extra_headers", {"X-Campaign": "m\r\nBcc: x@y.org"}),
        ("extra_headers", {"Bcc": "x@y.org"}),
        ("extra_headers", {"List-Unsubscribe": "<https://evil.example/>"}),
        ("extra_headers", {"X-Bad Name": "v"}),
        ("extra_headers", {"X-Bad:Name": "v"}),
    ],
)
def test_crlf_in_edition_data_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        build(**{field: value})


def test_names_that_look_like_headers_or_addresses_stay_one_display_name() -> None:
    tricky = [
        'Eve "the boss" <eve@evil.example>, mallory@evil.example',
        "Müller, Jörg; <x@y.org>",
        "Eve\u2028Bcc: x@y.org",
        "Eve\u0085Bcc: x@y.org",
        "=?utf-8?q?Chef?=",
        "Back\\slash (comment) @ here.",
    ]
    for name in tricky:
        data = render(build(from_name=name), to_name=name)
        message = parse(data)
        header_lines = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
        # (not a substring test: the random boundary's hex digits may spell "bcc")
        assert "Bcc" not in message and not any(line.lower().startswith(b"bcc:") for line in header_lines)
        for field in ("From", "To"):
            (address,) = message[field].addresses
            assert address.display_name == name
        assert message["To"].addresses[0].addr_spec == "joerg@example.com"


@pytest.mark.parametrize(
    "address",
    ["a b@example.org", "a@b@example.org", "<a@example.org>", "a@", "@example.org", "a,b@example.org",
     "a@example.org>", "Jörg@example.org", "", "a\t@example.org", "x" * 250 + "@example.org"],
)  # fmt: skip
def test_invalid_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ValueError):
        render(build(), to_email=address)


def test_international_domain_becomes_punycode() -> None:
    message = parse(render(build(), to_email="info@müller-bäckerei.de"))
    assert message["To"].addresses[0].addr_spec == "info@xn--mller-bckerei-hfb76a.de"


def test_bad_unsubscribe_urls_are_rejected() -> None:
    for url in (
        "javascript:alert(1)",
        "https://x.org/a b",
        "https://x.org/a,b",
        "https://x.org/>",
        "ftp://x",
    ):
        with pytest.raises(ValueError):
            render(build(), unsubscribe_url=url)


def test_boundary_is_random_and_absent_from_the_content() -> None:
    template = build()
    assert template.boundary != build().boundary
    data = render(template)
    message = parse(data)
    assert message.get_boundary() == template.boundary
    text, html = parts(message)
    assert template.boundary not in content(text) + content(html)
    assert data.count(template.boundary.encode()) == 4  # header, two delimiters, close delimiter
    # quoted-printable never writes "=_", so not even a value holding the boundary can reproduce it
    hostile = {"greeting_name": "--" + template.boundary, "preferences_url": template.boundary + "--"}
    assert render(template, values=hostile).count(template.boundary.encode()) == 4


def test_recipient_b_shares_nothing_of_recipient_a() -> None:
    template = build()
    a = {
        "to_email": "alice@a.example",
        "to_name": "Alice Ämter",
        "message_id": "<row-1@imk.example.org>",
        "values": {"greeting_name": "Alice", "preferences_url": "https://imk.example.org/p/alice"},
        "unsubscribe_url": "https://imk.example.org/u/alice-token",
        "unsubscribe_mailto": "alice-unsub@imk.example.org",
    }
    b = {
        "to_email": "bob@b.example",
        "to_name": "Bob",
        "message_id": "<row-2@imk.example.org>",
        "values": {"greeting_name": "Bob", "preferences_url": "https://imk.example.org/p/bob"},
        "unsubscribe_url": "https://imk.example.org/u/bob-token",
    }
    fresh_b = render(build(), **b)
    render(template, **a)
    data_b = render(template, **b)
    for secret in (b"alice", b"Alice", b"A=C3=84mter", b"row-1"):
        assert secret not in data_b
    message = parse(data_b)
    assert message["List-Unsubscribe"] == "<https://imk.example.org/u/bob-token>"
    # the same as a template that never saw Alice (up to its own random boundary)
    assert data_b.replace(template.boundary.encode(), b"B") == fresh_b.replace(
        fresh_b.split(b'boundary="')[1].split(b'"')[0], b"B"
    )


# -- through a real SMTP server --------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Sink]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


def test_sent_through_smtplib_to_aiosmtpd(smtp_server: tuple[int, Sink]) -> None:
    port, sink = smtp_server
    template = build(html=HTML + "\n.\n..leading dots\n", text=".\n" + TEXT)
    data = render(template, unsubscribe_mailto="u@imk.example.org")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        refused = client.sendmail("bounces@imk.example.org", ["joerg@example.com"], data)
    assert refused == {}
    (envelope,) = sink.envelopes
    assert envelope.mail_from == "bounces@imk.example.org"
    assert envelope.rcpt_tos == ["joerg@example.com"]
    received = envelope.original_content
    assert received.rstrip(b"\r\n") == data.rstrip(b"\r\n")
    message = parse(received)
    assert message["Subject"] == SUBJECT
    assert message["To"].addresses[0].display_name == "Jörg Müßig"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(message)
    assert content(text).startswith(".\nHallo Jörg,")
    assert content(html).endswith("</html>\n.\n..leading dots\n")
