"""The two baselines behave as users know them: they flag a spike, not a flat or steady series."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bench.anomaly.detectors import RollingZScore, StaticThreshold
from bench.anomaly.evaluate import DETECTORS, main

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def stream(detector, values: list[float]) -> list[bool]:
    return [detector.update(T0 + timedelta(hours=i), v) for i, v in enumerate(values)]


def noisy(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    # Bounded noise: no point of a steady series may lie beyond 3 standard deviations.
    return [1000 + rng.uniform(-10, 10) for _ in range(n)]


def test_the_zscore_flags_a_spike_in_a_flat_series():
    values = noisy(300)
    values[250] = 2000
    alarms = stream(RollingZScore(window=168), values)
    assert alarms[250]
    assert sum(alarms) == 1


def test_the_zscore_does_not_flag_a_constant_series_and_flags_any_change_to_it():
    assert not any(stream(RollingZScore(window=168), [500.0] * 300))
    assert stream(RollingZScore(window=168), [500.0] * 100 + [501.0])[-1]


def test_the_zscore_is_silent_until_it_has_its_minimum_history():
    assert stream(RollingZScore(window=168, min_points=24), [1.0, 100.0] * 12) == [False] * 24


def test_the_static_threshold_learns_the_first_week_then_flags_what_leaves_its_band():
    values = noisy(24 * 7 + 50)
    values[24 * 7 + 10] = 2000
    values[5] = 5000  # inside the learning week: learnt, not flagged
    alarms = stream(StaticThreshold(k=3), values)
    assert not any(alarms[: 24 * 7])
    assert alarms[24 * 7 + 10]


def test_the_static_threshold_does_not_flag_a_flat_series():
    assert not any(stream(StaticThreshold(k=3), noisy(24 * 14)))


def _needs_a_missing_library(step: int):
    import a_library_that_is_not_installed  # noqa: F401

    raise AssertionError("unreachable")


def test_the_command_writes_the_markdown_report_and_says_which_detectors_could_not_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(DETECTORS, "needs_a_library", _needs_a_missing_library)
    output = tmp_path / "eval.md"
    detectors = "static_threshold,rolling_zscore,needs_a_library"
    main(["--seed", "3", "--series", "16", "--detectors", detectors, "--output", str(output)])
    report = output.read_text()
    assert report == capsys.readouterr().out
    assert "| rolling_zscore | spike |" in report
    assert "| static_threshold | late_run |" in report
    assert "False alarms per healthy series-month" in report
    assert "| needs_a_library | not run: cannot import a_library_that_is_not_installed |" in report


def test_the_command_refuses_an_unknown_detector():
    with pytest.raises(SystemExit):
        main(["--series", "8", "--detectors", "prophet"])
