"""Refuse XML that declares entities before any parser sees it (billion laughs, XXE).

Entities can only be declared in the prolog, so only the bytes before the root element matter. We read
them in the encoding the document uses (BOM, UTF-16/32 byte patterns, the XML declaration, an optional
charset named by HTTP) and accept a DOCTYPE only in its harmless form: a name, an optional PUBLIC/SYSTEM
identifier and at most an empty internal subset. RSS 0.91's Netscape DOCTYPE is therefore fine (the parsers
are set up never to fetch it), while ``<!ENTITY``, parameter entities and any other DTD declaration are
refused.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from imk_outreach.errors import UnsafeDocumentError

# Checked in order: the UTF-32 BOMs start like the UTF-16 ones.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "latin-1"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Codecs in which the markup characters and ASCII letters are single ASCII bytes never found inside a
# multi-byte sequence: the Latin-1 view of the bytes shows the markup exactly where a parser sees it.
_ASCII_SAFE = frozenset(
    {"ascii", "utf-8", "shift_jis", "cp932", "euc_jp", "euc_kr", "cp949", "gb2312", "gbk", "gb18030", "big5"}
)
_ASCII_SAFE_PREFIXES = ("iso8859", "cp125", "koi8", "mac-", "latin", "cp437", "cp85", "tis")
# The first window decoded; a longer prolog makes us decode the whole document.
_WINDOW = 8192

_DECLARED = re.compile(r"\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z][\w.:-]*)[\"']")
_LITERAL = r"(?:\"[^\"]*\"|'[^']*')"
_HARMLESS_DOCTYPE = re.compile(
    rf"<!DOCTYPE\s+[^\s\[>\"']+"
    rf"(?:\s+(?:SYSTEM\s+{_LITERAL}|PUBLIC\s+{_LITERAL}(?:\s+{_LITERAL})?))?"
    r"\s*(?:\[(?:\s|<!--.*?-->)*\]\s*)?>",
    re.IGNORECASE | re.DOTALL,
)
_ENTITY = re.compile(r"<!ENTITY\s*(%\s*)?([^\s\"'>%]{0,60})([^>]{0,2000})", re.IGNORECASE)
_EXTERNAL_ID = re.compile(r"\b(SYSTEM|PUBLIC)\s*[\"']", re.IGNORECASE)


class _Incomplete(Exception):
    """The text ended inside the prolog (a window too short, or a document without root element)."""


def check_xml_safe(body: bytes, *, charset: str | None = None) -> None:
    """Refuse a document whose prolog declares entities or carries DTD declarations.

    :param body: the raw document bytes, in whatever encoding they use.
    :param charset: an encoding named outside the document (HTTP ``charset``) that a later parser may
        honour; the prolog is then checked as read in that encoding too.
    :raises UnsafeDocumentError: the document declares an entity (internal or external), uses parameter
        entities, or has a DOCTYPE with an internal subset or in an unexpected form.
    """
    primary = _primary_encoding(body)
    _check_in(body, primary)
    for codec in _other_encodings(body, primary, charset):
        _check_in(body, codec)


def _check_in(body: bytes, codec: str) -> None:
    """Scan the prolog as read in ``codec``: a short window first, the whole text for a longer prolog."""
    if len(body) > _WINDOW:
        try:
            _scan_prolog(_decode(body[:_WINDOW], codec), complete=False)
            return
        except _Incomplete:
            pass
    try:
        _scan_prolog(_decode(body, codec), complete=True)
    except _Incomplete:
        return  # no root element at all: nothing a parser would expand; it fails on its own


def _decode(data: bytes, codec: str) -> str:
    return data.decode(codec, errors="replace")


def _primary_encoding(body: bytes) -> str:
    """The codec the bytes themselves announce (BOM, or the byte pattern of ``<``); Latin-1 otherwise.

    Latin-1 stands for every ASCII-compatible encoding: it maps each byte to one character, so markup
    characters sit where a parser sees them.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    head = body[:4]
    if head == b"\x00\x00\x00<":
        return "utf-32-be"
    if head == b"<\x00\x00\x00":
        return "utf-32-le"
    if len(head) >= 2 and head[0] == 0 and head[1] != 0:
        return "utf-16-be"
    if len(head) >= 2 and head[0] != 0 and head[1] == 0:
        return "utf-16-le"
    if head == b"\x4c\x6f\xa7\x94":  # "<?xm" in EBCDIC
        return "cp500"
    return "latin-1"


def _other_encodings(body: bytes, primary: str, charset: str | None) -> Iterator[str]:
    """Encodings a parser may switch to that move markup bytes: UTF-7, UTF-16 without BOM, EBCDIC pages...

    Only ASCII-compatible and EBCDIC documents can switch; a UTF-16/32 BOM or byte pattern wins.
    """
    if primary not in ("latin-1", "cp500"):
        return
    declared = _DECLARED.match(_decode(body[:512], primary).lstrip("\ufeff"))
    for label in (declared.group(1) if declared else None, charset):
        codec = _codec_name(label)
        if codec is not None and codec != primary and not _ascii_safe(codec):
            yield codec


def _codec_name(label: str | None) -> str | None:
    """The Python codec for an encoding label, or None when Python does not know it."""
    if not label:
        return None
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _ascii_safe(codec: str) -> bool:
    return codec in _ASCII_SAFE or codec.startswith(_ASCII_SAFE_PREFIXES)


def _scan_prolog(text: str, *, complete: bool) -> None:
    """Walk the prolog up to the root element, checking every DOCTYPE and stray declaration.

    :param complete: ``text`` is the whole document, not a window of it.
    :raises UnsafeDocumentError: an entity declaration or DTD declarations were found.
    :raises _Incomplete: the text ended before the root element.
    """
    pos = 0
    while True:
        lt = text.find("<", pos)
        if lt < 0 or lt + 1 >= len(text):
            raise _Incomplete
        nxt = text[lt + 1]
        if nxt == "?":
            pos = _after(text, "?>", lt + 2)
        elif text.startswith("<!--", lt):
            pos = _after(text, "-->", lt + 4)
        elif text[lt : lt + 9].upper() == "<!DOCTYPE":
            pos = _check_doctype(text, lt, complete)
        elif text[lt : lt + 8].upper() == "<!ENTITY":
            _refuse_entity(text[lt:])
        elif nxt.isalpha() or nxt in "_:":
            return  # the root element: the prolog is over
        else:
            pos = lt + 1  # junk a strict parser rejects; keep looking for declarations behind it


def _after(text: str, marker: str, start: int) -> int:
    found = text.find(marker, start)
    if found < 0:
        raise _Incomplete
    return found + len(marker)


def _check_doctype(text: str, start: int, complete: bool) -> int:
    """Accept a DOCTYPE in its harmless form and return the index after it; refuse anything else."""
    harmless = _HARMLESS_DOCTYPE.match(text, start)
    if harmless is not None:
        return harmless.end()
    _refuse_entity(text[start:])
    if not complete:
        raise _Incomplete  # perhaps only cut off by the window
    raise UnsafeDocumentError(
        "the DOCTYPE has an internal subset or an unexpected form; only a plain DOCTYPE "
        "(a name with an optional PUBLIC/SYSTEM identifier, no declarations) is accepted"
    )


def _refuse_entity(text: str) -> None:
    """Raise when ``text`` declares an entity, naming it and saying whether it is external."""
    match = _ENTITY.search(text)
    if match is None:
        return
    kind = "parameter entity" if match.group(1) else "entity"
    name = _printable(match.group(2))
    external = _EXTERNAL_ID.search(match.group(3))
    if external is not None:
        raise UnsafeDocumentError(
            f"the DOCTYPE declares an external {kind} {name!r} ({external.group(1).upper()} identifier); "
            "external entities are never loaded (XXE protection), so the document is refused"
        )
    raise UnsafeDocumentError(
        f"the DOCTYPE declares {kind} {name!r}; documents that declare entities are refused "
        "(entity expansion / billion laughs protection)"
    )


def _printable(name: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in name)[:60]
