"""A seeded, labelled corpus of ETL metric series to measure anomaly detectors on (issue #19).

Every series is one metric of one loader, sampled hourly or every 5 minutes, with the shapes ETL
metrics have: rows written (daily business-hours curve, quieter weekends, slow growth), run
duration (heavier night loads, slow creep), run start lateness (small, right-skewed) and error
counts (Poisson, mostly zero). A series carries at most one anomaly type, in one to three labelled
windows; a quarter of the series are healthy, which is what false alarms per series-month are
measured on.

A window is ``[start, end)`` in row indices of the series as written (missing points are absent
rows, as in a real export). For ``missing`` the window is the first row after the gap: a streaming
detector only learns of a gap when the next point arrives. No anomaly starts in the first
``WARMUP_DAYS`` days, so a detector (and the static threshold, tuned on the first week) has a clean
history to learn from.

Deterministic: the same seed gives the same corpus, byte for byte, on any machine (pure Python,
``random.Random`` seeded per series).

    python -m bench.anomaly.corpus --seed 7 --series 200 --output /tmp/corpus
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ANOMALY_KINDS = ("level_shift", "spike", "dip", "variance_change", "missing", "late_run")
HEALTHY = "healthy"
METRICS = ("rows_written", "run_duration", "lateness", "error_count")
# Which metrics an anomaly type is realistic on: a dip in an error count that is already zero
# means nothing, and a late run is by definition a lateness.
KIND_METRICS = {
    "level_shift": ("rows_written", "run_duration", "error_count"),
    "spike": ("rows_written", "run_duration", "error_count", "lateness"),
    "dip": ("rows_written", "run_duration"),
    "variance_change": ("rows_written", "run_duration"),
    "missing": METRICS,
    "late_run": ("lateness",),
    HEALTHY: METRICS,
}
# One series in four is healthy; the anomaly types share the rest equally.
KIND_CYCLE = (HEALTHY, *ANOMALY_KINDS[:3], HEALTHY, *ANOMALY_KINDS[3:])
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, so weekday effects line up with the calendar
WARMUP_DAYS = 8
HOURLY = 3600
FIVE_MINUTES = 300
DAYS = {HOURLY: 56, FIVE_MINUTES: 14}  # 8 weeks of hourly data, 2 weeks of 5-minute data


@dataclass(frozen=True)
class Window:
    """One labelled anomaly: rows ``[start, end)`` of its series."""

    kind: str
    start: int
    end: int


@dataclass
class Series:
    """One metric of one loader, as a monitoring export would give it, with its labels."""

    name: str
    metric: str
    step: int  # seconds between scheduled points
    kind: str  # an anomaly type, or HEALTHY
    timestamps: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    @property
    def points_per_day(self) -> int:
        return 86400 // self.step

    @property
    def months(self) -> float:
        """Length in 30-day months (the unit of false alarms per series-month)."""
        if not self.timestamps:
            return 0.0
        span = (self.timestamps[-1] - self.timestamps[0]).total_seconds() + self.step
        return span / (30 * 86400)


def _profile(rng: random.Random, metric: str) -> dict[str, float]:
    """The healthy shape of one series: level, seasonal amplitudes, trend and noise."""
    if metric == "rows_written":
        return {
            "level": 10 ** rng.uniform(3, 6),
            "daily": rng.uniform(0.3, 0.8),
            "weekend": rng.uniform(0.3, 0.8),  # weekend volume as a share of weekdays
            "trend": rng.uniform(-0.05, 0.25),  # relative change over 30 days
            "noise": rng.uniform(0.03, 0.1),
        }
    if metric == "run_duration":
        return {
            "level": rng.uniform(60, 3600),
            "daily": rng.uniform(0.1, 0.5),
            "weekend": rng.uniform(0.7, 1.0),
            "trend": rng.uniform(0.0, 0.15),
            "noise": rng.uniform(0.05, 0.15),
        }
    if metric == "lateness":
        return {"level": rng.uniform(5, 60), "daily": rng.uniform(0.0, 0.4), "weekend": 1.0, "trend": 0.0, "noise": 1.0}
    # error_count: the Poisson rate.
    return {"level": rng.uniform(0.3, 4), "daily": rng.uniform(0.2, 0.9), "weekend": rng.uniform(0.3, 1), "trend": 0.0}


def _seasonal(profile: dict[str, float], metric: str, ts: datetime) -> float:
    """The multiplicative daily × weekly factor at ``ts``."""
    hour = ts.hour + ts.minute / 60
    if metric == "run_duration":
        # Night loads are the big ones: peak at 02:00.
        daily = 1 + profile["daily"] * math.cos(2 * math.pi * (hour - 2) / 24)
    else:
        # Business-hours curve, peak at 14:00.
        daily = 1 + profile["daily"] * math.cos(2 * math.pi * (hour - 14) / 24)
    weekly = profile["weekend"] if ts.weekday() >= 5 else 1.0
    return daily * weekly


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small rates of error counts.
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def _healthy_value(rng: random.Random, profile: dict[str, float], metric: str, ts: datetime, t_days: float) -> float:
    seasonal = _seasonal(profile, metric, ts)
    trend = 1 + profile["trend"] * t_days / 30
    expected = profile["level"] * seasonal * trend
    if metric == "error_count":
        return float(_poisson(rng, expected))
    if metric == "lateness":
        # Seconds after the scheduled start: a floor plus an exponential tail.
        return round(2 + rng.expovariate(1 / expected), 1)
    return expected * math.exp(rng.gauss(0, profile["noise"]))


def _windows(rng: random.Random, kind: str, n: int, per_day: int) -> list[tuple[int, int]]:
    """One to three non-overlapping windows (in scheduled-point indices) after the warm-up."""
    lengths = {
        "level_shift": (per_day // 2, 3 * per_day),
        "spike": (1, 3),
        "dip": (1, 3),
        "variance_change": (per_day // 2, 2 * per_day),
        "missing": (3, max(4, per_day // 4)),
        "late_run": (1, 4),
    }[kind]
    first = WARMUP_DAYS * per_day
    windows: list[tuple[int, int]] = []
    for _ in range(rng.randint(1, 3)):
        for _attempt in range(20):
            length = rng.randint(*lengths)
            start = rng.randrange(first, n - length - per_day // 2)
            # Keep a day of clean data between windows, so each one is judged on its own.
            if all(start + length + per_day <= s or e + per_day <= start for s, e in windows):
                windows.append((start, start + length))
                break
    return sorted(windows)


def _apply(
    rng: random.Random, series: Series, profile: dict[str, float], raw: list[float], spans: list[tuple[int, int]]
) -> set[int]:
    """Distort ``raw`` inside each span for the series' anomaly type; return the indices to drop."""
    dropped: set[int] = set()
    for start, end in spans:
        kind, metric = series.kind, series.metric
        if kind == "level_shift":
            # A lost source (volume drops by a third or more) or a doubled feed; duration up.
            factor = rng.choice((rng.uniform(0.2, 0.6), rng.uniform(1.7, 3.0)))
            if metric == "error_count":
                factor = rng.uniform(4, 8)
            for i in range(start, end):
                raw[i] = float(_poisson(rng, profile["level"] * factor)) if metric == "error_count" else raw[i] * factor
        elif kind == "spike":
            for i in range(start, end):
                if metric == "error_count":
                    raw[i] += rng.randint(15, 60) + profile["level"] * 10
                elif metric == "lateness":
                    raw[i] += rng.uniform(15, 60) * 60
                else:
                    raw[i] *= rng.uniform(3, 8)
        elif kind == "dip":
            # A partial load: a small share of the usual rows, or a run that stopped early.
            for i in range(start, end):
                raw[i] *= rng.uniform(0.0, 0.3)
        elif kind == "variance_change":
            scale = rng.uniform(4, 8)
            for i in range(start, end):
                noise = math.log(raw[i] / _expected(profile, metric, series.timestamps[i], i, series))
                raw[i] = _expected(profile, metric, series.timestamps[i], i, series) * math.exp(noise * scale)
        elif kind == "late_run":
            # The run starts 20 minutes to 3 hours late (an upstream file that did not arrive).
            for i in range(start, end):
                raw[i] += rng.uniform(20, 180) * 60
        elif kind == "missing":
            dropped.update(range(start, end))
    return dropped


def _expected(profile: dict[str, float], metric: str, ts: datetime, i: int, series: Series) -> float:
    t_days = i * series.step / 86400
    return profile["level"] * _seasonal(profile, metric, ts) * (1 + profile["trend"] * t_days / 30)


def series_generate(seed: int, index: int) -> Series:
    """The ``index``-th series of the corpus for ``seed`` (independent of the corpus size)."""
    rng = random.Random(seed * 1_000_003 + index)
    kind = KIND_CYCLE[index % len(KIND_CYCLE)]
    metric = rng.choice(KIND_METRICS[kind])
    step = FIVE_MINUTES if index % 3 == 2 else HOURLY
    per_day = 86400 // step
    n = DAYS[step] * per_day
    series = Series(name=f"{kind}-{metric}-{index:04d}", metric=metric, step=step, kind=kind)
    series.timestamps = [START + timedelta(seconds=i * step) for i in range(n)]
    profile = _profile(rng, metric)
    raw = [_healthy_value(rng, profile, metric, ts, i * step / 86400) for i, ts in enumerate(series.timestamps)]
    spans = [] if kind == HEALTHY else _windows(rng, kind, n, per_day)
    dropped = _apply(rng, series, profile, raw, spans)
    keep = [i for i in range(n) if i not in dropped]
    # Scheduled index → row index once the missing points are gone.
    row_of = {i: r for r, i in enumerate(keep)}
    for start, end in spans:
        if kind == "missing":
            series.windows.append(Window(kind, row_of[end], row_of[end] + 1))
        else:
            series.windows.append(Window(kind, row_of[start], row_of[end - 1] + 1))
    series.timestamps = [series.timestamps[i] for i in keep]
    integral = metric in ("rows_written", "error_count")
    series.values = [float(round(max(raw[i], 0.0))) if integral else round(max(raw[i], 0.0), 3) for i in keep]
    return series


def corpus_generate(seed: int = 7, count: int = 200) -> list[Series]:
    """The labelled corpus: ``count`` series, every anomaly type and healthy ones among them."""
    return [series_generate(seed, i) for i in range(count)]


def corpus_write(corpus: list[Series], directory: Path) -> Path:
    """Write one ``<name>.csv`` (``timestamp,value``) per series and ``labels.json``; return the latter."""
    directory.mkdir(parents=True, exist_ok=True)
    labels = []
    for series in corpus:
        with (directory / f"{series.name}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("timestamp", "value"))
            for ts, value in zip(series.timestamps, series.values, strict=True):
                writer.writerow((ts.isoformat(), value))
        labels.append(
            {
                "series": series.name,
                "file": f"{series.name}.csv",
                "metric": series.metric,
                "step_seconds": series.step,
                "kind": series.kind,
                "rows": len(series.values),
                "windows": [
                    {
                        "kind": w.kind,
                        "start": w.start,
                        "end": w.end,
                        "start_timestamp": series.timestamps[w.start].isoformat(),
                        "end_timestamp": series.timestamps[w.end - 1].isoformat(),
                    }
                    for w in series.windows
                ],
            }
        )
    path = directory / "labels.json"
    path.write_text(json.dumps({"windows_are": "[start, end) row indices", "series": labels}, indent=1) + "\n")
    return path


def corpus_read(directory: Path) -> list[Series]:
    """The corpus ``corpus_write`` wrote to ``directory`` (or one edited by hand, in that format)."""
    labels = json.loads((directory / "labels.json").read_text())["series"]
    corpus = []
    for entry in labels:
        series = Series(name=entry["series"], metric=entry["metric"], step=entry["step_seconds"], kind=entry["kind"])
        with (directory / entry["file"]).open(newline="") as fh:
            for row in csv.DictReader(fh):
                series.timestamps.append(datetime.fromisoformat(row["timestamp"]))
                series.values.append(float(row["value"]))
        series.windows = [Window(w["kind"], w["start"], w["end"]) for w in entry["windows"]]
        corpus.append(series)
    return corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--output", type=Path, required=True, help="directory for the CSV files and labels.json")
    args = parser.parse_args(argv)
    corpus = corpus_generate(args.seed, args.series)
    path = corpus_write(corpus, args.output)
    print(f"{len(corpus)} series, {sum(len(s.values) for s in corpus)} rows; labels in {path}")


if __name__ == "__main__":
    main()
