"""Measure anomaly detectors on the labelled corpus: event-based precision, recall, F1, detection
delay and false alarms per healthy series-month, per detector and per anomaly type, and speed.

Each series is streamed point by point into a fresh detector (no look-ahead); the answers are
then scored against the labelled windows (see ``series_score`` for the definitions).

    python -m bench.anomaly.evaluate --seed 7 --series 200 --output /tmp/eval.md

Adding a detector is one line in ``DETECTORS``: a name and a factory that takes the series' step in
seconds and returns an object with ``update(ts, value)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.anomaly.corpus import ANOMALY_KINDS, HEALTHY, HOURLY, Series, Window, corpus_generate, corpus_read
from bench.anomaly.detectors import Detector, RollingZScore, RupturesChange, StaticThreshold, StlResidual

TOLERANCE = 3  # points: an alarm this soon after a short window's start still detects it
SCORE_ALARM = 0.5  # a detector answering with a score alarms at and above this


def _week(step: int) -> int:
    return 7 * 86400 // step


def _stl(step: int, log: bool = False, k: float = 4.0) -> Detector:
    # Hourly: a daily period over a week, refit daily (robust STL: 15 ms a fit). Five-minute data:
    # a daily period over four days, refit daily, not robust (a robust fit of 1,152 points takes
    # over a second; a weekly period, 2,016 points a cycle, is out of reach either way).
    if step == HOURLY:
        return StlResidual(period=24, window=7 * 24, refit=24, k=k, log=log)
    return StlResidual(period=288, window=4 * 288, refit=288, robust=False, k=k, log=log)


def _platform(sensitivity: str) -> Callable[[int], Detector]:
    """The platform's detector (incidents/anomaly/, pure Python) at one of its named sensitivities."""

    def make(step: int) -> Detector:
        from incidents.anomaly import SeriesDetector

        return SeriesDetector(sensitivity=sensitivity)

    return make


DETECTORS: dict[str, Callable[[int], Detector]] = {
    "static_threshold": lambda step: StaticThreshold(k=3.0),
    "rolling_zscore": lambda step: RollingZScore(window=_week(step), z=3.0),
    "stl_residual": _stl,
    "stl_residual_log": lambda step: _stl(step, log=True, k=5.0),
    "ruptures_pelt": lambda step: RupturesChange(window=96, refit=24),
    "platform_low": _platform("low"),
    "platform": _platform("medium"),
    "platform_high": _platform("high"),
}
BASELINES = ("static_threshold", "rolling_zscore")


def is_alarm(answer: Any) -> bool:
    """A detector's answer as an alarm: a bool, a score (``>= SCORE_ALARM``) or a point with ``is_anomaly``."""
    if hasattr(answer, "is_anomaly"):
        return bool(answer.is_anomaly)
    if isinstance(answer, bool):
        return answer
    return answer is not None and float(answer) >= SCORE_ALARM


@dataclass
class Score:
    """Event counts of one series (or a sum of them)."""

    tp: int = 0  # labelled windows detected
    fn: int = 0  # labelled windows missed
    fp: int = 0  # alarm events outside every window
    delays: list[int] = field(default_factory=list)  # points from window start to first alarm, per detected window

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        self.delays.extend(other.delays)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0


def alarm_events(alarms: Sequence[bool]) -> list[tuple[int, int]]:
    """Runs of consecutive alarmed points as ``[start, end)``: one event each."""
    events, start = [], None
    for i, alarm in enumerate(alarms):
        if alarm and start is None:
            start = i
        elif not alarm and start is not None:
            events.append((start, i))
            start = None
    if start is not None:
        events.append((start, len(alarms)))
    return events


def series_score(windows: Iterable[Window], alarms: Sequence[bool], tolerance: int = TOLERANCE) -> Score:
    """Score one series' alarms against its labelled windows.

    - A window ``[start, end)`` is detected (a true positive) if an alarm falls in
      ``[start, max(end, start + tolerance))``: inside it, or for a window shorter than the
      tolerance, up to ``tolerance`` points after its start. Otherwise it is missed (a false
      negative). Its delay is the number of points from its start to that first alarm.
    - An alarm event (a run of consecutive alarmed points, counted once) that touches no window's
      detection zone is a false positive, unless it starts within ``tolerance`` points after a
      window ends: the return to normal after an anomaly is not a new one.
    """
    windows = list(windows)
    zones = [(w.start, max(w.end, w.start + tolerance)) for w in windows]
    score = Score()
    for start, end in zones:
        first = next((i for i in range(start, min(end, len(alarms))) if alarms[i]), None)
        if first is None:
            score.fn += 1
        else:
            score.tp += 1
            score.delays.append(first - start)
    for ev_start, ev_end in alarm_events(alarms):
        touches = any(ev_start < z_end and z_start < ev_end for z_start, z_end in zones)
        recovering = any(z_end <= ev_start < z_end + tolerance for _, z_end in zones)
        if not touches and not recovering:
            score.fp += 1
    return score


@dataclass
class Result:
    """One detector over the corpus."""

    detector: str
    by_kind: dict[str, Score] = field(default_factory=dict)
    healthy_false_alarms: int = 0
    healthy_months: float = 0.0
    rows: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def total(self) -> Score:
        total = Score()
        for score in self.by_kind.values():
            total.add(score)
        total.fp += self.healthy_false_alarms
        return total

    @property
    def false_alarms_per_month(self) -> float | None:
        return self.healthy_false_alarms / self.healthy_months if self.healthy_months else None

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.seconds else None


def series_stream(factory: Callable[[int], Detector], series: Series) -> tuple[list[bool], float]:
    """Feed one series point by point to a fresh detector; return its alarms and the seconds spent."""
    detector = factory(series.step)
    update = detector.update
    started = time.perf_counter()
    answers = [update(ts, value) for ts, value in zip(series.timestamps, series.values, strict=True)]
    elapsed = time.perf_counter() - started
    return [is_alarm(a) for a in answers], elapsed


def detector_evaluate(name: str, corpus: Sequence[Series], tolerance: int = TOLERANCE) -> Result:
    """Run one registered detector over every series of the corpus and score it."""
    result = Result(name, by_kind={kind: Score() for kind in ANOMALY_KINDS})
    factory = DETECTORS[name]
    for series in corpus:
        alarms, seconds = series_stream(factory, series)
        result.rows += len(series.values)
        result.seconds += seconds
        score = series_score(series.windows, alarms, tolerance)
        if series.kind == HEALTHY:
            result.healthy_false_alarms += score.fp
            result.healthy_months += series.months
        else:
            result.by_kind[series.kind].add(score)
    return result


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report_markdown(results: Sequence[Result], source: str, tolerance: int) -> str:
    """The Markdown report: per detector × anomaly type, then one summary line per detector."""
    lines = [
        f"Corpus: {source}; tolerance {tolerance} points.",
        "",
        "| Detector | Anomaly type | P | R | F1 | Median delay (points) | TP | FN | FP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.error:
            continue
        for kind, s in result.by_kind.items():
            delay = statistics.median(s.delays) if s.delays else None
            lines.append(
                f"| {result.detector} | {kind} | {_fmt(s.precision)} | {_fmt(s.recall)} | {_fmt(s.f1)} "
                f"| {_fmt(delay, 1)} | {s.tp} | {s.fn} | {s.fp} |"
            )
    lines += [
        "",
        "| Detector | F1 (all types) | False alarms per healthy series-month | Rows/s | Seconds |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        if result.error:
            lines.append(f"| {result.detector} | not run: {result.error} | | | |")
            continue
        lines.append(
            f"| {result.detector} | {_fmt(result.total.f1)} | {_fmt(result.false_alarms_per_month)} "
            f"| {_fmt(result.rows_per_second, 0)} | {result.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--tolerance", type=int, default=TOLERANCE)
    parser.add_argument(
        "--detectors", default=",".join(DETECTORS), help=f"comma-separated, from: {', '.join(DETECTORS)}"
    )
    parser.add_argument("--corpus", type=Path, help="read the corpus from this directory instead of generating it")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s): {', '.join(unknown)}")
    corpus = corpus_read(args.corpus) if args.corpus else corpus_generate(args.seed, args.series)
    results = []
    for name in names:
        try:
            results.append(detector_evaluate(name, corpus, args.tolerance))
        except ImportError as exc:
            # A candidate whose library is not installed (or the platform detector before it exists).
            results.append(Result(name, error=f"cannot import {exc.name or exc}"))
        print(f"{name}: done", file=sys.stderr)
    source = f"{args.corpus}, {len(corpus)} series" if args.corpus else f"seed {args.seed}, {len(corpus)} series"
    report = report_markdown(results, source, args.tolerance)
    print(report, end="")
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
