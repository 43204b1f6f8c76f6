"""Event-based scoring of a detector's alarms against labelled windows, on hand-made cases."""

from __future__ import annotations

from bench.anomaly.corpus import Window
from bench.anomaly.evaluate import Score, alarm_events, is_alarm, series_score


def alarms_at(n: int, *indices: int) -> list[bool]:
    return [i in indices for i in range(n)]


SPIKE = Window("spike", 50, 51)
SHIFT = Window("level_shift", 20, 40)


def test_it_counts_an_alarm_inside_a_window_as_detected_with_its_delay():
    score = series_score([SHIFT], alarms_at(100, 25), tolerance=3)
    assert (score.tp, score.fn, score.fp, score.delays) == (1, 0, 0, [5])


def test_it_accepts_an_alarm_within_the_tolerance_after_a_short_windows_start():
    assert series_score([SPIKE], alarms_at(100, 52), tolerance=3).delays == [2]
    late = series_score([SPIKE], alarms_at(100, 53), tolerance=3)
    assert (late.tp, late.fn) == (0, 1)


def test_an_alarm_before_the_window_is_a_false_positive_and_the_window_is_missed():
    score = series_score([SHIFT], alarms_at(100, 19), tolerance=3)
    assert (score.tp, score.fn, score.fp) == (0, 1, 1)


def test_a_run_of_alarms_is_one_event():
    outside = series_score([SHIFT], alarms_at(100, 60, 61, 62, 63, 70), tolerance=3)
    assert outside.fp == 2
    assert alarm_events(alarms_at(10, 2, 3, 4, 7, 9)) == [(2, 5), (7, 8), (9, 10)]


def test_a_run_that_starts_before_a_window_and_reaches_into_it_detects_it_without_a_false_positive():
    score = series_score([SHIFT], alarms_at(100, *range(17, 23)), tolerance=3)
    assert (score.tp, score.fp, score.delays) == (1, 0, [0])


def test_the_return_to_normal_just_after_a_window_is_not_a_false_positive():
    score = series_score([SHIFT], alarms_at(100, 21, 41), tolerance=3)
    assert (score.tp, score.fp) == (1, 0)
    assert series_score([SHIFT], alarms_at(100, 21, 43), tolerance=3).fp == 1


def test_an_alarm_on_a_healthy_series_is_a_false_positive():
    score = series_score([], alarms_at(100, 10, 11, 80), tolerance=3)
    assert (score.tp, score.fn, score.fp) == (0, 0, 2)
    assert score.precision == 0.0 and score.recall is None and score.f1 is None


def test_precision_recall_and_f1_are_computed_over_events():
    score = Score(tp=3, fn=1, fp=3)
    assert (score.precision, score.recall) == (0.5, 0.75)
    assert score.f1 == 0.6


def test_it_reads_booleans_scores_and_points_as_alarms():
    class Point:
        def __init__(self, is_anomaly: bool) -> None:
            self.is_anomaly = is_anomaly

    assert [is_alarm(a) for a in (True, False, 0.49, 0.5, 1, None)] == [True, False, False, True, True, False]
    assert [is_alarm(Point(True)), is_alarm(Point(False))] == [True, False]
