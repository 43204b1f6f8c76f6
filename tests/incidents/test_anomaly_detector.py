"""The streaming anomaly detector: no look-ahead, learning, seasonality, drops, spikes, shifts, restarts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
import subprocess
import sys
from collections.abc import Callable

import pytest

from incidents.anomaly import Point, SeriesDetector
from incidents.anomaly.detector import SENSITIVITY_Z

MONDAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
HOUR = 3600.0
DAY = 24


def weekly_volume(hour: int, rng: random.Random) -> float:
    """Rows per hour of a loader: a daily wave, half the volume at the weekend, some noise.

    The noise is a share of the volume (3 %), as with real loads: a quiet Sunday night varies by
    fewer rows than a busy Tuesday afternoon."""
    base = 1000.0 + 400.0 * math.sin(2 * math.pi * (hour % 24) / 24)
    if (hour // 24) % 7 >= 5:
        base *= 0.5
    return base * math.exp(rng.gauss(0.0, 0.03))


def series(days: int, seed: int = 7, change: Callable[[int, float], float] | None = None) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    start = MONDAY.timestamp()
    rows = []
    for hour in range(days * DAY):
        value = weekly_volume(hour, rng)
        rows.append((start + hour * HOUR, change(hour, value) if change else value))
    return rows


def score(rows: list[tuple[float, float]], detector: SeriesDetector | None = None) -> list[Point]:
    detector = detector or SeriesDetector()
    return [detector.update(ts, value) for ts, value in rows]


def anomalies(points: list[Point], since: int = 0) -> list[int]:
    """Hours (counted from ``since``) flagged as anomalies."""
    return [i - since for i, p in enumerate(points) if p.is_anomaly and i >= since]


def test_it_never_looks_ahead():
    rows = series(40, change=lambda h, v: v * 0.6 if 30 * DAY <= h < 31 * DAY else v)
    for n in (1, 50, 24 * 9, 30 * DAY + 5):
        assert score(rows[:n]) == score(rows)[:n]


def test_it_is_learning_until_the_minimum_history():
    points = score(series(20))
    learning = [p.learning for p in points]
    first_ready = learning.index(False)
    assert first_ready == 8 * DAY  # min_span_hours: eight days, so a week has been seen once
    assert not any(learning[first_ready:])
    assert not any(p.is_anomaly for p in points[:first_ready])
    assert all(p.score == 0.0 for p in points[:first_ready])


def test_a_weekly_pattern_does_not_alarm_and_is_detected_as_weekly():
    for seed in range(5):
        points = score(series(42, seed=seed))
        assert anomalies(points) == []
        assert points[-1].seasonality == "weekly"


def test_a_daily_pattern_is_detected_as_daily_and_a_flat_series_as_none():
    rng = random.Random(3)
    start = MONDAY.timestamp()
    daily = [
        (start + h * HOUR, 500 + 200 * math.sin(2 * math.pi * (h % 24) / 24) + rng.gauss(0, 10))
        for h in range(30 * DAY)
    ]
    flat = [(start + h * HOUR, 500 + rng.gauss(0, 10)) for h in range(30 * DAY)]
    assert score(daily)[-1].seasonality == "daily"
    assert score(flat)[-1].seasonality == "none"


def test_the_expected_range_follows_the_season():
    points = score(series(30))
    saturday_noon = points[26 * DAY + 12 - 2 * DAY]  # day 26 is a Saturday; take Thursday noon too
    thursday_noon = points[24 * DAY + 12]
    assert points[26 * DAY + 12].expected_high < thursday_noon.expected_low
    assert saturday_noon.expected_low < saturday_noon.value < saturday_noon.expected_high


def test_a_real_drop_on_a_tuesday_alarms_within_a_few_points():
    tuesday = 29 * DAY  # 29 days after a Monday
    rows = series(35, change=lambda h, v: v * 0.6 if tuesday + 8 <= h < tuesday + 32 else v)
    points = score(rows)
    flagged = anomalies(points, since=tuesday + 8)
    assert flagged[:3] == [0, 1, 2]
    assert anomalies(points)[0] == tuesday + 8  # nothing before the drop
    assert all(p.value < p.expected_low for p in points[tuesday + 8 : tuesday + 11])


def test_a_spike_alarms_and_does_not_teach_the_baseline():
    spike_at = 29 * DAY + 12
    rows = series(40, change=lambda h, v: v * 5 if h == spike_at else v)
    points = score(rows)
    assert anomalies(points) == [spike_at]
    assert points[spike_at].score > 0.99
    # The same hour of the next days is expected as before the spike.
    clean = score(series(40))
    for day in (1, 2, 7):
        hour = spike_at + day * DAY
        assert points[hour].expected == pytest.approx(clean[hour].expected, rel=0.02)


def test_a_level_shift_without_restart_alarms_first_then_adapts():
    shift_at = 29 * DAY
    points = score(series(40, change=lambda h, v: v + 500 if h >= shift_at else v))
    flagged = anomalies(points, since=shift_at)
    assert flagged[0] == 0
    assert len(flagged) >= 6
    assert max(flagged) < 2 * DAY  # adapted: no alarm after the second day


def test_a_level_shift_after_restart_does_not_alarm_for_days():
    shift_at = 29 * DAY + 9
    detector = SeriesDetector()
    rows = series(40, change=lambda h, v: v + 500 if h >= shift_at else v)
    detector.restart(dt.datetime.fromtimestamp(rows[shift_at][0], tz=dt.UTC))  # announced ahead: applied there
    points = score(rows, detector)
    assert anomalies(points) == []
    assert [p.learning for p in points[shift_at - 1 : shift_at + 8]] == [False] + [True] * 6 + [False] * 2
    assert points[shift_at + 3 * DAY].expected == pytest.approx(rows[shift_at + 3 * DAY][1], rel=0.1)


def test_restart_in_the_past_applies_at_the_next_point():
    detector = SeriesDetector()
    rows = series(12)
    score(rows, detector)
    detector.restart(rows[0][0])
    assert detector.update(rows[-1][0] + HOUR, 5000.0).learning


@pytest.mark.parametrize(
    ("direction", "drop_alarms", "spike_alarms"), [("up", False, True), ("down", True, False), ("both", True, True)]
)
def test_the_direction_filter(direction, drop_alarms, spike_alarms):
    drop_at, spike_at = 29 * DAY + 10, 30 * DAY + 10
    rows = series(32, change=lambda h, v: v * 0.3 if h == drop_at else (v * 3 if h == spike_at else v))
    points = score(rows, SeriesDetector(direction=direction))
    assert points[drop_at].is_anomaly is drop_alarms
    assert points[spike_at].is_anomaly is spike_alarms
    if not drop_alarms:
        assert points[drop_at].score == 0.0


def test_sensitivities_are_ordered():
    at = 30 * DAY + 10
    clean = score(series(32))[at]
    spread = (clean.expected_high - clean.expected) / SENSITIVITY_Z["medium"]
    # 5.4 spreads above the expected value: beyond medium (4.7) and high (3.3), within low (6.1).
    rows = series(32, change=lambda h, v: clean.expected + 5.4 * spread if h == at else v)
    flags = {s: score(rows, SeriesDetector(sensitivity=s))[at] for s in ("low", "medium", "high")}
    assert flags["high"].is_anomaly and flags["medium"].is_anomaly and not flags["low"].is_anomaly
    assert flags["high"].expected_high < flags["medium"].expected_high < flags["low"].expected_high
    assert flags["high"].score == flags["low"].score  # the score does not depend on the sensitivity


def test_the_state_round_trips_through_json_with_identical_results():
    rows = series(40, change=lambda h, v: v * 0.6 if 35 * DAY <= h < 35 * DAY + 5 else v)
    whole = score(rows)
    first = SeriesDetector(sensitivity="high", direction="down")
    for ts, value in rows[: 33 * DAY]:
        first.update(ts, value)
    state = json.dumps(first.to_dict())
    assert len(state) < 8000
    resumed = SeriesDetector.from_dict(json.loads(state))
    rest = [resumed.update(ts, value) for ts, value in rows[33 * DAY :]]
    straight = score(rows, SeriesDetector(sensitivity="high", direction="down"))
    assert rest == straight[33 * DAY :]
    assert [p.expected for p in rest] == [p.expected for p in whole[33 * DAY :]]


def test_gaps_and_irregular_timestamps_do_not_break_it():
    rng = random.Random(5)
    rows = [row for row in series(40) if rng.random() > 0.2]  # a fifth of the points missing
    jittered = [(ts + rng.uniform(-240, 1200), value) for ts, value in rows]  # 4 min early to 20 min late
    points = score(jittered)
    assert len(anomalies(points)) <= 2
    assert points[-1].seasonality == "weekly"
    gap = SeriesDetector()
    score(series(20), gap)
    later = gap.update(MONDAY.timestamp() + 30 * DAY * HOUR + 10 * HOUR, 1200.0)  # ten days later, a Thursday
    assert not later.is_anomaly


def test_datetimes_and_epoch_seconds_give_the_same_result():
    rows = series(10)
    as_datetimes = [(dt.datetime.fromtimestamp(ts, tz=dt.UTC), v) for ts, v in rows]
    assert score(rows) == score(as_datetimes)


@pytest.mark.parametrize(
    ("ts", "value", "message"),
    [
        (MONDAY.timestamp(), 1.0, "timestamps must increase"),
        (MONDAY.timestamp() - 10, 1.0, "timestamps must increase"),
        (MONDAY.timestamp() + 10, float("nan"), "not a finite number"),
        (dt.datetime(2026, 1, 6), 1.0, "no time zone"),
    ],
)
def test_it_refuses_points_it_cannot_score(ts, value, message):
    detector = SeriesDetector()
    detector.update(MONDAY, 1.0)
    with pytest.raises(ValueError, match=message):
        detector.update(ts, value)


def test_it_refuses_unknown_settings_and_foreign_state():
    with pytest.raises(ValueError, match="sensitivity"):
        SeriesDetector(sensitivity="extreme")
    with pytest.raises(ValueError, match="direction"):
        SeriesDetector(direction="sideways")
    with pytest.raises(ValueError, match="seasonality"):
        SeriesDetector(seasonality="monthly")
    with pytest.raises(ValueError, match="version"):
        SeriesDetector.from_dict({"version": 99})


def test_a_constant_series_does_not_alarm_on_a_tiny_change():
    start = MONDAY.timestamp()
    detector = SeriesDetector()
    points = [detector.update(start + h * HOUR, 1000.0) for h in range(10 * DAY)]
    assert not detector.update(start + 10 * DAY * HOUR, 1001.0).is_anomaly
    assert detector.update(start + 10 * DAY * HOUR + HOUR, 1500.0).is_anomaly
    assert not any(p.is_anomaly for p in points)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_scaled_series_after_restart_does_not_alarm_at_the_weekend(factor):
    # A new version that doubles (or halves) the rows scales the daily wave and the weekend dip too.
    change_at = 29 * DAY + 9  # a Tuesday morning; the weekend follows four days later
    detector = SeriesDetector()
    detector.restart(MONDAY + dt.timedelta(hours=change_at))
    points = score(series(40, change=lambda h, v: v * factor if h >= change_at else v), detector)
    assert anomalies(points) == []


def test_a_scaled_series_without_restart_alarms_first_then_adapts():
    change_at = 29 * DAY
    points = score(series(40, change=lambda h, v: v * 1.5 if h >= change_at else v))
    flagged = anomalies(points, since=change_at)
    assert flagged[0] == 0
    assert max(flagged) < DAY


def test_a_steady_trend_is_followed_without_alarms():
    # Three more rows every hour: the volume quadruples over the six weeks.
    points = score(series(42, change=lambda h, v: v + 3.0 * h))
    assert anomalies(points) == []
    last = points[-1]
    assert last.expected_low < last.value < last.expected_high


def test_the_package_imports_without_django():
    # The engine, the command and the benchmarks share it; it must stay a plain, fast import.
    code = (
        "import sys, incidents.anomaly, incidents.anomaly.csvscore; "
        "print(sorted(m for m in sys.modules if m.startswith('django')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_five_minute_data_with_a_weekend_does_not_alarm_at_the_edges_of_the_weekend():
    # Every hour is visited twelve times a week here; the weekend starts exactly at midnight.
    rng = random.Random(11)
    start = MONDAY.timestamp()
    rows = []
    for i in range(12 * 24 * 28):
        hour = i / 12
        value = 1000 + 400 * math.sin(2 * math.pi * (hour % 24) / 24)
        if (int(hour) // 24) % 7 >= 5:
            value *= 0.6
        rows.append((start + 300 * i, value + rng.gauss(0, 25)))
    points = score(rows)
    assert len(anomalies(points)) <= 2
    assert points[-1].seasonality == "weekly"


def test_the_expected_range_is_in_the_series_units_and_wider_above_than_below():
    # Scored in log(1 + value): the band is symmetric in ratios, so in rows it reaches further up.
    point = score(series(30))[29 * DAY + 12]
    assert 500 < point.expected < 2000
    assert point.expected_low < point.expected < point.expected_high
    assert point.expected_high - point.expected > point.expected - point.expected_low
    assert point.expected_low < point.value < point.expected_high


def test_a_negative_value_switches_to_the_series_units_and_learns_again():
    detector = SeriesDetector()
    rows = series(12)
    score(rows, detector)
    assert detector.log
    point = detector.update(rows[-1][0] + HOUR, -5.0)
    assert not detector.log
    assert point.learning and not point.is_anomaly
    restored = SeriesDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert not restored.log


def test_a_series_around_zero_is_scored_in_its_units():
    rng = random.Random(2)
    start = MONDAY.timestamp()
    detector = SeriesDetector()
    points = [detector.update(start + h * HOUR, rng.gauss(0.0, 10.0)) for h in range(20 * DAY)]
    assert not detector.log
    assert len(anomalies(points)) <= 1
    assert detector.update(start + 20 * DAY * HOUR, 200.0).is_anomaly


def test_a_small_relative_change_of_a_large_series_does_not_alarm():
    at = 30 * DAY + 14
    for factor in (0.93, 1.07):
        points = score(series(32, change=lambda h, v, f=factor: v * f if h == at else v))
        assert not points[at].is_anomaly


def test_a_count_that_is_mostly_zero_does_not_alarm_on_its_ones_and_twos():
    # Errors per five minutes: a rate of 0.3. An MAE-type spread shrinks on the zeros until every
    # 1 is an outlier; the tail spread keeps the band above the usual ones and twos.
    rng = random.Random(4)
    start = MONDAY.timestamp()
    detector = SeriesDetector()
    values = [sum(rng.random() < 0.03 for _ in range(10)) for _ in range(12 * 24 * 21)]
    points = [detector.update(start + 300 * i, float(v)) for i, v in enumerate(values)]
    assert len(anomalies(points)) <= 1
    assert detector.update(start + 300 * len(values), 30.0).is_anomaly


def test_a_state_of_the_previous_version_is_refused():
    detector = SeriesDetector()
    score(series(3), detector)
    state = detector.to_dict()
    state["version"] = 1
    with pytest.raises(ValueError, match="version"):
        SeriesDetector.from_dict(state)


def test_its_points_are_frozen_dataclasses_like_any_other():
    # update() fills a Point's slots directly for speed; callers must not see a difference.
    point = SeriesDetector().update(MONDAY, 10.0)
    same = Point(**dataclasses.asdict(point))
    assert point == same and hash(point) == hash(same) and repr(point) == repr(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.score = 1.0  # type: ignore[misc]
