"""Reading a subscriber CSV file as spreadsheets write it.

Decisions:

* Encoding: a byte order mark decides (UTF-8, as "CSV UTF-8" of Excel writes it, or UTF-16, as its
  "Unicode text" does); else UTF-8 when every byte is valid UTF-8; else Windows-1252, the default of a
  German Excel's plain "CSV" (the report says so and names the first line that is not UTF-8). A file
  that mixes valid UTF-8 with other bytes, or has bytes Windows-1252 does not define, is refused: a guess
  would store names garbled.
* Separator: the one of ``,``, ``;`` and tab that the header row holds most often (German Excel writes
  ``;``); ``,`` when there is none.
* No field is dropped silently: a row with more non-empty fields than the header has columns (an
  unquoted ``newsletter;film`` in a ``;`` file) is an error of that row, naming the line; it is not
  imported. A row with fewer fields has the missing ones empty. A cell longer than its column allows is
  an error of that row. Cells are given back as exported (see :mod:`csv_cells`).
* Line numbers are those a text editor shows: the first line of a record (a quoted cell may span lines).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from imk_outreach.services.csv_cells import restored
from imk_outreach.services.subscriber_base import ImportFileError

DELIMITERS = (",", ";", "\t")
_CHUNK = 1 << 16
_UNDEFINED_IN_1252 = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
_EXAMPLES = {
    ",": ("a ','", 'a name "Doe, Jane"'),
    ";": ("a ';'", 'lists "newsletter;film"'),
    "\t": ("a tab", "a cell pasted with a tab in it"),
}


@dataclass(frozen=True)
class CsvFormat:
    """How a file was read. ``encoding``: UTF-8, UTF-8 with BOM, UTF-16 or Windows-1252; ``why``: for
    Windows-1252, where the file stopped being UTF-8."""

    codec: str
    encoding: str
    delimiter: str
    why: str = ""

    def describe(self) -> str:
        name = {",": "','", ";": "';'", "\t": "tabs"}[self.delimiter]
        return f"read as {self.encoding}{f' ({self.why})' if self.why else ''}, separated by {name}"


class Record(NamedTuple):
    """One record: its first line, its cells by column name, and why it cannot be imported (or "")."""

    line: int
    values: dict[str, str]
    error: str


def detect_format(path: Path) -> CsvFormat:
    """The encoding and the separator of the file.

    :raises ImportFileError: missing, a folder, or neither UTF-8 nor Windows-1252.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except FileNotFoundError:
        raise ImportFileError(path, "file not found") from None
    except IsADirectoryError:
        raise ImportFileError(path, "is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    codec, encoding, why = _encoding(path, head)
    try:
        with path.open(encoding=codec, newline="") as text:
            header_line = text.readline()
    except UnicodeError as exc:
        raise ImportFileError(path, f"cannot be read as {encoding} ({exc})") from None
    counts = {d: header_line.count(d) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return CsvFormat(codec, encoding, delimiter, why)


def _encoding(path: Path, head: bytes) -> tuple[str, str, str]:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8 with BOM", ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16", ""
    first_bad, mixed, undefined = _scan_utf8(path)
    if first_bad is None:
        return "utf-8", "UTF-8", ""
    if mixed:
        raise ImportFileError(
            path,
            f"mixes UTF-8 with another encoding (line {first_bad} is not UTF-8); "
            "save it again as 'CSV UTF-8'",
        )
    if undefined is not None:
        raise ImportFileError(
            path,
            f"neither UTF-8 nor Windows-1252 text (byte 0x{undefined[1]:02X} on line {undefined[0]}); "
            "save it as 'CSV UTF-8'",
        )
    return "cp1252", "Windows-1252", f"not valid UTF-8 from line {first_bad} on"


def _scan_utf8(path: Path) -> tuple[int | None, bool, tuple[int, int] | None]:
    """(first line that is not UTF-8 or None, whether valid non-ASCII UTF-8 occurs too, the first
    (line, byte) Windows-1252 leaves undefined or None), reading in chunks (memory stays flat)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = 1
    first_bad: int | None = None
    good_multibyte = False
    undefined: tuple[int, int] | None = None
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            text = decoder.decode(chunk)
            if first_bad is None and "\ufffd" in text:
                first_bad = lines + text.count("\n", 0, text.index("\ufffd"))
            good_multibyte = good_multibyte or any(ord(c) > 127 and c != "\ufffd" for c in text)
            undefined = undefined or _undefined_byte(chunk, lines)
            lines += chunk.count(b"\n")
        if first_bad is None and "\ufffd" in decoder.decode(b"", final=True):
            first_bad = lines
    return first_bad, good_multibyte, undefined


def _undefined_byte(chunk: bytes, lines: int) -> tuple[int, int] | None:
    positions = [p for p in (chunk.find(bytes([b])) for b in _UNDEFINED_IN_1252) if p >= 0]
    if not positions:
        return None
    at = min(positions)
    return lines + chunk.count(b"\n", 0, at), chunk[at]


def read_header(path: Path, form: CsvFormat) -> list[str]:
    """The names of the header row, trimmed and lower-cased.

    :raises ImportFileError: the header row is not valid CSV.
    """
    with path.open(encoding=form.codec, newline="") as handle:
        try:
            return [name.strip().lower() for name in next(csv.reader(handle, delimiter=form.delimiter), [])]
        except (csv.Error, UnicodeError) as exc:
            raise ImportFileError(path, f"not valid CSV: {exc}", line=1) from None


def iter_records(path: Path, form: CsvFormat, limits: Mapping[str, int]) -> Iterator[Record]:
    """The records after the header row, blank lines left out, streamed. ``limits``: column -> the
    longest cell it takes.

    :raises ImportFileError: a record is not valid CSV (names the line).
    """
    with path.open(encoding=form.codec, newline="") as handle:
        reader = csv.reader(handle, delimiter=form.delimiter)
        header = [name.strip().lower() for name in next(reader, [])]
        end = reader.line_num
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                raise ImportFileError(path, f"not valid CSV: {exc}", line=reader.line_num) from None
            except UnicodeError as exc:
                where = reader.line_num + 1
                raise ImportFileError(path, f"cannot be read as {form.encoding}: {exc}", line=where) from None
            if cells is None:
                return
            start, end = end + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                yield _record(start, cells, header, limits, form)


def _record(
    start: int, cells: list[str], header: list[str], limits: Mapping[str, int], form: CsvFormat
) -> Record:
    padded = [restored(cell) for cell in cells] + [""] * (len(header) - len(cells))
    values = dict(zip(header, padded, strict=False))
    if any(cell.strip() for cell in cells[len(header) :]):
        separator, example = _EXAMPLES[form.delimiter]
        return Record(
            start,
            values,
            f"{len(cells)} fields, but the header row has {len(header)} columns; a cell that contains "
            f"{separator} (e.g. {example}) must be in double quotes (nothing of this row was imported)",
        )
    for column, limit in limits.items():
        if len(values.get(column, "")) > limit:
            return Record(start, values, f"the {column} cell is longer than {limit} characters")
    return Record(start, values, "")
