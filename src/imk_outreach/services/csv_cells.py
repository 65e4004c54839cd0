"""CSV cells that spreadsheets open safely, and back.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is taken for a formula by
Excel, LibreOffice and Google Sheets ("CSV injection", OWASP). The export puts an apostrophe in front of
such a cell, which spreadsheets show as text. So that an export imports back unchanged, the import takes
that apostrophe off again. To keep the two exact inverses, a cell that already starts with apostrophes
followed by one of those characters gets one apostrophe more on export (``'=x`` is written ``''=x``);
the import takes one off whenever apostrophes are followed by one of them. Other cells are untouched, so
an apostrophe at the start of a name (``'t Hooft``) stays as it is both ways.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = re.compile(r"'*[=+\-@\t\r]")
_RESTORABLE = re.compile(r"'+[=+\-@\t\r]")


def neutralised(value: str) -> str:
    """``value`` as written to a CSV export: an apostrophe in front when a spreadsheet would run it."""
    return "'" + value if _ESCAPED.match(value) else value


def restored(value: str) -> str:
    """The value an exported cell stood for (the inverse of :func:`neutralised`)."""
    return value[1:] if _RESTORABLE.match(value) else value
