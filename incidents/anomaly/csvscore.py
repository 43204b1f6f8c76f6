"""Score an exported series, row by row, as ``manage.py anomaly_score`` does.

Streams: one row is read, scored with the detector (which has seen only the rows before it)
and written before the next is read, so memory stays constant whatever the file's size. Bad
input stops the run with a ``SeriesInputError`` naming the row (the header is row 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from typing import TextIO

from incidents.anomaly.detector import SeriesDetector

OUTPUT_COLUMNS = ["timestamp", "value", "score", "expected_low", "expected_high", "is_anomaly", "learning"]


class SeriesInputError(ValueError):
    """The input file cannot be scored; the message names the row and the problem."""


def timestamp_parse(text: str) -> float:
    """Epoch seconds from an ISO 8601 timestamp with an offset or ``Z``, or from epoch seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"timestamp {text!r} is not a finite number")
        return seconds
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither ISO 8601 nor epoch seconds") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (add Z or +00:00)")
    return moment.timestamp()


def _number(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e15 else repr(value)


def series_score_csv(source: TextIO, target: TextIO, detector: SeriesDetector) -> int:
    """Score every row of ``source`` (CSV ``timestamp,value``) into ``target``; return the rows written."""
    rows = csv.reader(source)
    header = None
    line = 0
    for line, header in enumerate(rows, start=1):  # noqa: B007 - the header is the first non-blank row
        if any(cell.strip() for cell in header):
            break
    else:
        raise SeriesInputError("the file is empty (expected a header row: timestamp,value)")
    names = [cell.strip().lower() for cell in header]
    missing = [name for name in ("timestamp", "value") if name not in names]
    if missing:
        raise SeriesInputError(f"row {line}: missing column {', '.join(missing)} (the header must be timestamp,value)")
    ts_col, value_col = names.index("timestamp"), names.index("value")
    width = max(ts_col, value_col) + 1
    writer = csv.writer(target, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    written = 0
    previous: float | None = None
    for number, row in enumerate(rows, start=line + 1):
        if not row or not any(cell.strip() for cell in row):
            continue  # blank lines are skipped
        if len(row) < width:
            raise SeriesInputError(f"row {number}: expected {width} columns, found {len(row)}")
        ts_text, value_text = row[ts_col], row[value_col]
        try:
            ts = timestamp_parse(ts_text)
        except ValueError as exc:
            raise SeriesInputError(f"row {number}: {exc}") from None
        try:
            value = float(value_text)
        except ValueError:
            raise SeriesInputError(f"row {number}: value {value_text.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise SeriesInputError(f"row {number}: value {value_text.strip()!r} is NaN or infinite")
        if previous is not None and ts <= previous:
            problem = "duplicate timestamp" if ts == previous else "timestamp earlier than the row before (not sorted)"
            raise SeriesInputError(f"row {number}: {problem}: {ts_text.strip()}")
        previous = ts
        point = detector.update(ts, value)
        writer.writerow(
            (
                ts_text.strip(),
                value_text.strip(),
                f"{point.score:.4f}",
                _number(point.expected_low),
                _number(point.expected_high),
                "true" if point.is_anomaly else "false",
                "true" if point.learning else "false",
            )
        )
        written += 1
    return written
