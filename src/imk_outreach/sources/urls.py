"""Every URL operation on data read from a feed or a page goes through here, and none of them raises.

``urllib.parse`` raises ``ValueError`` on strings a feed can hold: ``http://[bad`` ("Invalid IPv6 URL"),
a bracketed host that is no IP address (``http://[example]/``), a host with characters that NFKC
normalisation turns into URL delimiters (``℀`` becomes ``a/c``). ``SplitResult.port`` raises on a port out
of range or not a number, IDNA encoding raises ``UnicodeError`` on a label over 63 characters, and a lone
surrogate (a JSON string can hold one) cannot be percent-encoded at all. Here each of these is an
answer instead: None, or from :func:`url_problem` the reason in words, so that one bad URL costs its
entry (or only that field), never the whole source.

A *web URL* is an absolute http(s) URL with a valid host (a DNS name of at most 253 characters in labels
of at most 63, or an IP address) and a valid port, written in encodable text.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urljoin, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_ABSOLUTE_HTTP = re.compile(r"https?://[^/?#]", re.IGNORECASE)
_MAX_HOST = 253
_MAX_LABEL = 63
_SHOWN = 80


class _Unusable(Exception):
    """Why a URL cannot be used; never leaves this module."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def split_url(url: str) -> SplitResult | None:
    """``urlsplit(url)``, or None when urllib cannot take the string apart."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def join_url(base: str | None, url: str) -> str | None:
    """``url`` resolved against ``base`` (``url`` itself without a base), or None when that fails.

    A URL with its own scheme needs no base, so a broken base does not cost a good absolute URL.
    """
    if not base:
        return url
    try:
        return urljoin(base, url)
    except ValueError:
        parts = split_url(url)
        return url if parts is not None and parts.scheme else None


def is_reference(url: str) -> bool:
    """Whether ``url`` is a well-formed URL reference (relative ones included): it splits, and a host
    or port it names is valid."""
    try:
        _check_authority(_split(url.strip()))
    except _Unusable:
        return False
    return True


def web_url(url: str, base: str | None = None) -> SplitResult | None:
    """``url`` resolved against ``base`` and split, if the result is a web URL (see the module doc)."""
    try:
        return _web_parts(url, base)
    except _Unusable:
        return None


def url_problem(url: str, base: str | None = None) -> str | None:
    """Why ``url`` (resolved against ``base``) is no web URL, in words for a log line; None if it is one."""
    try:
        _web_parts(url, base)
    except _Unusable as exc:
        return exc.reason
    return None


def ascii_host(host: str) -> str | None:
    """A host name in its ASCII form (``bücher.de`` -> ``xn--bcher-kva.de``), without a trailing dot;
    None when it is no valid host name."""
    name = host.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(name) > _MAX_HOST or not _HOST_RE.fullmatch(name):
        return None
    return name if all(len(label) <= _MAX_LABEL for label in name.split(".")) else None


def shown(url: str) -> str:
    """A URL as a log line quotes it: ``repr`` (control characters visible), cut at 80 characters."""
    return repr(url if len(url) <= _SHOWN else url[:_SHOWN] + "…")


def _web_parts(url: str, base: str | None) -> SplitResult:
    text = url.strip()
    if not text:
        raise _Unusable("it is empty")
    if not text.isascii() and not _encodable(text):
        raise _Unusable("it holds characters that are not text (lone surrogates)")
    if base and not _ABSOLUTE_HTTP.match(text):  # urljoin is the slow part: skip it when it changes nothing
        text = _join(base, text)
    parts = _split(text)
    scheme = parts.scheme.lower()
    if not scheme:
        raise _Unusable("it is relative and there is no base address to resolve it against")
    if scheme not in DEFAULT_PORTS:
        raise _Unusable(f"it is a {scheme}: address, not http(s)")
    if not parts.hostname:
        raise _Unusable("it names no host")
    _check_authority(parts)
    return parts


def _join(base: str, url: str) -> str:
    if not base.isascii() and not _encodable(base):
        raise _Unusable(f"the base address {shown(base)} holds characters that are not text")
    joined = join_url(base, url)
    if joined is None:
        raise _Unusable(f"it cannot be resolved against the base address {shown(base)}")
    return joined


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", NFKC-changing host characters, a bad bracketed host
        raise _Unusable(f"it is not a valid URL ({exc})") from exc


def _check_authority(parts: SplitResult) -> None:
    """The host and port, if the URL names them, are valid."""
    if not parts.netloc:
        return
    try:
        parts.port  # noqa: B018 - the property raises on a bad port
    except ValueError as exc:
        raise _Unusable("its port is not a number from 0 to 65535") from exc
    host = parts.hostname or ""
    if not host:
        return
    if ":" in host:
        _check_ipv6(host)
    elif ascii_host(host) is None:
        raise _Unusable(f"its host {shown(host)} is not a valid host name")


def _check_ipv6(host: str) -> None:
    try:
        ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError as exc:
        raise _Unusable(f"its host [{host}] is not a valid IPv6 address") from exc


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
