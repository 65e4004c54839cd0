"""Ready-to-send email bytes per recipient from one compiled edition.

The MIME structure of an edition in one language is built **once** (:meth:`MessageTemplate.build`):
headers that are the same for everyone, a ``multipart/alternative`` body with a ``text/plain`` and a
``text/html`` part, all serialised to byte segments. What differs per recipient (``To``, ``Date``,
``Message-ID``, ``List-Unsubscribe`` and the placeholder values in the bodies) sits in slots between
the segments, and :meth:`MessageTemplate.render` only encodes those few values and joins the bytes.

Encoding decision: both body parts are ``quoted-printable`` (charset utf-8), not ``8bit``.

* The static text is encoded once at build time. Every placeholder is bracketed by QP *soft* line
  breaks (``=`` CRLF), so each value starts and ends at column 0 and is QP-encoded per recipient on its
  own. Soft breaks vanish on decoding, so a value's length never affects any other line, and every line
  of the message stays at or below 76 octets (headers: folded, well below 998) whatever the input:
  mjml-python emits single lines of several KB, and a 50 KB one-line document is fine.
* Wrapping 8bit HTML would have to insert or replace whitespace, which can change the rendering
  (inline images and links, ``<pre>``, Outlook conditional comments); QP soft breaks change nothing.
* The message is 7-bit clean: no dependency on the server's 8BITMIME, and no relay re-encodes the body
  on the way (which would break a DKIM body hash).
* The boundary starts with ``=_``, a sequence quoted-printable can never produce, so no content and no
  value can ever contain it (it is still checked against the input at build time).

The cost is size: non-ASCII letters take 6 octets instead of 2 and ``=`` takes 3 (about +12 % for
mjml-python output, the same as ``EmailMessage`` produces for it).

Header injection: every header input (names, subject, addresses, message id, date, URLs, extra
headers) and every placeholder value is **rejected** with :class:`ValueError` when it holds a CR or LF
(headers: any control character). Nothing is stripped silently: a bad recipient should fail loudly and
be logged, not be "repaired". Non-ASCII header text is RFC 2047-encoded (base64 encoded-words, folded).
"""

from __future__ import annotations

import binascii
import html as html_lib
import re
import secrets
from base64 import b64encode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from types import MappingProxyType

from imk_outreach.models import RenderedEmail

__all__ = ["MessageTemplate", "format_date"]

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"  # quoted-printable soft line break: removed on decoding
QP_MAX_LINE = 76  # RFC 2045 limit for encoded lines, the soft-break "=" included
HEADER_LINE = 78  # RFC 5322 "SHOULD" length; folding aims for it
WORD_BYTES = 39  # UTF-8 octets per RFC 2047 encoded-word: 52 base64 chars, 64 chars per word
MAX_ADDRESS = 254  # RFC 5321 path limit
MAX_HEADER_VALUE = 900  # longest unfolded header value or line: far below the 998-octet limit
SIMPLE_NAME = 64  # longer display names are encoded-words, which can be folded
UNSUBSCRIBE_SLOT = "unsubscribe_url"  # bodies may use this name; filled from ``unsubscribe_url``

_EMPTY: Mapping[str, str] = MappingProxyType({})
_CTL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[A-Za-z0-9_]+")
_ADDR_CHARS = r'[^\s@<>()\[\]\\,;:"\x00-\x1f\x7f]+'
_ADDRESS = re.compile(rf"({_ADDR_CHARS})@({_ADDR_CHARS})")
_ID_CHARS = r"[!-;=?A-~]+"  # printable ASCII without space, "<", ">" and "@"
_MESSAGE_ID = re.compile(rf"<({_ID_CHARS}@{_ID_CHARS})>|({_ID_CHARS}@{_ID_CHARS})")
_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}(?::\d{2})? [+-]\d{4}",
    re.ASCII,
)
_URL = re.compile(r'https?://[^\s<>",\x00-\x1f\x7f]+', re.ASCII)
_MAILTO = re.compile(r'(?:mailto:)?([^\s<>",\x00-\x1f\x7f]+@[^\s<>",\x00-\x1f\x7f]+)', re.ASCII)
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_LIST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # as in email.utils.formataddr
_ESCAPES = re.compile(r'[\\"]')
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_RESERVED = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "list-id",
        "list-unsubscribe", "list-unsubscribe-post", "content-language", "reply-to", "content-type",
        "content-transfer-encoding", "sender", "return-path",
    }
)  # fmt: skip


def format_date(moment: datetime) -> str:
    """An RFC 5322 ``Date`` value for a timezone-aware datetime.

    :raises ValueError: when ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("Date needs a timezone-aware datetime")
    return format_datetime(moment)


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """One edition in one language as serialised byte segments with per-recipient slots between them.

    ``segments[i]`` is followed by the value of ``slots[i]``; there is one segment more than slots.
    Slot keys are ``to``, ``date``, ``message_id``, ``list_unsubscribe``, ``text:NAME`` and
    ``html:NAME``. Immutable and safe to share between threads.
    """

    segments: tuple[bytes, ...]
    slots: tuple[str, ...]
    text_names: tuple[str, ...]
    html_names: tuple[str, ...]
    boundary: str
    language: str

    @classmethod
    def build(
        cls,
        *,
        html: str,
        text: str,
        subject: str,
        from_name: str,
        from_email: str,
        reply_to: str | None,
        list_id: str,
        language: str,
        placeholders: Mapping[str, str],
        list_name: str | None = None,
        extra_headers: Mapping[str, str] = _EMPTY,
    ) -> MessageTemplate:
        """Serialise everything that is the same for every recipient.

        :param html: the compiled HTML, holding placeholder tokens.
        :param text: the plain-text part, holding placeholder tokens.
        :param placeholders: placeholder name -> token (``[A-Za-z0-9_]+``) as it appears in ``html``
            and ``text``; :meth:`render` fills the tokens by name.
        :param list_id: the RFC 2919 list id without angle brackets (``newsletter.example.org``);
            ``list_name`` is its optional description.
        :param extra_headers: further headers (e.g. ``Feedback-ID``); none may repeat a header set here.
        :raises ValueError: on a control character in any header input, an invalid address, language,
            list id, token or header name, or a placeholder token in the subject.
        """
        tokens = _token_map(placeholders)
        if any(token in subject for token in tokens):
            raise ValueError("placeholders are not filled in the subject")
        text_parts = _split(text, tokens)
        html_parts = _split(html, tokens)
        boundary = _new_boundary([html, text])
        plan = _header_plan(
            subject=subject,
            from_name=from_name,
            from_email=from_email,
            reply_to=reply_to,
            list_id=list_id,
            list_name=list_name,
            language=language,
            extra_headers=extra_headers,
            boundary=boundary,
        )
        builder = _Builder()
        for entry in plan:
            if isinstance(entry, str):
                builder.add(entry.encode("ascii") + CRLF)
            else:
                builder.add(entry[0].encode("ascii") + b": ")
                builder.slot(entry[1])
                builder.add(CRLF)
        builder.add(CRLF)
        delimiter = b"--" + boundary.encode("ascii") + CRLF
        builder.add(delimiter + _part_headers("text/plain"))
        builder.body("text", text_parts)
        builder.add(CRLF + delimiter + _part_headers("text/html"))
        builder.body("html", html_parts)
        builder.add(CRLF + b"--" + boundary.encode("ascii") + b"--" + CRLF)
        return cls(
            segments=tuple(builder.segments),
            slots=tuple(builder.slots),
            text_names=tuple(dict.fromkeys(name for name in text_parts[1::2])),
            html_names=tuple(dict.fromkeys(name for name in html_parts[1::2])),
            boundary=boundary,
            language=language,
        )

    @classmethod
    def from_rendered(
        cls,
        rendered: RenderedEmail,
        *,
        from_name: str,
        from_email: str,
        reply_to: str | None,
        list_id: str,
        placeholders: Mapping[str, str],
        list_name: str | None = None,
        extra_headers: Mapping[str, str] = _EMPTY,
    ) -> MessageTemplate:
        """:meth:`build` from a :class:`RenderedEmail` (its html, text, subject and language)."""
        return cls.build(
            html=rendered.html,
            text=rendered.text,
            subject=rendered.subject,
            from_name=from_name,
            from_email=from_email,
            reply_to=reply_to,
            list_id=list_id,
            list_name=list_name,
            language=rendered.language,
            placeholders=placeholders,
            extra_headers=extra_headers,
        )

    @property
    def placeholder_names(self) -> frozenset[str]:
        """The names of the placeholders that occur in either body."""
        return frozenset(self.text_names) | frozenset(self.html_names)

    def render(
        self,
        *,
        to_email: str,
        to_name: str,
        message_id: str,
        date: str,
        values: Mapping[str, str],
        unsubscribe_url: str,
        unsubscribe_mailto: str | None = None,
    ) -> bytes:
        """The complete RFC 5322 message for one recipient, CRLF line endings, 7-bit clean.

        :param message_id: ``<id@domain>`` or ``id@domain``.
        :param date: an RFC 5322 date (see :func:`format_date`).
        :param values: placeholder name -> value, unescaped text; HTML-escaped for the HTML part. The
            placeholder named ``unsubscribe_url`` defaults to ``unsubscribe_url``.
        :param unsubscribe_url: the signed one-click http(s) URL (RFC 8058 wants https in production).
        :param unsubscribe_mailto: an address (``mailto:`` optional) added to ``List-Unsubscribe``.
        :raises ValueError: on a CR or LF in any input, an invalid address, message id, date or URL, or
            a missing placeholder value.
        """
        filled = {
            "to": _mailbox(to_name, to_email, len("To: ")).encode("ascii"),
            "date": _date(date),
            "message_id": _message_id(message_id),
            "list_unsubscribe": _list_unsubscribe(unsubscribe_url, unsubscribe_mailto),
        }
        for name in self.text_names:
            filled["text:" + name] = _qp_value(_value(values, name, unsubscribe_url).encode("utf-8"))
        for name in self.html_names:
            escaped = html_lib.escape(_value(values, name, unsubscribe_url))
            filled["html:" + name] = _qp_value(escaped.encode("utf-8"))
        segments = self.segments
        pieces = [segments[0]]
        for index, key in enumerate(self.slots, 1):
            pieces.append(filled[key])
            pieces.append(segments[index])
        return b"".join(pieces)


class _Builder:
    """Collects alternating byte segments and slot keys while a template is built."""

    def __init__(self) -> None:
        self.segments: list[bytes] = [b""]
        self.slots: list[str] = []

    def add(self, data: bytes) -> None:
        self.segments[-1] += data

    def slot(self, key: str) -> None:
        self.slots.append(key)
        self.segments.append(b"")

    def body(self, part: str, pieces: list[str]) -> None:
        """Static text and placeholder names alternate in ``pieces``; every slot starts at column 0."""
        for index, piece in enumerate(pieces):
            if index % 2:
                self.slot(f"{part}:{piece}")
                continue
            encoded = _qp_text(piece)
            if index + 1 < len(pieces) and encoded and not encoded.endswith(CRLF):
                encoded += SOFT_BREAK
            self.add(encoded)


# -- bodies ----------------------------------------------------------------------------------------


def _token_map(placeholders: Mapping[str, str]) -> dict[str, str]:
    """token -> name, after checking that tokens are plain and distinct."""
    tokens: dict[str, str] = {}
    for name, token in placeholders.items():
        if not _TOKEN.fullmatch(token):
            raise ValueError(f"placeholder token for {name!r} must be [A-Za-z0-9_]+: {token!r}")
        if token in tokens:
            raise ValueError(f"placeholder token {token!r} is used for {tokens[token]!r} and {name!r}")
        tokens[token] = name
    return tokens


def _split(content: str, tokens: Mapping[str, str]) -> list[str]:
    """``[static, name, static, name, ..., static]``; the longest token wins where tokens overlap."""
    if not tokens:
        return [content]
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
    pieces: list[str] = []
    position = 0
    for match in pattern.finditer(content):
        pieces += [content[position : match.start()], tokens[match.group()]]
        position = match.end()
    pieces.append(content[position:])
    return pieces


def _qp_line(data: bytes) -> bytes:
    """Quoted-printable for data without line breaks; soft breaks are CRLF and every line, the last
    one included, leaves room for one more ``=`` within 76 octets."""
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=False, header=False)
    if len(encoded) < QP_MAX_LINE:
        return encoded
    lines = encoded.split(b"=\n")  # only soft breaks: "=" and LF in the data are always escaped
    last = lines[-1]
    if len(last) >= QP_MAX_LINE:
        cut = QP_MAX_LINE - 1
        cut -= 1 if last[cut - 1 : cut] == b"=" else 2 if last[cut - 2 : cut - 1] == b"=" else 0
        lines[-1:] = [last[:cut], last[cut:]]
    return SOFT_BREAK.join(lines)


def _qp_text(content: str) -> bytes:
    """Quoted-printable for static body text; line breaks become CRLF hard breaks."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return CRLF.join(_qp_line(line.encode("utf-8")) for line in lines)


def _qp_value(data: bytes) -> bytes:
    """A placeholder value: encoded, then a soft break so the following static text starts a line."""
    return _qp_line(data) + SOFT_BREAK if data else b""


def _value(values: Mapping[str, str], name: str, unsubscribe_url: str) -> str:
    value = values.get(name)
    if value is None:
        if name != UNSUBSCRIBE_SLOT:
            raise ValueError(f"no value for placeholder {name!r}")
        value = unsubscribe_url
    if "\r" in value or "\n" in value:
        raise ValueError(f"value for placeholder {name!r} contains CR or LF")
    return value


def _new_boundary(contents: Iterable[str]) -> str:
    """A random boundary. Its ``=_`` prefix never occurs in quoted-printable output."""
    while True:
        boundary = "=_imk_" + secrets.token_hex(16)
        if not any(boundary in content for content in contents):
            return boundary


def _part_headers(content_type: str) -> bytes:
    return (
        f"Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


# -- headers ---------------------------------------------------------------------------------------


def _header_plan(
    *,
    subject: str,
    from_name: str,
    from_email: str,
    reply_to: str | None,
    list_id: str,
    list_name: str | None,
    language: str,
    extra_headers: Mapping[str, str],
    boundary: str,
) -> list[str | tuple[str, str]]:
    """The top-level header in order: a complete (possibly folded) line, or (name, slot key) for a
    header filled per recipient."""
    if not _LANGUAGE.fullmatch(language):
        raise ValueError(f"not a language tag: {language!r}")
    plan: list[str | tuple[str, str]] = [
        "From: " + _mailbox(from_name, from_email, len("From: ")),
        ("To", "to"),
        _unstructured("Subject", subject),
        ("Date", "date"),
        ("Message-ID", "message_id"),
    ]
    if reply_to is not None:
        plan.append("Reply-To: " + _address(reply_to))
    plan += [
        "MIME-Version: 1.0",
        "Content-Language: " + language,
        "List-Id: " + _list_id(list_id, list_name),
        ("List-Unsubscribe", "list_unsubscribe"),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]
    plan += [_extra_header(name, value) for name, value in extra_headers.items()]
    plan.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
    return plan


def _check_header_text(value: str, what: str) -> None:
    if _CTL.search(value):
        raise ValueError(f"{what} contains a control character such as CR or LF: {value!r}")


def _address(address: str) -> str:
    """A minimally validated ``local@domain``; a non-ASCII domain becomes its IDNA (punycode) form."""
    match = _ADDRESS.fullmatch(address)
    if match is None or len(address) > MAX_ADDRESS:
        raise ValueError(f"not a plain email address: {address!r}")
    if address.isascii():
        return address
    local, domain = match.groups()
    if not local.isascii():
        raise ValueError(f"a non-ASCII local part needs SMTPUTF8, which is not supported: {address!r}")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise ValueError(f"invalid domain in {address!r}: {exc}") from None


def _mailbox(name: str, address: str, column: int) -> str:
    """``name <address>`` folded for a header whose value starts at ``column``."""
    _check_header_text(name, "display name")
    address = _address(address)
    return _fold([*_phrase(name), f"<{address}>"], column) if name else address


def _phrase(name: str) -> list[str]:
    """A display name as tokens to be joined by white space.

    A short ASCII name is written as ``email.utils.formataddr`` writes it (quoted when it holds
    specials). Otherwise, like the standard library's generator, words made of atext stay atoms and
    each run of other words (non-ASCII, specials, ``=?``, which must be shown literally, never decoded
    as an encoded-word) becomes RFC 2047 encoded-words. A run longer than one encoded-word is split
    into adjacent encoded-words; RFC 2047 decoders join those, but Python's own parser (3.11) wrongly
    keeps the white space between them inside a display name (run longer than 39 UTF-8 octets only).
    """
    if name.isascii() and len(name) <= SIMPLE_NAME and "=?" not in name:
        return ['"' + _ESCAPES.sub(r"\\\g<0>", name) + '"' if _SPECIALS.search(name) else name]
    tokens: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if not word:  # repeated spaces: kept inside a run of encoded-words, else collapsed
            run += [word] if run else []
        elif _ATOM.fullmatch(word) and "=?" not in word:
            tokens += _encoded_words(" ".join(run)) if run else []
            tokens.append(word)
            run = []
        else:
            run.append(word)
    return tokens + (_encoded_words(" ".join(run)) if run else [])


def _encoded_words(value: str) -> list[str]:
    """RFC 2047 base64 encoded-words of whole characters, each at most 64 characters long."""
    data = value.encode("utf-8")
    chunks = [data] if len(data) <= WORD_BYTES else _chunks(value)
    return [f"=?utf-8?b?{b64encode(chunk).decode('ascii')}?=" for chunk in chunks]


def _chunks(value: str) -> list[bytes]:
    chunks, current = [], b""
    for char in value:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > WORD_BYTES:
            chunks.append(current)
            current = b""
        current += encoded
    return chunks + [current]


def _fold(tokens: list[str], column: int) -> str:
    """Join tokens with a space, or with CRLF + space where the line would pass 78 characters.
    Never folds before an empty token, so no continuation line is only white space."""
    out, column = tokens[0], column + len(tokens[0])
    for token in tokens[1:]:
        if token and column + 1 + len(token) > HEADER_LINE:
            out += "\r\n " + token
            column = 1 + len(token)
        else:
            out += " " + token
            column += 1 + len(token)
    return out


def _unstructured(name: str, value: str) -> str:
    """``Name: value`` folded at spaces near 78 characters; non-ASCII text, ``=?`` or a word too long
    for any line becomes folded encoded-words."""
    _check_header_text(value, name)
    column = len(name) + 2
    if value.isascii() and "=?" not in value:
        folded = _fold(value.split(" "), column)
        if all(len(line) <= MAX_HEADER_VALUE for line in folded.split("\r\n")):
            return f"{name}: {folded}"
    return f"{name}: " + _fold(_encoded_words(value), column)


def _list_id(list_id: str, list_name: str | None) -> str:
    if not _LIST_ID.fullmatch(list_id) or len(list_id) > 255:
        raise ValueError(f"List-Id must look like 'label.example.org': {list_id!r}")
    if not list_name:
        return f"<{list_id}>"
    _check_header_text(list_name, "list name")
    return _fold([*_phrase(list_name), f"<{list_id}>"], len("List-Id: "))


def _extra_header(name: str, value: str) -> str:
    if not _FIELD_NAME.fullmatch(name) or name.lower() in _RESERVED:
        raise ValueError(f"extra header {name!r} is not a header name or is set by the template itself")
    return _unstructured(name, value)


def _date(date: str) -> bytes:
    if not _DATE.fullmatch(date):
        raise ValueError(f"not an RFC 5322 date: {date!r}")
    return date.encode("ascii")


def _message_id(message_id: str) -> bytes:
    match = _MESSAGE_ID.fullmatch(message_id)
    if match is None or len(message_id) > MAX_HEADER_VALUE:
        raise ValueError(f"not a message id like <id@domain>: {message_id!r}")
    return f"<{match.group(1) or match.group(2)}>".encode("ascii")


def _list_unsubscribe(url: str, mailto: str | None) -> bytes:
    """``<url>`` and, folded onto a second line, ``<mailto:...>`` (RFC 2369, RFC 8058)."""
    if not _URL.fullmatch(url) or len(url) > MAX_HEADER_VALUE:
        raise ValueError(f"unsubscribe URL must be an ASCII http(s) URL without spaces or commas: {url!r}")
    if mailto is None:
        return f"<{url}>".encode("ascii")
    match = _MAILTO.fullmatch(mailto)
    if match is None or len(mailto) > MAX_HEADER_VALUE:
        raise ValueError(f"not an unsubscribe address: {mailto!r}")
    return f"<{url}>,\r\n <mailto:{match.group(1)}>".encode("ascii")
