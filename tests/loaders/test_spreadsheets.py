"""Spreadsheet import/export: valid files round-trip, every bad file is refused with a clear message.

All files are built for real with openpyxl, zipfile and plain bytes; nothing is mocked.
"""

from __future__ import annotations

import csv
import datetime
import io
import zipfile

import openpyxl
import pytest

from loaders.spreadsheets import (
    Sheet,
    SpreadsheetError,
    cell_neutralise,
    spreadsheet_read,
    spreadsheet_write,
)

MB = 1024 * 1024
OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def read(content: bytes, filename: str = "loaders.xlsx", *, max_bytes: int = 10 * MB, max_rows: int = 50_000) -> Sheet:
    return spreadsheet_read(content=content, filename=filename, max_bytes=max_bytes, max_rows=max_rows)


def refusal(content: bytes, filename: str = "loaders.xlsx", **limits: int) -> str:
    with pytest.raises(SpreadsheetError) as caught:
        read(content, filename, **limits)
    return caught.value.message


def xlsx(*rows: list[object]) -> bytes:
    """A workbook as Excel would save it, with ``rows`` on its only sheet."""
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    stream = io.BytesIO()
    workbook.save(stream)
    return stream.getvalue()


def zip_rewritten(
    content: bytes, *, add: dict[str, bytes] | None = None, patch: dict[str, bytes] | None = None
) -> bytes:
    """Copy a ZIP package, replacing members named in ``patch`` and appending those in ``add``."""
    patch = patch or {}
    stream = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, patch.get(member.filename, source.read(member)))
        for name, data in (add or {}).items():
            target.writestr(name, data)
    return stream.getvalue()


def zip_with_zeros(base: bytes, *, megabytes: int) -> bytes:
    """A real workbook plus one member of ``megabytes`` MB of zeros, deflated in chunks (a few hundred KB)."""
    stream = io.BytesIO(zip_rewritten(base))
    with zipfile.ZipFile(stream, "a", zipfile.ZIP_DEFLATED) as package, package.open("xl/media/image1.bin", "w") as out:
        chunk = bytes(MB)
        for _ in range(megabytes):
            out.write(chunk)
    return stream.getvalue()


# --- valid files ---------------------------------------------------------------------------------


def test_it_round_trips_an_xlsx_export():
    content = spreadsheet_write(
        headers=["Loader Code", " Name ", "Max Duration", "Starts"],
        rows=[
            ["SALES-DAILY", "  Sales  ", 5.0, datetime.datetime(2025, 3, 1, 2, 30)],
            [None, None, None, None],
            ["STOCK", "", 12, None],
        ],
        file_format="xlsx",
    )
    sheet = read(content)
    assert sheet.file_format == "xlsx"
    assert sheet.headers == ["loader code", "name", "max duration", "starts"]
    assert sheet.original_headers == ["Loader Code", "Name", "Max Duration", "Starts"]
    assert [row.number for row in sheet.rows] == [2, 4]
    first, second = (row.values for row in sheet.rows)
    assert first == {
        "loader code": "SALES-DAILY",
        "name": "Sales",
        "max duration": 5,
        "starts": datetime.datetime(2025, 3, 1, 2, 30),
    }
    assert type(first["max duration"]) is int
    assert second == {"loader code": "STOCK", "name": None, "max duration": 12, "starts": None}


def test_it_turns_whole_excel_floats_into_ints_and_keeps_fractions_and_bools():
    sheet = read(xlsx(["a", "b", "c"], [5.0, 2.5, True]))
    assert sheet.rows[0].values == {"a": 5, "b": 2.5, "c": True}
    assert type(sheet.rows[0].values["a"]) is int


def test_it_round_trips_a_csv_export():
    content = spreadsheet_write(
        headers=["Code", "Grace Minutes"], rows=[["SALES", 15], ["", ""], ["STOCK", "  7 "]], file_format="csv"
    )
    sheet = read(content, "loaders.csv")
    assert sheet.file_format == "csv"
    assert sheet.headers == ["code", "grace minutes"]
    assert [(row.number, row.values) for row in sheet.rows] == [
        (2, {"code": "SALES", "grace minutes": "15"}),  # the importer converts types, not the reader
        (4, {"code": "STOCK", "grace minutes": "7"}),
    ]


def test_it_reads_a_semicolon_csv_even_when_a_header_holds_a_comma():
    sheet = read(b"Code;Name, full;Team\nA;Sales, daily;Finance\n", "loaders.csv")
    assert sheet.headers == ["code", "name, full", "team"]
    assert sheet.rows[0].values == {"code": "A", "name, full": "Sales, daily", "team": "Finance"}


def test_it_reads_a_tab_separated_file():
    sheet = read(b"code\tname\nA\tSales\n", "loaders.txt")
    assert sheet.rows[0].values == {"code": "A", "name": "Sales"}


def test_it_strips_the_utf8_bom_excel_puts_in_front_of_a_csv():
    sheet = read("code,name\nA,Zürich\n".encode("utf-8-sig"), "loaders.csv")
    assert sheet.headers == ["code", "name"]
    assert sheet.rows[0].values["name"] == "Zürich"


def test_it_numbers_csv_rows_by_the_line_where_a_multi_line_record_starts():
    content = b'code,description\nA,"line one\nline two\nline three"\n\nB,plain\r\n'
    sheet = read(content, "loaders.csv")
    assert [(row.number, row.values["description"]) for row in sheet.rows] == [
        (2, "line one\nline two\nline three"),
        (6, "plain"),
    ]


def test_it_pads_short_csv_rows_and_ignores_trailing_empty_columns():
    sheet = read(b"code,name,,\nA\nB,Stock,,\n", "loaders.csv")
    assert sheet.headers == ["code", "name"]
    assert [row.values for row in sheet.rows] == [{"code": "A", "name": None}, {"code": "B", "name": "Stock"}]


def test_it_detects_the_type_from_the_content_not_the_name():
    assert read(xlsx(["code"], ["A"]), "export.csv").file_format == "xlsx"
    assert read(b"code\nA\n", "export.xlsx").file_format == "csv"


def test_it_reads_only_the_first_worksheet_even_when_another_is_active():
    workbook = openpyxl.Workbook()
    workbook.active.append(["code"])
    workbook.active.append(["FIRST"])
    workbook.create_sheet("notes").append(["column", "explanation"])
    workbook.active = 1
    stream = io.BytesIO()
    workbook.save(stream)
    sheet = read(stream.getvalue())
    assert sheet.headers == ["code"]
    assert sheet.rows[0].values == {"code": "FIRST"}


def test_it_keeps_excel_row_numbers_when_rows_are_missing_from_the_sheet():
    workbook = openpyxl.Workbook()
    workbook.active["A1"] = "code"
    workbook.active["A2"] = "A"
    workbook.active["A7"] = "B"
    stream = io.BytesIO()
    workbook.save(stream)
    assert [row.number for row in read(stream.getvalue()).rows] == [2, 7]


# --- export safety -------------------------------------------------------------------------------

DANGEROUS = ["=1+2", "+x", "-x", "@x", "\tx"]


def test_it_neutralises_formulas_in_an_xlsx_export():
    rows = [[text, -5] for text in DANGEROUS]
    content = spreadsheet_write(headers=["value", "number"], rows=rows, file_format="xlsx")
    worksheet = openpyxl.load_workbook(io.BytesIO(content)).worksheets[0]
    cells = list(worksheet.iter_rows(min_row=2, values_only=True))
    assert [value for value, _ in cells] == ["'=1+2", "'+x", "'-x", "'@x", "'\tx"]
    assert all(worksheet.cell(row=row, column=1).data_type == "s" for row in range(2, 7))
    assert {number for _, number in cells} == {-5}
    assert worksheet.cell(row=2, column=2).data_type == "n"


def test_it_neutralises_formulas_in_a_csv_export_and_writes_a_bom():
    rows = [[text, -5] for text in DANGEROUS]
    content = spreadsheet_write(headers=["value", "number"], rows=rows, file_format="csv")
    assert content.startswith(b"\xef\xbb\xbf")
    records = list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
    assert records[1:] == [["'=1+2", "-5"], ["'+x", "-5"], ["'-x", "-5"], ["'@x", "-5"], ["'\tx", "-5"]]


def test_it_leaves_numbers_and_harmless_text_alone():
    assert cell_neutralise(-5) == -5
    assert cell_neutralise(-2.5) == -2.5
    assert cell_neutralise(None) is None
    assert cell_neutralise("Sales - daily") == "Sales - daily"
    assert cell_neutralise("\rx") == "'\rx"


def test_it_gives_back_the_original_text_when_its_own_export_is_imported():
    for file_format in ("xlsx", "csv"):
        content = spreadsheet_write(headers=["value"], rows=[["=1+2"], ["-- nightly"]], file_format=file_format)
        sheet = read(content, f"loaders.{file_format}")
        assert [row.values["value"] for row in sheet.rows] == ["=1+2", "-- nightly"]


def test_it_replaces_control_characters_that_xlsx_cannot_hold():
    content = spreadsheet_write(headers=["name"], rows=[["bell\x07"]], file_format="xlsx")
    assert read(content).rows[0].values["name"] == "bell\N{REPLACEMENT CHARACTER}"


def test_it_writes_the_template_notes_as_the_second_sheet():
    content = spreadsheet_write(
        headers=["loader_code", "name"],
        rows=[["SALES-DAILY", "Sales"]],
        file_format="xlsx",
        notes=[("loader_code", "Upper-case letters, digits, - and _"), ("name", "=shown as text")],
        sheet_title="loaders",
    )
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    assert workbook.sheetnames == ["loaders", "notes"]
    assert list(workbook["notes"].values) == [
        ("column", "explanation"),
        ("loader_code", "Upper-case letters, digits, - and _"),
        ("name", "'=shown as text"),
    ]
    sheet = read(content)
    assert sheet.headers == ["loader_code", "name"]
    assert [row.values for row in sheet.rows] == [{"loader_code": "SALES-DAILY", "name": "Sales"}]


def test_it_refuses_a_notes_sheet_for_csv():
    with pytest.raises(ValueError, match="notes"):
        spreadsheet_write(headers=["a"], rows=[], file_format="csv", notes=[("a", "b")])


# --- refusals: the file itself -------------------------------------------------------------------


def test_it_refuses_a_file_over_the_size_limit_before_looking_at_it():
    assert refusal(b"\x00" * (MB + 1), max_bytes=MB) == "The file is 1.1 MB; the limit is 1 MB."
    assert refusal(xlsx(["code"], ["A"]), max_bytes=1000).startswith("The file is 0.1 MB; the limit is ")


def test_it_refuses_an_empty_file():
    assert refusal(b"") == "The file is empty."


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "loaders.xlsx"),
        (bytes(range(256)) * 8, "loaders.csv"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "loaders.xlsx"),
    ],
    ids=["png-named-xlsx", "binary-with-nul-named-csv", "pdf-named-xlsx"],
)
def test_it_refuses_files_that_are_not_spreadsheets(content, filename):
    assert refusal(content, filename) == "This is not a spreadsheet (.xlsx or .csv expected)."


def test_it_refuses_a_password_protected_or_legacy_xls_file():
    content = OLE2_SIGNATURE + bytes(504) + b"EncryptedPackage"
    assert refusal(content) == (
        "The file is password-protected or in the old .xls format; remove the password and save as .xlsx or .csv."
    )


MACRO_MESSAGE = "Macro-enabled workbooks (.xlsm) are not accepted; save as .xlsx."


def test_it_refuses_a_workbook_holding_a_vba_project():
    content = zip_rewritten(xlsx(["code"], ["A"]), add={"xl/vbaProject.bin": OLE2_SIGNATURE + bytes(500)})
    assert refusal(content, "loaders.xlsx") == MACRO_MESSAGE


def test_it_refuses_a_workbook_declaring_a_macro_enabled_content_type():
    base = xlsx(["code"], ["A"])
    with zipfile.ZipFile(io.BytesIO(base)) as package:
        types = package.read("[Content_Types].xml")
    macro_types = types.replace(
        b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
    )
    assert macro_types != types
    assert refusal(zip_rewritten(base, patch={"[Content_Types].xml": macro_types})) == MACRO_MESSAGE


def test_it_refuses_a_file_named_xlsm_even_without_macros():
    assert refusal(xlsx(["code"], ["A"]), "Loaders.XLSM") == MACRO_MESSAGE


def test_it_refuses_a_zip_bomb_from_the_declared_sizes_alone():
    content = zip_with_zeros(xlsx(["code"], ["A"]), megabytes=200)
    assert len(content) < MB  # 200 MB of zeros deflate to a few hundred KB
    assert refusal(content) == "The workbook expands to more than 200 MB when unpacked; it looks like a zip bomb."


def test_it_refuses_a_member_compressed_suspiciously_well():
    content = zip_with_zeros(xlsx(["code"], ["A"]), megabytes=5)
    assert refusal(content) == (
        "The workbook expands to more than 200 times its size when unpacked; it looks like a zip bomb."
    )


def test_it_refuses_a_package_with_too_many_members():
    content = zip_rewritten(xlsx(["code"], ["A"]), add={f"xl/media/{n}.txt": b"x" for n in range(1000)})
    assert refusal(content) == "The workbook holds 1009 parts (at most 1000 are accepted); it looks like a zip bomb."


def test_it_refuses_a_zip_that_is_not_a_workbook():
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as package:
        package.writestr("report.txt", "hello")
    assert refusal(stream.getvalue()) == "The file is a ZIP archive but not an Excel workbook; save it as .xlsx."


def test_it_refuses_a_truncated_zip():
    content = xlsx(["code"], ["A"])
    assert refusal(content[: len(content) // 2]) == "The file is damaged or not a spreadsheet."


def test_it_refuses_a_workbook_whose_sheet_is_broken():
    content = zip_rewritten(xlsx(["code"], ["A"]), patch={"xl/worksheets/sheet1.xml": b"<worksheet><sheetData><row"})
    assert refusal(content) == "The file is damaged or not a spreadsheet."


# --- refusals: the sheet -------------------------------------------------------------------------

EMPTY_MESSAGE = "The sheet is empty: the first row must hold the column names."


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (xlsx(), "loaders.xlsx"),
        (xlsx([None, None], ["A", "B"]), "loaders.xlsx"),
        (b"\n\n", "loaders.csv"),
        (b",,\nA,B\n", "loaders.csv"),
        (b"\xef\xbb\xbf", "loaders.csv"),
    ],
    ids=["xlsx-no-cells", "xlsx-blank-first-row", "csv-blank-lines", "csv-empty-header-cells", "csv-bom-only"],
)
def test_it_refuses_an_empty_sheet(content, filename):
    assert refusal(content, filename) == EMPTY_MESSAGE


@pytest.mark.parametrize(
    ("content", "filename"),
    [(xlsx(["code", "name"], [None, ""]), "loaders.xlsx"), (b"code,name\n\n , \n", "loaders.csv")],
    ids=["xlsx", "csv"],
)
def test_it_refuses_a_sheet_with_column_names_but_no_data(content, filename):
    assert refusal(content, filename) == "The sheet has column names but no data rows."


def test_it_refuses_a_blank_column_name_between_named_columns():
    assert refusal(xlsx(["code", None, "name"], ["A", "x", "B"])) == "Column 2 has no name."
    assert refusal(b"code, ,name\nA,x,B\n", "loaders.csv") == "Column 2 has no name."


def test_it_refuses_a_column_name_used_twice():
    content = xlsx(["Code", "name", "team", "owner", "tags", "paused", " CODE "], ["A"] * 7)
    assert refusal(content) == "Column 'code' appears twice (columns 1 and 7)."


def test_it_refuses_a_value_in_a_column_without_a_name():
    assert refusal(xlsx(["code", "name"], ["A", "B"], ["C", "D", "stray"])) == (
        "Row 3 has a value in column 3, which has no name."
    )


def test_it_refuses_more_rows_than_the_limit():
    rows = [["code"]] + [[f"L{n}"] for n in range(6)]
    assert refusal(xlsx(*rows), max_rows=5) == "The file has more than 5 data rows; split it."
    assert len(read(xlsx(*rows[:6]), max_rows=5).rows) == 5


def test_it_stops_reading_at_the_row_limit():
    # The unclosed quote after the limit would be an error if the reader went on.
    content = b"code\n" + b"".join(f"L{n}\n".encode() for n in range(6)) + b'"unclosed\n'
    assert refusal(content, "loaders.csv", max_rows=5) == "The file has more than 5 data rows; split it."


def test_it_refuses_a_csv_with_mixed_encodings_naming_the_line():
    content = "code,name\nA,Zürich\n".encode() + "B,Genève\n".encode("latin-1") + b"C,ok\n"
    assert refusal(content, "loaders.csv") == (
        "The CSV is not valid UTF-8 at line 3 (mixed or non-UTF-8 encoding); save it as 'CSV UTF-8'."
    )


def test_it_refuses_a_utf16_csv():
    content = "code,name\nA,B\n".encode("utf-16")
    assert refusal(content, "loaders.csv") == "The CSV is saved as UTF-16 (\"Unicode Text\"); save it as 'CSV UTF-8'."


def test_it_refuses_a_csv_with_an_unclosed_quote_naming_the_line():
    message = refusal(b'code,name\nA,"unclosed\nB,C\n', "loaders.csv")
    assert message.startswith("The CSV cannot be read at line 2 (")
    assert message.endswith("); check the quotes around cells.")


def test_it_lays_out_an_xlsx_export_for_reading():
    rows = [["SALES-DAILY", "Loads the sales\nof yesterday"], ["A", "short"]]
    content = spreadsheet_write(headers=["loader_code", "description"], rows=rows, file_format="xlsx")
    worksheet = openpyxl.load_workbook(io.BytesIO(content)).worksheets[0]
    assert worksheet.title == "loaders"
    assert worksheet["A1"].font.bold and not worksheet["A2"].font.bold
    assert worksheet.freeze_panes == "A2"  # the header stays in view
    assert worksheet.column_dimensions["A"].width == len("SALES-DAILY")
    assert worksheet.column_dimensions["B"].width == len("Loads the sales\nof yesterday")
    assert worksheet["B2"].alignment.wrap_text and not worksheet["B3"].alignment.wrap_text
