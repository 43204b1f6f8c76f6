"""A loader's health in words: each state, the sentence that says why, and the next expected run."""

from __future__ import annotations

import datetime as dt

import pytest

from operations.selectors import Health, loader_health
from signals_app.models import RunStatus
from tests.operations.conftest import NOW, make_run


def health(loader, user):
    return loader_health(user=user, loader=loader, now=NOW)


def test_it_is_ok_when_the_run_of_the_last_slot_succeeded(make_loader, viewer) -> None:
    loader = make_loader("HOURLY-OK", cron="0 * * * *")
    make_run(loader, started=NOW.replace(minute=0, second=5))
    result = health(loader, viewer)
    assert result.status == Health.OK
    assert result.status_label == "OK"
    assert result.reason == "The last run succeeded."


def test_it_is_running_while_the_latest_run_has_not_finished(make_loader, viewer) -> None:
    loader = make_loader("HOURLY-RUNNING")
    make_run(loader, RunStatus.RUNNING, started=NOW - dt.timedelta(minutes=3))
    assert health(loader, viewer).status == Health.RUNNING


@pytest.mark.parametrize(("status", "word"), [(RunStatus.FAILED, "failed"), (RunStatus.TIMED_OUT, "timed out")])
def test_it_is_failed_when_the_latest_run_failed_or_timed_out(make_loader, viewer, status, word) -> None:
    loader = make_loader("HOURLY-FAILED")
    make_run(loader, started=NOW - dt.timedelta(hours=2))
    make_run(loader, status, started=NOW - dt.timedelta(minutes=59))
    result = health(loader, viewer)
    assert result.status == Health.FAILED
    assert result.reason == f"The last run {word}."


def test_it_is_missed_when_the_slot_passed_its_grace_without_a_run(make_loader, viewer) -> None:
    # Daily at 02:30 Berlin (01:30 UTC) with 20 min grace; the last run was the day before.
    loader = make_loader("DAILY-MISSED", cron="30 2 * * *", timezone="Europe/Berlin", grace=20)
    make_run(loader, started=dt.datetime(2026, 12, 2, 1, 30, 10, tzinfo=dt.UTC))
    result = health(loader, viewer)
    assert result.status == Health.MISSED
    assert "Thu 03 Dec 02:30 CET" in result.reason
    assert "within 20 min" in result.reason


def test_the_previous_slots_run_does_not_satisfy_the_current_one_of_a_five_minute_loader(make_loader, viewer) -> None:
    # */5 with 1 min grace: the 11:50 run is not the 11:55 one, although it is within 5 minutes of it.
    loader = make_loader("EVERY-5", cron="*/5 * * * *", grace=1)
    make_run(loader, started=dt.datetime(2026, 12, 3, 11, 50, 30, tzinfo=dt.UTC))
    assert health(loader, viewer).status == Health.MISSED


def test_it_is_late_when_the_slot_passed_but_its_grace_has_not(make_loader, viewer) -> None:
    loader = make_loader("HOURLY-LATE", cron="50 * * * *", grace=30)
    make_run(loader, started=dt.datetime(2026, 12, 3, 10, 50, tzinfo=dt.UTC))
    result = health(loader, viewer)
    assert result.status == Health.LATE
    assert "has not started yet" in result.reason


def test_it_is_late_when_the_data_is_older_than_the_freshness_limit(make_loader, viewer) -> None:
    loader = make_loader("ON-DEMAND-STALE", cron="", sla=60)
    make_run(loader, started=NOW - dt.timedelta(hours=3))
    result = health(loader, viewer)
    assert result.status == Health.LATE
    assert result.reason == "The data is older than its freshness limit of 60 min."


def test_a_slot_before_the_version_was_approved_is_not_missed(make_loader, viewer) -> None:
    loader = make_loader("NEW-DAILY", cron="0 6 * * *", approved=NOW - dt.timedelta(hours=1))
    result = health(loader, viewer)
    assert result.status == Health.OK
    assert result.reason == "No run yet; none was due."


def test_it_is_paused_whatever_its_runs_say(make_loader, viewer) -> None:
    loader = make_loader("PAUSED-ONE", paused=True)
    make_run(loader, RunStatus.FAILED, started=NOW - dt.timedelta(hours=1))
    result = health(loader, viewer)
    assert (result.status, result.status_label) == (Health.PAUSED, "Paused")
    assert result.next_run_at is None


def test_it_has_no_active_version_before_the_first_approval(make_loader, viewer) -> None:
    loader = make_loader("DRAFT-ONLY", active=False)
    result = health(loader, viewer)
    assert (result.status, result.status_label) == (Health.NONE, "No active version")


def test_the_next_expected_run_is_read_in_the_loaders_time_zone(make_loader, viewer) -> None:
    # 02:30 in New York is 07:30 UTC in December; NOW is 12:00 UTC, so the next one is tomorrow.
    loader = make_loader("NY-DAILY", cron="30 2 * * *", timezone="America/New_York", approved=NOW)
    result = health(loader, viewer)
    assert result.next_run_at == dt.datetime(2026, 12, 4, 7, 30, tzinfo=dt.UTC)
    assert result.next_run_local.strftime("%H:%M %Z") == "02:30 EST"


def test_the_next_expected_run_across_a_daylight_saving_change(make_loader, viewer) -> None:
    # Berlin leaves summer time at 03:00 on 25 October 2026: 03:30 that day is CET (UTC+1), 02:30 UTC,
    # where the day before (CEST, UTC+2) it was 01:30 UTC.
    now = dt.datetime(2026, 10, 24, 12, 0, tzinfo=dt.UTC)
    loader = make_loader("BERLIN-DAILY", cron="30 3 * * *", timezone="Europe/Berlin", approved=now)
    result = loader_health(user=viewer, loader=loader, now=now)
    assert result.next_run_at == dt.datetime(2026, 10, 25, 2, 30, tzinfo=dt.UTC)  # 03:30 CET


def test_a_tiles_sparkline_holds_the_last_20_finished_runs_oldest_first(make_loader, viewer) -> None:
    from operations.selectors import OverviewFilters, overview_read

    loader = make_loader("SPARKY", cron="")
    for hours in range(25, 0, -1):
        make_run(loader, started=NOW - dt.timedelta(hours=hours), seconds=hours, rows=hours * 10)
    make_run(loader, RunStatus.RUNNING, started=NOW - dt.timedelta(minutes=5))
    make_run(loader, started=NOW - dt.timedelta(days=31), seconds=999)  # older than 30 days
    (tile,) = overview_read(user=viewer, filters=OverviewFilters(), now=NOW).tiles
    assert tile.spark["duration"] == [float(h) for h in range(20, 0, -1)]
    assert tile.spark["rows"] == [h * 10 for h in range(20, 0, -1)]
    assert tile.spark["t"] == sorted(tile.spark["t"])


def test_a_grace_of_a_day_or_more_is_said_in_full(make_loader, viewer) -> None:
    loader = make_loader("WEEKLY-MISSED", cron="0 6 * * 1", grace=1500, approved=NOW - dt.timedelta(days=30))
    make_run(loader, started=NOW - dt.timedelta(days=12))
    assert health(loader, viewer).reason.endswith("did not start within 1500 min.")
