"""One server reply or delivery error in the form that groups: what differs per recipient taken out.

``deliver`` counts failures and waiting rows per normalised error, so 4,000 recipients refused with
"550 5.1.1 <x@y>: user unknown" are one line, not 4,000.
"""

from __future__ import annotations

import re

# An address, with the brackets, quotes or parentheses around it and a colon after it
# ("<x@y>:", "'x@y'", "(x@y)"): replies name the recipient in many ways.
_ADDRESS = re.compile(r"""[<('"]?[\w.!#$%&*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+[>)'"]?:?""")
# Gmail ends a reply with a per-message token: "... NoSuchUser 5b1f17...si123.45 - gsmtp"
_GSMTP_TOKEN = re.compile(r"\s\S+(\s-\sgsmtp)\s*$")
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
# "cannot connect to smtp server HOST:PORT: REASON" (publishers.smtp_async), also after "gave up ...: "
_CONNECT = re.compile(r"cannot connect to (?:smtp server )?(?P<where>\S+?): (?P<why>.*)$")
_REFUSED = ("connect call failed", "connection refused")


def normalise_error(text: str | None) -> str:
    """The error with per-recipient detail removed (addresses, message tokens, OS error numbers) and
    connection failures said plainly (``connection refused by 127.0.0.1:1025``), so equal causes group.

    >>> normalise_error("550 5.1.1 <x@example.org>: user unknown")
    '550 5.1.1 user unknown'
    """
    if not text:
        return "no reply recorded"
    found = _ADDRESS.sub(" ", text)
    found = _GSMTP_TOKEN.sub(r"\1", found)
    found = _ERRNO.sub("", found)
    found = _CONNECT.sub(_connect_failure, found)
    return " ".join(found.split()).strip(" :;,") or "no reply recorded"


def _connect_failure(match: re.Match[str]) -> str:
    where, why = match["where"], match["why"].strip()
    if any(marker in why.lower() for marker in _REFUSED):
        return f"connection refused by {where}"
    if why in ("TimeoutError", "timed out", ""):
        return f"no answer from {where} (timed out)"
    return f"cannot connect to {where}: {why}"
