"""``SeriesDetector.update`` throughput and the cost of its JSON state, one core, no Django.

The engine runs about 1,000 series per detection cycle, one ``update`` each, and keeps every
series' detector state as JSON between cycles; a backtest replays about a million points.

Method
------
1. 200 hourly series of 8 weeks (rows written: a daily wave, quieter weekends, 3 % noise in
   ratio, a spike now and then), timestamps as epoch seconds; seasonality ``auto`` (all three
   candidate profiles kept), sensitivity ``medium``. Best of ``--repeat`` timed passes over the
   same points: updates per second, single core.
2. The state after the last point: ``json.dumps(detector.to_dict())`` then
   ``SeriesDetector.from_dict(json.loads(...))``, per series, in microseconds, and its size.

    python bench/bench_anomaly_update.py [--series 200] [--repeat 3]

Target: ≥ 150,000 updates/s in ``auto`` on hourly data.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from incidents.anomaly import SeriesDetector

TARGET_UPDATES_PER_S = 150_000
MONDAY = 1767571200.0  # 2026-01-05 00:00 UTC
HOURS = 8 * 7 * 24


def series_points(index: int) -> list[tuple[float, float]]:
    """One hourly series of rows written, deterministic per ``index``."""
    rng = random.Random(index)
    level = 10 ** rng.uniform(3, 6)
    points = []
    for hour in range(HOURS):
        value = level * (1 + 0.5 * math.cos(2 * math.pi * (hour % 24 - 14) / 24))
        if (hour // 24) % 7 >= 5:
            value *= 0.5
        value *= math.exp(rng.gauss(0.0, 0.03))
        if rng.random() < 0.002:
            value *= 4
        points.append((MONDAY + hour * 3600.0, round(value)))
    return points


def updates_timed(corpus: list[list[tuple[float, float]]]) -> tuple[float, list[SeriesDetector]]:
    detectors = []
    started = time.perf_counter()
    for points in corpus:
        detector = SeriesDetector(sensitivity="medium")
        update = detector.update
        for ts, value in points:
            update(ts, value)
        detectors.append(detector)
    return time.perf_counter() - started, detectors


def state_timed(detectors: list[SeriesDetector]) -> tuple[float, float, int]:
    """Seconds per series to dump and to load the state as JSON, and the mean size in bytes."""
    started = time.perf_counter()
    texts = [json.dumps(d.to_dict()) for d in detectors]
    dumped = time.perf_counter()
    for text in texts:
        SeriesDetector.from_dict(json.loads(text))
    loaded = time.perf_counter()
    n = len(detectors)
    return (dumped - started) / n, (loaded - dumped) / n, sum(len(t) for t in texts) // n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    corpus = [series_points(i) for i in range(args.series)]
    points = sum(len(p) for p in corpus)
    best = math.inf
    detectors: list[SeriesDetector] = []
    for _ in range(args.repeat):
        seconds, detectors = updates_timed(corpus)
        best = min(best, seconds)
    dump, load, size = state_timed(detectors)
    rate = points / best
    verdict = "meets" if rate >= TARGET_UPDATES_PER_S else "misses"
    print(f"{args.series} hourly series, {points:,} points, seasonality auto, best of {args.repeat}")
    print(f"update: {rate:,.0f} updates/s ({1e6 / rate:.2f} µs each; {verdict} the {TARGET_UPDATES_PER_S:,} target)")
    print(
        f"state: to_dict + json.dumps {dump * 1e6:.0f} µs, json.loads + from_dict {load * 1e6:.0f} µs, {size:,} bytes"
    )


if __name__ == "__main__":
    main()
