"""Values in words: durations, cron schedules, counts with their verb."""

from __future__ import annotations

import pytest

from etl_monitor.humanize import count_phrase, cron_words, duration_words


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1.104584, "1.1 s"),
        (0, "0 s"),
        (0.04, "under 0.1 s"),
        (2.0, "2 s"),
        (12.4, "12 s"),
        (65, "1 min 5 s"),
        (120, "2 min"),
        (3600, "1 h"),
        (3780, "1 h 3 min"),
        (59.6, "1 min"),
        (3120, "52 min"),
        (11520, "3 h 12 min"),
        (90000, "1 d 1 h"),
        (187200, "2 d 4 h"),
        (None, "—"),
    ],
)
def test_durations_read_as_people_say_them(seconds, words):
    assert duration_words(seconds) == words


def test_cron_expressions_read_in_words():
    assert cron_words("30 2 * * *") == "At 02:30"
    assert cron_words("*/5 * * * 1-5") == "Every 5 minutes, Monday through Friday"
    assert cron_words("") == "on demand"


def test_an_unreadable_cron_expression_is_shown_as_it_is():
    assert cron_words("not a cron") == "not a cron"


@pytest.mark.parametrize(("count", "phrase"), [(0, "0 loaders were"), (1, "1 loader was"), (2, "2 loaders were")])
def test_counts_take_the_right_verb(count, phrase):
    assert count_phrase(count, "loader") == phrase


def test_an_irregular_plural_is_given():
    assert count_phrase(3, "entry", "entries") == "3 entries were"
