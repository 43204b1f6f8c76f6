"""``manage.py anomaly_score``: streams a series through the detector; bad input is a clear error."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from incidents.anomaly import SeriesDetector
from incidents.anomaly.csvscore import OUTPUT_COLUMNS

MONDAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def hourly_rows(hours: int, seed: int = 1):
    rng = random.Random(seed)
    for hour in range(hours):
        moment = MONDAY + dt.timedelta(hours=hour)
        value = 1000 + 300 * math.sin(2 * math.pi * (hour % 24) / 24) + rng.gauss(0, 20)
        yield moment, round(value, 2)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def score_file(tmp_path: Path, text: str, **options) -> list[dict[str, str]]:
    source = write_csv(tmp_path / "series.csv", text)
    target = tmp_path / "scores.csv"
    call_command("anomaly_score", input=str(source), output=str(target), stderr=io.StringIO(), **options)
    with target.open(newline="") as handle:
        return list(csv.DictReader(handle))


def series_text(hours: int, iso: bool = True) -> str:
    lines = ["timestamp,value"]
    for moment, value in hourly_rows(hours):
        stamp = moment.isoformat().replace("+00:00", "Z") if iso else str(int(moment.timestamp()))
        lines.append(f"{stamp},{value}")
    return "\n".join(lines) + "\n"


def test_it_writes_one_scored_row_per_input_row(tmp_path):
    rows = score_file(tmp_path, series_text(24 * 12))
    assert len(rows) == 24 * 12
    assert list(rows[0]) == OUTPUT_COLUMNS
    assert rows[0]["timestamp"] == "2026-01-05T00:00:00Z"
    assert rows[0]["learning"] == "true" and rows[-1]["learning"] == "false"
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert all(float(r["expected_low"]) <= float(r["expected_high"]) for r in rows)
    assert {r["is_anomaly"] for r in rows} <= {"true", "false"}


def test_it_scores_as_the_detector_does_without_look_ahead(tmp_path):
    text = series_text(24 * 12)
    full = score_file(tmp_path, text, sensitivity="high", direction="down", seasonality="daily")
    detector = SeriesDetector(sensitivity="high", direction="down", seasonality="daily")
    expected = [detector.update(moment, value) for moment, value in hourly_rows(24 * 12)]
    assert [float(r["score"]) for r in full] == [round(p.score, 4) for p in expected]
    assert [r["is_anomaly"] == "true" for r in full] == [p.is_anomaly for p in expected]
    # The first 200 rows score the same when the rest of the file is not there.
    head = "\n".join(text.splitlines()[:201]) + "\n"
    assert score_file(tmp_path, head, sensitivity="high", direction="down", seasonality="daily") == full[:200]


def test_epoch_seconds_offsets_and_blank_lines_are_read(tmp_path):
    iso = score_file(tmp_path, series_text(48))
    epoch = score_file(tmp_path, series_text(48, iso=False))
    assert [r["score"] for r in iso] == [r["score"] for r in epoch]
    text = "timestamp,value\n\n2026-01-05T02:00:00+02:00,5\n   \n2026-01-05T01:00:00Z,6\n"
    rows = score_file(tmp_path, text)
    assert [r["value"] for r in rows] == ["5", "6"]


def test_extra_columns_and_any_column_order_are_accepted(tmp_path):
    rows = score_file(tmp_path, "loader,value,timestamp\nA,5,1767571200\nA,6,1767574800\n")
    assert [(r["timestamp"], r["value"]) for r in rows] == [("1767571200", "5"), ("1767574800", "6")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("time,value\n1767571200,5\n", "row 1: missing column timestamp"),
        ("timestamp\n1767571200\n", "row 1: missing column value"),
        ("timestamp,value\n1767571200,5\n1767574800,abc\n", "row 3: value 'abc' is not a number"),
        ("timestamp,value\n1767571200,5\n1767574800,\n", "row 3: value '' is not a number"),
        ("timestamp,value\n1767571200,NaN\n", "row 2: value 'NaN' is NaN or infinite"),
        ("timestamp,value\n1767571200,inf\n", "row 2: value 'inf' is NaN or infinite"),
        ("timestamp,value\n1767571200,5\n\n1767571200,6\n", "row 4: duplicate timestamp: 1767571200"),
        (
            "timestamp,value\n2026-01-05T01:00:00Z,5\n2026-01-05T00:00:00Z,6\n",
            "row 3: timestamp earlier than the row before (not sorted): 2026-01-05T00:00:00Z",
        ),
        ("timestamp,value\n2026-01-05T01:00:00Z,5\n2026-01-05T02:00:00+01:00,6\n", "row 3: duplicate timestamp"),
        ("timestamp,value\n2026-01-05 01:00:00,5\n", "row 2: timestamp '2026-01-05 01:00:00' has no UTC offset"),
        ("timestamp,value\nyesterday,5\n", "row 2: timestamp 'yesterday' is neither ISO 8601 nor epoch seconds"),
        ("timestamp,value\nnan,5\n", "row 2: timestamp 'nan' is not a finite number"),
        ("timestamp,value\n1767571200\n", "row 2: expected 2 columns, found 1"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_row(tmp_path, text, message):
    with pytest.raises(CommandError) as caught:
        score_file(tmp_path, text)
    assert message in str(caught.value)


def test_a_missing_input_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"cannot open .*nothing\.csv: No such file"):
        call_command("anomaly_score", input=str(tmp_path / "nothing.csv"), output=str(tmp_path / "out.csv"))


def test_bad_input_from_the_command_line_exits_without_a_traceback(tmp_path):

    source = write_csv(tmp_path / "bad.csv", "timestamp,value\n1767571200,5\n1767571100,6\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "anomaly_score", "--input", str(source), "--output", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "CommandError: row 3: timestamp earlier than the row before (not sorted): 1767571100" in result.stderr
    assert "Traceback" not in result.stderr


def test_dash_reads_standard_input_and_writes_standard_output(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(series_text(30)))
    out = io.StringIO()
    call_command("anomaly_score", input="-", output="-", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(OUTPUT_COLUMNS)
    assert len(lines) == 31


def test_a_large_file_streams_in_bounded_memory(tmp_path):
    rows = 100_000  # traced by tracemalloc, 100,000 rows take about 12 s
    source = tmp_path / "big.csv"
    with source.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,value\n")
        start = int(MONDAY.timestamp())
        rng = random.Random(2)
        for i in range(rows):
            handle.write(f"{start + 300 * i},{1000 + rng.gauss(0, 20):.2f}\n")  # five-minute data
    target = tmp_path / "scores.csv"
    tracemalloc.start()
    try:
        call_command("anomaly_score", input=str(source), output=str(target), stderr=io.StringIO())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The file is about 2 MB and its scores about 5 MB: holding either, or the parsed rows, would show here.
    assert peak < 1_000_000, peak
    with target.open() as handle:
        assert sum(1 for _ in handle) == rows + 1


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes(b"timestamp,value\n1767571200,5\n1767574800,\xff\n")
    with pytest.raises(CommandError, match="the input is not UTF-8 text"):
        call_command("anomaly_score", input=str(source), output=str(tmp_path / "out.csv"), stderr=io.StringIO())


def test_a_header_without_rows_gives_a_header_without_rows(tmp_path):
    assert score_file(tmp_path, "timestamp,value\n") == []
    assert (tmp_path / "scores.csv").read_text() == ",".join(OUTPUT_COLUMNS) + "\n"
