"""``manage.py demo``: a realistic, seeded history that every page can show, written only once and
removable without touching anything that is not demo data."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from io import StringIO

import pytest
from croniter import croniter
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from etl_monitor.bootstrap import DEMO_TAG, DEMO_USER_PREFIX
from etl_monitor.demo import DEMO_OPERATOR, demo_generate, demo_remove
from incidents.detection import rules_evaluate
from incidents.models import DetectionRule, EventKind, Incident, IncidentEvent, IncidentStatus
from integrations.models import Channel, Delivery
from loaders.models import Loader, LoaderVersion, Team, VersionState
from operations.selectors import Health, OverviewFilters, overview_read
from signals_app.models import RUN_SIGNAL_KEYS, Run, RunStatus, Signal, SignalKey, ValidationStatus
from signals_app.retention import signal_partitions

NOW = dt.datetime(2026, 3, 18, 9, 30, tzinfo=dt.UTC)


def demo_loaders():
    return Loader.objects.filter(tags__name=DEMO_TAG)


def slots_between(cron: str, zone: str, start: dt.datetime, end: dt.datetime) -> int:
    walk = croniter(cron, start.astimezone(zoneinfo.ZoneInfo(zone)))
    count = 0
    while walk.get_next(dt.datetime).astimezone(dt.UTC) <= end:
        count += 1
    return count


def history(*, now: dt.datetime) -> list[tuple]:
    runs = Run.objects.filter(loader__in=demo_loaders(), started_at__lte=now).order_by(
        "loader__loader_code", "started_at"
    )
    incidents = Incident.objects.filter(loader__in=demo_loaders()).order_by("loader__loader_code", "first_seen")
    return [
        *runs.values_list("loader__loader_code", "started_at", "status", "duration_seconds", "rows_written"),
        *incidents.values_list("loader__loader_code", "title", "status", "first_seen", "external_key"),
    ]


def test_it_writes_the_loaders_with_their_versions_through_four_eyes(db):
    report = demo_generate(loaders=12, days=2, now=NOW)
    assert report.loaders == demo_loaders().count() == 12
    states = {loader.loader_code: sorted(v.state for v in loader.versions.all()) for loader in demo_loaders()}
    assert states["CRM-SYNC"] == [VersionState.DRAFT]
    assert states["SALES-DAILY"] == sorted([VersionState.ACTIVE, VersionState.PENDING_APPROVAL])
    assert sum(VersionState.PENDING_APPROVAL in s for s in states.values()) == 2
    assert sum(s == [VersionState.ACTIVE] for s in states.values()) == 9
    for version in LoaderVersion.objects.filter(loader__in=demo_loaders(), state=VersionState.ACTIVE):
        assert version.created_by.username.startswith(DEMO_USER_PREFIX)
        assert version.decided_by.username.startswith(DEMO_USER_PREFIX)
        assert version.decided_by != version.created_by
        assert version.decided_at < NOW - dt.timedelta(days=2)  # approved before the history starts
    zones = set(LoaderVersion.objects.filter(loader__in=demo_loaders()).values_list("schedule_timezone", flat=True))
    assert len(zones) >= 3


def test_runs_follow_each_schedule_over_the_days(db):
    days = 3
    report = demo_generate(loaders=12, days=days, now=NOW)
    start = NOW - dt.timedelta(days=days)
    assert report.runs == Run.objects.filter(loader__in=demo_loaders()).count()
    healthy = [code for code, profile in report.profiles.items() if profile == "healthy"]
    assert len(healthy) >= 4
    for code in healthy:
        version = LoaderVersion.objects.get(loader__loader_code=code, state=VersionState.ACTIVE)
        runs = Run.objects.filter(loader__loader_code=code)
        slots = slots_between(version.schedule_cron, version.schedule_timezone, start, NOW)
        assert slots - 1 <= runs.count() <= slots  # a slot of the last 90 s may not have started yet
        assert all(start < started <= NOW for started in runs.values_list("started_at", flat=True))
    days_with_runs = {
        d.date() for d in Run.objects.filter(loader__in=demo_loaders()).values_list("started_at", flat=True)
    }
    assert len(days_with_runs) == days + 1
    # Every finished run carries the standard signals the ingest writes, with their idempotency keys.
    finished = Run.objects.filter(loader__in=demo_loaders()).exclude(status=RunStatus.RUNNING)
    signals = Signal.objects.filter(loader__in=demo_loaders())
    assert signals.count() == report.signals == finished.count() * len(RUN_SIGNAL_KEYS)
    assert SignalKey.objects.filter(loader__in=demo_loaders()).count() == report.signals
    failed = finished.filter(status=RunStatus.FAILED).first()
    assert set(signals.filter(run=failed).values_list("validation_status", flat=True)) == {ValidationStatus.FAILED}


def test_some_loaders_are_failing_late_slow_and_low_volume(db, make_user):
    report = demo_generate(loaders=12, days=2, now=NOW)
    by_profile = {profile: code for code, profile in report.profiles.items()}
    assert {"failing", "late", "slow", "low-volume", "flaky"} <= set(by_profile)
    overview = overview_read(user=make_user("Admin"), filters=OverviewFilters(), now=NOW)
    health = {tile.code: tile.status for tile in overview.tiles}
    assert health[by_profile["failing"]] == Health.FAILED
    assert health[by_profile["late"]] == Health.MISSED
    slow = LoaderVersion.objects.get(loader__loader_code=by_profile["slow"], state=VersionState.ACTIVE)
    last = Run.objects.filter(loader=slow.loader).order_by("-started_at").first()
    assert last.duration_seconds > slow.max_duration_minutes * 60
    low = LoaderVersion.objects.get(loader__loader_code=by_profile["low-volume"], state=VersionState.ACTIVE)
    last = Run.objects.filter(loader=low.loader).order_by("-started_at").first()
    assert last.rows_written < low.expected_rows_min
    assert overview.summary["signals_last_hour"] > 0


def test_incidents_have_timelines_in_every_state_and_send_nothing(db):
    channels = list(Channel.objects.values_list("pk", "enabled"))
    report = demo_generate(loaders=12, days=7, now=NOW)
    incidents = Incident.objects.filter(loader__in=demo_loaders())
    assert incidents.count() == report.incidents
    assert {IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.RESOLVED} <= set(
        incidents.values_list("status", flat=True)
    )
    assert incidents.exclude(external_key="").exists()
    operator = User.objects.get(username=DEMO_OPERATOR)
    for incident in incidents:
        kinds = list(incident.events.values_list("kind", flat=True))
        assert kinds[0] == EventKind.OPENED
        if incident.status != IncidentStatus.OPEN:
            assert EventKind.ACKNOWLEDGED in kinds and incident.acknowledged_by == operator
        if incident.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED):
            assert EventKind.RESOLVED in kinds and incident.first_seen <= incident.resolved_at <= NOW
        assert all(incident.first_seen <= at <= NOW for at in incident.events.values_list("at", flat=True))
        assert incident.occurrences == 1 + kinds.count(EventKind.REFIRED)
        assert incident.last_seen == max(e.at for e in incident.events.filter(kind__in=["OPENED", "REFIRED"]))
    assert IncidentEvent.objects.filter(incident__in=incidents).count() == report.events
    # One active incident per fingerprint, as the database demands of the engine.
    active = incidents.filter(status__in=[IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED])
    assert active.values("fingerprint").distinct().count() == active.count()
    assert not Delivery.objects.exists()
    assert list(Channel.objects.values_list("pk", "enabled")) == channels
    assert not Team.objects.filter(loaders__in=demo_loaders()).exclude(email="").exists()


def test_detection_goes_on_from_the_demo_incidents(db, settings):
    """The engine treats the demo's incidents as its own: the breach they are about, measured
    again, is not a new occurrence (no incident doubled, no new breach); once the failed run is out
    of the rule's window, the incident resolves by itself."""
    settings.NOTIFICATIONS_ENABLED = False
    report = demo_generate(loaders=12, days=2, now=NOW)
    by_profile = {profile: code for code, profile in report.profiles.items()}
    run_failed, missed_run = (DetectionRule.objects.get(name=name) for name in ("Run failed", "Missed run"))
    missed = Incident.objects.get(loader__loader_code=by_profile["late"], rule=missed_run)
    occurrences = missed.occurrences
    rules_evaluate(rules=[missed_run], now=NOW + dt.timedelta(seconds=30))
    missed.refresh_from_db()
    assert (missed.status, missed.occurrences) == (IncidentStatus.OPEN, occurrences)
    assert missed.events.last().message == "Still firing."  # the same breach, not a new one
    assert Incident.objects.filter(rule=missed_run, loader=missed.loader).count() == 1

    failed = Incident.objects.get(loader__loader_code=by_profile["failing"], rule=run_failed, status="OPEN")
    last_failure = Run.objects.filter(loader=failed.loader, status=RunStatus.FAILED).latest("finished_at")
    rules_evaluate(rules=[run_failed], now=last_failure.finished_at + dt.timedelta(minutes=1))
    again = Incident.objects.get(pk=failed.pk)
    assert (again.status, again.occurrences) == (IncidentStatus.OPEN, failed.occurrences)
    rules_evaluate(rules=[run_failed], now=last_failure.finished_at + dt.timedelta(minutes=16))
    failed.refresh_from_db()
    assert failed.status == IncidentStatus.RESOLVED
    assert failed.events.last().message.startswith("Resolved automatically")


def test_the_days_default_to_what_the_signals_are_kept_for(db, settings):
    settings.SIGNAL_RETENTION_DAYS = 5
    call_command("demo", "--loaders", "4", stdout=StringIO())
    oldest = Run.objects.filter(loader__in=demo_loaders()).order_by("started_at").first().started_at
    assert timezone.now() - dt.timedelta(days=5) < oldest < timezone.now() - dt.timedelta(days=4)


def test_the_same_seed_and_now_give_the_same_history(db):
    demo_generate(loaders=10, days=2, now=NOW, seed=7)
    first = history(now=NOW)
    demo_remove()
    assert not demo_loaders().exists()
    demo_generate(loaders=10, days=2, now=NOW, seed=7)
    assert history(now=NOW) == first
    demo_remove()
    demo_generate(loaders=10, days=2, now=NOW, seed=8)
    assert history(now=NOW) != first


def test_a_later_now_keeps_the_runs_of_the_slots_both_cover(db):
    """Screenshots stay stable: each slot's run is the same whenever the demo is loaded."""

    def healthy_runs(report, until):
        codes = [code for code, profile in report.profiles.items() if profile == "healthy"]
        runs = Run.objects.filter(loader__loader_code__in=codes, started_at__gte=NOW - dt.timedelta(days=1))
        return set(runs.filter(started_at__lte=until).values_list("loader__loader_code", "started_at", "rows_written"))

    first = healthy_runs(demo_generate(loaders=8, days=2, now=NOW), NOW - dt.timedelta(hours=1))
    demo_remove()
    later = healthy_runs(demo_generate(loaders=8, days=2, now=NOW + dt.timedelta(hours=3)), NOW - dt.timedelta(hours=1))
    assert first == later and len(first) > 20


def test_a_second_run_says_so_and_changes_nothing(db):
    call_command("demo", "--loaders", "6", "--days", "1", stdout=StringIO())
    counts = (Loader.objects.count(), Run.objects.count(), Signal.objects.count(), Incident.objects.count())
    out = StringIO()
    call_command("demo", "--loaders", "6", "--days", "1", stdout=out)
    assert "already present; nothing changed" in out.getvalue()
    assert (Loader.objects.count(), Run.objects.count(), Signal.objects.count(), Incident.objects.count()) == counts


def test_load_demo_is_the_small_demo(db):
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert "Demo data loaded" in out.getvalue()
    assert demo_loaders().count() == 12
    again = StringIO()
    call_command("load_demo", stdout=again)
    assert "already present" in again.getvalue()


def test_reset_removes_only_the_demo(db, new_loader, editor):
    own = new_loader("OWN-LOADER")
    Team.objects.create(slug="logistics", name="Our logistics")  # a team of ours, with the demo's slug
    call_command("demo", "--loaders", "5", "--days", "1", stdout=StringIO())
    first_ids = set(demo_loaders().values_list("pk", flat=True))
    out = StringIO()
    call_command("demo", "--loaders", "5", "--days", "1", "--reset", stdout=out)
    assert "Removed the demo: 5 loaders" in out.getvalue()
    assert demo_loaders().count() == 5
    assert not first_ids & set(demo_loaders().values_list("pk", flat=True))
    own.refresh_from_db()
    assert own.owner.slug and User.objects.filter(pk=editor.pk).exists()
    demo_remove()
    assert list(Loader.objects.exclude(loader_code__startswith="STATS-").values_list("loader_code", flat=True)) == [
        "OWN-LOADER"
    ]
    assert not User.objects.filter(username__startswith=DEMO_USER_PREFIX).exists()
    assert Team.objects.get(slug="logistics").name == "Our logistics"  # neither renamed nor removed
    assert not Team.objects.filter(slug="marketing-insights").exists()  # the demo's own, gone with it


def test_a_loader_of_yours_with_a_demo_code_is_left_alone(db, new_loader):
    own = new_loader("SALES-DAILY")
    versions = list(own.versions.values_list("pk", "state"))
    out = StringIO()
    call_command("demo", "--loaders", "6", "--days", "1", stdout=out)
    assert "Left out, their codes are taken by loaders of yours: SALES-DAILY." in out.getvalue()
    assert demo_loaders().count() == 5
    own.refresh_from_db()
    assert DEMO_TAG not in own.tags.values_list("name", flat=True)
    assert list(own.versions.values_list("pk", "state")) == versions
    assert not Run.objects.filter(loader=own).exists()


def test_a_refused_reset_keeps_the_demo_that_is_there(db):
    call_command("demo", "--loaders", "4", "--days", "1", stdout=StringIO())
    before = set(demo_loaders().values_list("pk", flat=True))
    with pytest.raises(CommandError, match="--days: Must be between 1 and 30"):
        call_command("demo", "--reset", "--loaders", "4", "--days", "90", stdout=StringIO())
    assert set(demo_loaders().values_list("pk", flat=True)) == before
    assert Run.objects.filter(loader__in=demo_loaders()).exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--loaders", "0"], "--loaders: Must be between 1 and 2000; got 0."),
        (["--loaders", "-3"], "--loaders: Must be between 1 and 2000; got -3."),
        (["--loaders", "100000"], "--loaders: Must be between 1 and 2000; got 100000."),
        (
            ["--days", "0"],
            "--days: Must be between 1 and 30 (SIGNAL_RETENTION_DAYS: older signals are deleted); got 0.",
        ),
        (["--days", "365"], "--days: Must be between 1 and 30 (SIGNAL_RETENTION_DAYS: older signals are deleted)"),
    ],
)
def test_bad_sizes_are_refused_with_a_clear_error_and_write_nothing(db, arguments, message):
    with pytest.raises(CommandError) as refused:
        call_command("demo", *arguments, stdout=StringIO())
    assert message in str(refused.value)
    assert not demo_loaders().exists()
    assert not User.objects.filter(username__startswith=DEMO_USER_PREFIX).exists()


@pytest.mark.services
def test_on_postgresql_the_signals_land_in_their_day_partitions(require_postgres, db):
    now = timezone.now()
    report = demo_generate(loaders=8, days=5, now=now)
    partitions = set(signal_partitions())
    for offset in range(6):
        assert f"signals_app_signal_p{now - dt.timedelta(days=offset):%Y%m%d}" in partitions
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM signals_app_signal_default")
        assert cursor.fetchone()[0] == 0
    assert Signal.objects.filter(loader__in=demo_loaders()).count() == report.signals > 0
