"""``manage.py anomaly_score`` on a 1-million-row CSV: throughput in rows/s, memory (issue #19).

Method
------
1. Write a CSV of 1,000,000 rows (``timestamp,value``; ISO 8601 timestamps with ``Z``, five
   minutes apart, ~9.5 years): a daily wave, a weekend dip, noise, and a spike or a dip every
   few days, so the detector takes every path (learning, alarms, shifts).
2. Baseline in the same run: the same file read and written back with ``csv.reader`` and
   ``csv.writer`` (what any streaming CSV tool pays), timed before and after the command so
   noise from the neighbours hits both.
3. The command, in process (``call_command``), file to file, timed; the peak resident memory
   of the process before and after (``ru_maxrss``): it streams, so the peak must not grow with
   the file.
4. The detector alone: ``SeriesDetector.update`` on the same rows already parsed, timed.

Target: ``anomaly_score`` ≥ 20,000 rows/s. The database is not used.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import random
import resource
import tempfile
import time
from pathlib import Path

from django.core.management import call_command

from incidents.anomaly import SeriesDetector

ROWS = 1_000_000
TARGET_ROWS_PER_S = 20_000
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "anomaly_score.md"
START = dt.datetime(2023, 1, 2, tzinfo=dt.UTC)


def _values(rows: int):
    rng = random.Random(19)
    step = dt.timedelta(minutes=5)
    moment = START
    for i in range(rows):
        hour = (i * 5 / 60) % 24
        value = 1000 + 400 * math.sin(2 * math.pi * hour / 24)
        if moment.weekday() >= 5:
            value *= 0.6
        value += rng.gauss(0, 25)
        if i % 1500 == 700:
            value *= 3 if i % 3000 == 700 else 0.3
        yield moment, value
        moment += step


def _write_series(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("timestamp,value\n")
        for moment, value in _values(rows):
            handle.write(f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')},{value:.2f}\n")


def _copy(source: Path, target: Path) -> None:
    with source.open(newline="") as src, target.open("w", newline="") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        for row in csv.reader(src):
            writer.writerow(row)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> list[str]:
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-anomaly-") as tmp:
        source, copied, scored = Path(tmp) / "series.csv", Path(tmp) / "copy.csv", Path(tmp) / "scores.csv"
        t0 = time.perf_counter()
        _write_series(source, ROWS)
        print(f"wrote {ROWS:,} rows ({source.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")

        copy_times = []
        t0 = time.perf_counter()
        _copy(source, copied)
        copy_times.append(time.perf_counter() - t0)

        rss_before = _max_rss_mb()
        t0 = time.perf_counter()
        call_command("anomaly_score", input=str(source), output=str(scored), stderr=io.StringIO())
        command_s = time.perf_counter() - t0
        rss_after = _max_rss_mb()

        t0 = time.perf_counter()
        _copy(source, copied)
        copy_times.append(time.perf_counter() - t0)

        with scored.open() as handle:
            lines = sum(1 for _ in handle)
            assert lines == ROWS + 1, f"{lines - 1} rows scored, expected {ROWS}"
        with scored.open(newline="") as handle:
            flagged = sum(1 for row in csv.DictReader(handle) if row["is_anomaly"] == "true")

    parsed = [(moment.timestamp(), value) for moment, value in _values(ROWS)]
    detector = SeriesDetector()
    t0 = time.perf_counter()
    for ts, value in parsed:
        detector.update(ts, value)
    update_s = time.perf_counter() - t0

    copy_s = min(copy_times)
    rate = ROWS / command_s
    report = [
        "| What | Time | Rows/s | vs. plain CSV copy |",
        "|---|---|---|---|",
        f"| plain `csv` read + write (baseline, best of 2) | {copy_s:.1f} s | {ROWS / copy_s:,.0f} | 1.0 × |",
        f"| `manage.py anomaly_score` (file to file) | {command_s:.1f} s | **{rate:,.0f}** "
        f"| {command_s / copy_s:.1f} × |",
        f"| `SeriesDetector.update` alone (rows parsed) | {update_s:.1f} s | {ROWS / update_s:,.0f} | — |",
        "",
        f"Peak resident memory of the process: {rss_before:.0f} MB before the command, {rss_after:.0f} MB after "
        f"(growth {rss_after - rss_before:.1f} MB for {ROWS:,} rows). Rows flagged: {flagged:,}. "
        f"State of one detector as JSON: {len(json.dumps(detector.to_dict())):,} bytes.",
    ]
    print("\n".join(report))
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text("# Anomaly scoring benchmark\n\n" + "\n".join(report) + "\n")
    if rate < TARGET_ROWS_PER_S:
        missed.append(f"anomaly_score: {rate:,.0f} rows/s < {TARGET_ROWS_PER_S:,}")
    return missed
