"""Reading and writing the Excel/CSV files of the loader bulk import and export.

Uploaded spreadsheets come from people and from other programs, so every way a
file can be wrong must end in a ``SpreadsheetError`` whose message tells the
uploader what to fix - never in a 500. The checks here run *in front of* the
parsers: size and type are decided from the bytes before openpyxl or the csv
module sees them, and a ZIP package is judged from its directory (declared sizes,
member count, compression ratios) before anything is unpacked, so a zip bomb
costs us nothing. openpyxl parses XML through defusedxml (installed), which
covers entity-expansion bombs inside the package.

Valid workbooks are read with openpyxl in read-only mode (the engine behind
import_export's ``XLSX`` format) rather than ``XLSX().create_dataset``: that
helper reads the *active* sheet instead of the first one (the template's notes
sheet could be active), loads every row before we could stop at the row limit,
and loses the row numbers users need in error messages. CSV is parsed with the
csv module for the same reason (physical line numbers of multi-line cells).
CSV is written through import_export's ``CSV`` format class; keep the setting
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT off, because ``cell_neutralise`` already does
that job and the setting turns every cell, numbers included, into text. An .xlsx is
written with openpyxl's write-only mode, row by row as the rows come: a 50,000-loader
export would otherwise hold a million cell objects (hundreds of MB in the worker), and
the rows' generator would finish long before the file is written, so its progress
would say nothing about the wait.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import os
import zipfile
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import openpyxl
import tablib
from import_export.formats.base_formats import CSV
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a package with members / an empty package
# Excel wraps a password-protected .xlsx in an OLE2 compound file, the same container as legacy .xls.
OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode Text" export

TEXT_EXTENSIONS = (".csv", ".txt", ".tsv")
MACRO_EXTENSIONS = (".xlsm", ".xltm", ".xlam")
CSV_DELIMITERS = (",", ";", "\t")  # comma first: it wins a tie
BINARY_SNIFF_BYTES = 4096  # text files never hold NUL bytes; binary formats do, early on

# Zip-bomb limits, judged from the ZIP directory alone. A real 50,000 x 20 workbook
# unpacks to about 6.5x its size and no member of an ordinary workbook comes near 200x.
ZIP_MAX_MEMBERS = 1000
ZIP_MAX_RATIO = 200
ZIP_UNPACKED_FACTOR = 20
ZIP_UNPACKED_MINIMUM = 50 * MEGABYTE

# A cell starting with one of these may be run as a formula by the program that
# opens an exported file (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

DAMAGED_MESSAGE = "The file is damaged or not a spreadsheet."
NOT_A_SPREADSHEET_MESSAGE = "This is not a spreadsheet (.xlsx or .csv expected)."
MACRO_MESSAGE = "Macro-enabled workbooks (.xlsm) are not accepted; save as .xlsx."
EMPTY_SHEET_MESSAGE = "The sheet is empty: the first row must hold the column names."

# (row number as the user sees it, the raw cell values of that row)
RawRows = Generator[tuple[int, Sequence[object]], None, None]


class SpreadsheetError(Exception):
    """A file we refuse, with a message for the person who uploaded it (never a stack trace)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SheetRow:
    """One non-blank data row; ``number`` is the row (xlsx) or starting line (CSV) the user sees."""

    number: int
    values: dict[str, object]


@dataclass(frozen=True)
class Sheet:
    """The first worksheet of an upload: normalised headers plus the non-blank data rows."""

    headers: list[str]
    original_headers: list[str]
    rows: list[SheetRow]
    file_format: str


def spreadsheet_read(*, content: bytes, filename: str, max_bytes: int, max_rows: int) -> Sheet:
    """Read an uploaded .xlsx or .csv into a ``Sheet``, or refuse it with a ``SpreadsheetError``.

    The type is decided from the bytes, not the name, because people rename files;
    the name only breaks ties: a .xlsm name is refused even when the package holds no
    macros, and a .csv/.txt name turns bytes that are not UTF-8 into an encoding
    problem reported by line instead of "not a spreadsheet". Only the first worksheet
    is read, so a template's notes sheet is ignored. Reading stops as soon as
    ``max_rows`` is exceeded.
    """
    if len(content) > max_bytes:
        raise SpreadsheetError(
            f"The file is {_megabytes_up(len(content))} MB; the limit is {_megabytes(max_bytes)} MB."
        )
    if not content:
        raise SpreadsheetError("The file is empty.")
    extension = os.path.splitext(filename)[1].lower()

    if content.startswith(ZIP_SIGNATURES):
        _xlsx_package_check(content=content, extension=extension, max_bytes=max_bytes)
        raw_rows = _xlsx_rows(content)
        file_format = "xlsx"
    elif content.startswith(OLE2_SIGNATURE):
        raise SpreadsheetError(
            "The file is password-protected or in the old .xls format; remove the password and save as .xlsx or .csv."
        )
    else:
        raw_rows = _csv_rows(_csv_text(content=content, extension=extension))
        file_format = "csv"

    try:
        return _sheet_build(raw_rows, file_format=file_format, max_rows=max_rows)
    finally:
        # We may stop before the last row (row limit, bad header); release the workbook now.
        raw_rows.close()


def spreadsheet_write(
    *,
    headers: list[str],
    rows: Iterable[Sequence[object]],
    file_format: str,
    notes: list[tuple[str, str]] | None = None,
    sheet_title: str = "loaders",
) -> bytes:
    """Write an export or a template as .xlsx or .csv bytes, with every cell formula-neutralised.

    ``notes`` (column, explanation) pairs become a second sheet called "notes" for the
    downloadable template; the data sheet stays first because ``spreadsheet_read``
    reads only the first sheet. CSV has a single sheet, so notes with CSV are a
    programming error. CSV is written as UTF-8 *with* a BOM: without it Excel
    guesses the local legacy code page and shows accented names as mojibake.
    """
    if file_format not in ("xlsx", "csv"):
        raise ValueError(f"Unknown spreadsheet format {file_format!r}; expected 'xlsx' or 'csv'.")
    if notes is not None and file_format != "xlsx":
        raise ValueError("A notes sheet needs file_format='xlsx'; CSV has only one sheet.")

    if file_format == "csv":
        dataset = _dataset_build(title=sheet_title, headers=headers, rows=rows)
        return CSV().export_data(dataset).encode("utf-8-sig")
    workbook = openpyxl.Workbook(write_only=True)
    _xlsx_sheet_write(workbook.create_sheet(sheet_title), headers=headers, rows=rows)
    if notes is not None:
        _xlsx_sheet_write(workbook.create_sheet("notes"), headers=["column", "explanation"], rows=notes)
    stream = io.BytesIO()
    workbook.save(stream)
    return stream.getvalue()


def cell_neutralise(value: object) -> object:
    """Make a text cell that a spreadsheet program would run as a formula show as text.

    A leading single quote is Excel's and LibreOffice's "this is text" marker.
    Numbers are left alone: -5 is a number, not an injection, and must stay one.
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _megabytes(size: int) -> str:
    return f"{size / MEGABYTE:g}"


def _megabytes_up(size: int) -> str:
    # Rounded up so a file just over a 10 MB limit reads "10.1 MB", not "10.0 MB".
    return f"{math.ceil(size * 10 / MEGABYTE) / 10:g}"


def _xlsx_package_check(*, content: bytes, extension: str, max_bytes: int) -> None:
    """Refuse zip bombs, macro workbooks and non-workbook ZIPs before openpyxl unpacks anything.

    Only the ZIP directory is consulted, plus [Content_Types].xml once the bomb check
    has bounded its size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as package:
            members = package.infolist()
            _zip_bomb_check(members, max_bytes=max_bytes)
            names = {member.filename.lower(): member for member in members}
            content_types = b""
            if "[content_types].xml" in names:
                # Safe to unpack: the bomb check above bounds its size.
                content_types = package.read(names["[content_types].xml"])
    except zipfile.BadZipFile:
        raise SpreadsheetError(DAMAGED_MESSAGE)
    except SpreadsheetError:
        raise
    except Exception as error:
        # A broken ZIP raises zlib, EOF, OS, Runtime... errors alike; all mean "damaged" to the uploader.
        logger.info("Refused an uploaded ZIP package: %r", error)
        raise SpreadsheetError(DAMAGED_MESSAGE) from error

    if "xl/vbaproject.bin" in names or extension in MACRO_EXTENSIONS:
        raise SpreadsheetError(MACRO_MESSAGE)
    # Checked before the content types: an .xlsb declares a "macroEnabled" type even without macros.
    if "xl/workbook.bin" in names:
        raise SpreadsheetError("Binary workbooks (.xlsb) are not accepted; save as .xlsx.")
    if b"macroenabled" in content_types.lower():
        raise SpreadsheetError(MACRO_MESSAGE)
    if "xl/workbook.xml" not in names:
        raise SpreadsheetError("The file is a ZIP archive but not an Excel workbook; save it as .xlsx.")


def _zip_bomb_check(members: list[zipfile.ZipInfo], *, max_bytes: int) -> None:
    """Judge the declared sizes; zipfile stops at a member's declared size, so they cannot lie."""
    if len(members) > ZIP_MAX_MEMBERS:
        raise SpreadsheetError(
            f"The workbook holds {len(members)} parts (at most {ZIP_MAX_MEMBERS} are accepted); "
            "it looks like a zip bomb."
        )
    unpacked_limit = max(ZIP_UNPACKED_FACTOR * max_bytes, ZIP_UNPACKED_MINIMUM)
    if sum(member.file_size for member in members) > unpacked_limit:
        raise SpreadsheetError(
            f"The workbook expands to more than {_megabytes(unpacked_limit)} MB when unpacked; "
            "it looks like a zip bomb."
        )
    for member in members:
        if member.file_size > ZIP_MAX_RATIO * max(member.compress_size, 1):
            raise SpreadsheetError(
                f"The workbook expands to more than {ZIP_MAX_RATIO} times its size when unpacked; "
                "it looks like a zip bomb."
            )


def _xlsx_rows(content: bytes) -> RawRows:
    """Yield (row number, values) from the first worksheet, streaming in openpyxl's read-only mode."""
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:
        # openpyxl raises Key/Value/Type/XML errors for broken packages; all mean "damaged" to the uploader.
        logger.info("openpyxl could not open an uploaded workbook: %r", error)
        raise SpreadsheetError(DAMAGED_MESSAGE) from error
    try:
        if not workbook.worksheets:
            return
        worksheet = workbook.worksheets[0]
        # Some programs write a wrong <dimension>; read-only mode would cut rows off at it.
        worksheet.reset_dimensions()
        # Rows missing from the XML come back as empty tuples, so counting gives Excel's row number.
        yield from enumerate(worksheet.iter_rows(min_row=1, min_col=1, values_only=True), start=1)
    except Exception as error:
        # A broken sheet only shows up while its rows stream in.
        logger.info("openpyxl could not read an uploaded worksheet: %r", error)
        raise SpreadsheetError(DAMAGED_MESSAGE) from error
    finally:
        workbook.close()


def _csv_text(*, content: bytes, extension: str) -> str:
    """Decode a CSV strictly as UTF-8; a wrong byte means a mixed or legacy encoding we would garble."""
    if content.startswith(UTF16_BOMS):
        raise SpreadsheetError("The CSV is saved as UTF-16 (\"Unicode Text\"); save it as 'CSV UTF-8'.")
    if b"\x00" in content[:BINARY_SNIFF_BYTES]:
        raise SpreadsheetError(NOT_A_SPREADSHEET_MESSAGE)
    body = content.removeprefix(UTF8_BOM)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        if extension not in TEXT_EXTENSIONS:
            raise SpreadsheetError(NOT_A_SPREADSHEET_MESSAGE)
        line = body.count(b"\n", 0, error.start) + 1
        raise SpreadsheetError(
            f"The CSV is not valid UTF-8 at line {line} (mixed or non-UTF-8 encoding); save it as 'CSV UTF-8'."
        )


def _csv_delimiter(header_line: str) -> str:
    """Pick comma, semicolon or tab: whichever the header line holds most of (comma on a tie).

    csv.Sniffer is not used: on a single line it prefers a comma whenever one appears,
    so a semicolon file with a header like "Name, first;Team" would be split wrongly.
    """
    return max(CSV_DELIMITERS, key=header_line.count)


def _csv_rows(text: str) -> RawRows:
    """Yield (line number where the record starts, cells); quoted cells may span several lines."""
    delimiter = _csv_delimiter(text.partition("\n")[0])
    # strict: an unclosed quote must be an error, not a cell that silently swallows the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        start_line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise SpreadsheetError(
                f"The CSV cannot be read at line {start_line} ({error}); check the quotes around cells."
            )
        yield start_line, record


def _sheet_build(raw_rows: RawRows, *, file_format: str, max_rows: int) -> Sheet:
    """Check the header row, then collect non-blank data rows up to the row limit."""
    first = next(raw_rows, None)
    original_headers = [_header_text(value) for value in (first[1] if first else ())]
    while original_headers and not original_headers[-1]:
        original_headers.pop()  # trailing empty columns are formatting leftovers, not data
    if not original_headers:
        raise SpreadsheetError(EMPTY_SHEET_MESSAGE)
    headers = [name.lower() for name in original_headers]

    first_column: dict[str, int] = {}
    for column, name in enumerate(headers, start=1):
        if not name:
            raise SpreadsheetError(f"Column {column} has no name.")
        if name in first_column:
            raise SpreadsheetError(f"Column '{name}' appears twice (columns {first_column[name]} and {column}).")
        first_column[name] = column

    width = len(headers)
    rows: list[SheetRow] = []
    for number, raw_values in raw_rows:
        values = [_cell_value(value) for value in raw_values]
        if all(value is None for value in values):
            continue
        for column in range(width, len(values)):
            if values[column] is not None:
                raise SpreadsheetError(f"Row {number} has a value in column {column + 1}, which has no name.")
        if len(rows) == max_rows:
            raise SpreadsheetError(f"The file has more than {max_rows} data rows; split it.")
        values = values[:width] + [None] * (width - len(values))
        rows.append(SheetRow(number=number, values=dict(zip(headers, values, strict=True))))

    if not rows:
        raise SpreadsheetError("The sheet has column names but no data rows.")
    return Sheet(headers=headers, original_headers=original_headers, rows=rows, file_format=file_format)


def _header_text(value: object) -> str:
    value = _cell_value(value)
    return "" if value is None else str(value)


def _cell_value(value: object) -> object:
    """Normalise one cell: stripped text or None, whole floats as int, everything else as read.

    A leading quote before a formula character is dropped because our own export put
    it there (cell_neutralise); without this, export -> edit -> import would change
    every such value.
    """
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_PREFIXES:
            text = text[1:].strip()
        return text or None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Excel stores every number as a float; 5.0 in a cell means 5
    return value


def _dataset_build(*, title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> tablib.Dataset:
    dataset = tablib.Dataset(title=title)
    dataset.headers = [cell_neutralise(header) for header in headers]
    for row in rows:
        dataset.append([cell_neutralise(value) for value in row])
    return dataset


# Column widths fit the header and the first rows: a write-only sheet takes them before its first row.
WIDTH_SAMPLE_ROWS = 1000


def _xlsx_sheet_write(sheet: WriteOnlyWorksheet, *, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Stream ``rows`` into ``sheet`` as they come, in the layout tablib's writer gave before:
    a bold header row frozen on top, widths fitted to the text, multi-line cells wrapped."""
    header = [_xlsx_cell(value) for value in headers]
    rows = iter(rows)
    sample = [[_xlsx_cell(value) for value in row] for row in itertools.islice(rows, WIDTH_SAMPLE_ROWS)]
    for column, values in enumerate(itertools.zip_longest(header, *sample), start=1):
        width = max((len(str(value)) for value in values if value is not None), default=0)
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"
    bold, wrap = Font(bold=True), Alignment(wrap_text=True)
    sheet.append([_styled(sheet, value, font=bold) for value in header])
    rest = ([_xlsx_cell(value) for value in row] for row in rows)
    for values in itertools.chain(sample, rest):
        sheet.append([_styled(sheet, v, alignment=wrap) if isinstance(v, str) and "\n" in v else v for v in values])


def _styled(sheet: WriteOnlyWorksheet, value: object, **style: object) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _xlsx_cell(value: object) -> object:
    value = cell_neutralise(value)
    if isinstance(value, str):
        # openpyxl refuses control characters (a stray \x07 in a description would fail the
        # whole export); show them as the replacement character instead.
        value = ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", value)
    return value
