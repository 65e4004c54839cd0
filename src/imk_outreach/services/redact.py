"""Text fit for a log line: what a mail server or an error message says, without email addresses.

Log lines name a subscriber by id only (logs are kept and shipped where an erasure does not reach); a
server's reply often echoes the recipient ("550 5.1.1 <x@y>: user unknown"), so such text is masked
before it is logged. The CLI's own output to the person at the terminal is not masked.
"""

from __future__ import annotations

import re

ADDRESS_MASK = "<address>"
# Anything shaped like local@domain.tld, generously: a mask too many in a log costs nothing.
_ADDRESS_LIKE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def without_addresses(text: object) -> str:
    """``str(text)`` with every email address replaced by :data:`ADDRESS_MASK`."""
    return _ADDRESS_LIKE.sub(ADDRESS_MASK, str(text))
