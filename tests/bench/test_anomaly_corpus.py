"""The labelled corpus: deterministic per seed, large and varied enough, labels inside their series."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from bench.anomaly.corpus import (
    ANOMALY_KINDS,
    FIVE_MINUTES,
    HEALTHY,
    HOURLY,
    corpus_generate,
    corpus_read,
    corpus_write,
)


@pytest.fixture(scope="module")
def corpus():
    return corpus_generate(seed=7, count=200)


def test_it_has_at_least_200_series_of_every_type_and_both_steps(corpus):
    assert len(corpus) >= 200
    kinds = Counter(s.kind for s in corpus)
    assert set(kinds) == {*ANOMALY_KINDS, HEALTHY}
    assert kinds[HEALTHY] >= 40
    assert {s.step for s in corpus} == {HOURLY, FIVE_MINUTES}
    for kind in ANOMALY_KINDS:
        assert {s.step for s in corpus if s.kind == kind} == {HOURLY, FIVE_MINUTES}, kind


def test_it_is_the_same_corpus_for_the_same_seed_and_another_for_another():
    first, again, other = (corpus_generate(seed, 16) for seed in (3, 3, 4))
    assert [(s.name, s.values, s.windows) for s in first] == [(s.name, s.values, s.windows) for s in again]
    assert [s.values for s in first] != [s.values for s in other]


def test_a_series_does_not_depend_on_the_corpus_size():
    assert corpus_generate(5, 10)[9].values == corpus_generate(5, 20)[9].values


def test_its_labels_lie_inside_their_series_after_the_warm_up(corpus):
    for series in corpus:
        assert len(series.timestamps) == len(series.values)
        assert series.timestamps == sorted(set(series.timestamps)), series.name
        assert all(v >= 0 for v in series.values), series.name
        if series.kind == HEALTHY:
            assert series.windows == []
            continue
        assert 1 <= len(series.windows) <= 3, series.name
        for window in series.windows:
            assert window.kind == series.kind
            assert 7 * series.points_per_day <= window.start < window.end <= len(series.values), series.name


def test_missing_points_are_absent_rows_and_their_window_is_the_first_row_after_the_gap(corpus):
    for series in (s for s in corpus if s.kind == "missing"):
        for window in series.windows:
            gap = series.timestamps[window.start] - series.timestamps[window.start - 1]
            assert gap.total_seconds() > series.step, series.name
            assert window.end == window.start + 1


def test_it_writes_a_csv_per_series_and_a_labels_file(tmp_path):
    corpus = corpus_generate(seed=1, count=8)
    labels_path = corpus_write(corpus, tmp_path)
    labels = json.loads(labels_path.read_text())["series"]
    assert [entry["series"] for entry in labels] == [s.name for s in corpus]
    for entry, series in zip(labels, corpus, strict=True):
        with (tmp_path / entry["file"]).open() as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["timestamp", "value"]
        assert len(rows) - 1 == entry["rows"] == len(series.values)
        assert [float(v) for _, v in rows[1:]] == series.values
        for window in entry["windows"]:
            assert rows[1 + window["start"]][0] == window["start_timestamp"]


def test_it_reads_back_the_corpus_it_wrote(tmp_path):
    corpus = corpus_generate(seed=2, count=8)
    corpus_write(corpus, tmp_path)
    again = corpus_read(tmp_path)
    assert [(s.name, s.kind, s.step, s.timestamps, s.values, s.windows) for s in again] == [
        (s.name, s.kind, s.step, s.timestamps, s.values, s.windows) for s in corpus
    ]
