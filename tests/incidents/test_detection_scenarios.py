"""Detection scenarios on a controlled clock, with the seeded rules, as users meet them: one problem
is one incident; a skipped run of a frequent loader is reported within grace + one tick; stale data
is one freshness incident; a paused loader is never stale."""

from __future__ import annotations

import datetime as dt

import pytest

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, EventKind, Incident
from incidents.services import incident_resolve
from loaders import services as registry
from loaders.models import Loader, LoaderVersion
from signals_app import services as ingestion
from signals_app import tokens as ingest
from signals_app.models import Signal
from tests.incidents.conftest import add_signals

START = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(minutes=1)  # the seeded rules' interval


@pytest.fixture
def contract_loader(new_loader, editor, approver):
    """A loader with the given contract ACTIVE since a day before START, and a writer for its runs."""

    def make(code: str, **contract) -> tuple[Loader, ingest.Writer]:
        loader = new_loader(code, **contract)
        version = registry.loader_version_submit(user=editor, version=loader.open_version)
        registry.loader_version_approve(user=approver, version=version)
        LoaderVersion.objects.filter(pk=version.pk).update(decided_at=START - dt.timedelta(days=1))
        loader = Loader.objects.get(pk=loader.pk)
        token, _raw = ingest.ingest_token_create(user=editor, loader=loader, name="job")
        return loader, ingest.Writer(token=token)

    return make


def run(writer: ingest.Writer, loader: Loader, started: dt.datetime, *, status: str = "SUCCEEDED", minutes=1):
    """One run through the ingestion services, as the API records it (with its own signals)."""
    created, _new = ingestion.run_start(
        writer=writer, data={"loader_code": loader.loader_code, "started_at": started.isoformat()}
    )
    finished = started + dt.timedelta(minutes=minutes)
    data = {"status": status, "finished_at": finished.isoformat()}
    if status == "SUCCEEDED":
        data.update(rows_read=500, rows_written=500)  # within the contract's expected range
    else:
        data["error_text"] = "ORA-00942: table or view does not exist"
    return ingestion.run_finish(writer=writer, run=created, data=data)


def tick(now: dt.datetime) -> None:
    """One detection cycle at ``now``: every enabled rule, as the scheduler runs them."""
    for rule in DetectionRule.objects.filter(enabled=True):
        rule_evaluate(rule=rule, now=now)


def incidents_of(loader: Loader, rule: str | None = None) -> list[Incident]:
    found = Incident.objects.filter(loader=loader).select_related("rule").order_by("pk")
    return [i for i in found if rule is None or i.rule.name == rule]


def test_one_failed_run_is_exactly_one_incident(contract_loader):
    loader, writer = contract_loader("ONE-FAIL", schedule_cron="0 10 * * *", schedule_timezone="UTC", grace_minutes=5)
    run(writer, loader, START, status="FAILED")
    assert Signal.objects.filter(loader=loader, validation_status="FAILED").count() == 2  # its own signals
    for minute in range(1, 31):
        tick(START + minute * TICK)
    (incident,) = incidents_of(loader)
    assert incident.rule.name == "Run failed"


def test_failed_signals_jobs_send_themselves_still_count_for_the_failure_rate(contract_loader, rule_factory):
    loader, writer = contract_loader("OWN-SIGNALS", schedule_cron="", grace_minutes=5)
    ingestion.signals_ingest(
        writer=writer,
        payload=[
            {"loader_code": loader.loader_code, "signal_key": "dq_check", "signal_value": "x",
             "validation_status": "FAILED", "captured_at": START.isoformat()},
            {"loader_code": loader.loader_code, "signal_key": "dq_check", "signal_value": "y",
             "validation_status": "SUCCESS", "captured_at": START.isoformat()},
        ],
    )  # fmt: skip
    report = rule_evaluate(rule=DetectionRule.objects.get(name="Signal failure rate above 5%"), now=START + TICK)
    assert [(d.subject, d.value, d.action) for d in report.decisions] == [("OWN-SIGNALS", 50.0, "opened")]


def test_a_loader_every_five_minutes_that_skips_one_run_is_reported_within_grace_and_a_tick(contract_loader):
    loader, writer = contract_loader("EVERY-5", schedule_cron="*/5 * * * *", schedule_timezone="UTC", grace_minutes=2)
    skipped = START + dt.timedelta(minutes=15)
    slots = [START + dt.timedelta(minutes=m) for m in range(0, 35, 5)]
    now = START
    while now <= START + dt.timedelta(minutes=35):
        if now in slots and now != skipped:
            run(writer, loader, now)
        tick(now)
        now += TICK
    (incident,) = incidents_of(loader, "Missed run")
    assert incident.first_seen <= skipped + dt.timedelta(minutes=2) + TICK
    assert incident.status == "RESOLVED"  # the 10:20 run started: cleared by itself
    assert "10:15" in incident.title and "T10:15" not in incident.title  # a time people read, not ISO


def test_a_loader_every_minute_that_stops_is_reported_within_grace_and_a_tick(contract_loader):
    loader, writer = contract_loader("EVERY-1", schedule_cron="* * * * *", schedule_timezone="UTC", grace_minutes=1)
    stopped = START + dt.timedelta(minutes=10)  # the first slot without a run
    now = START
    while now <= START + dt.timedelta(minutes=20):
        if now < stopped:
            run(writer, loader, now, minutes=0.5)
        tick(now)
        now += TICK
    (incident,) = incidents_of(loader, "Missed run")
    assert incident.first_seen <= stopped + dt.timedelta(minutes=1) + TICK
    assert incident.status == "OPEN"


def test_a_run_starting_a_little_early_still_counts_for_its_slot(contract_loader):
    loader, writer = contract_loader("EARLY", schedule_cron="*/5 * * * *", schedule_timezone="UTC", grace_minutes=2)
    for minutes in (0, 5, 10):
        run(writer, loader, START + dt.timedelta(minutes=minutes, seconds=-30))  # 30 s early each time
    for minute in range(0, 13):
        tick(START + minute * TICK)
    assert incidents_of(loader, "Missed run") == []


def test_a_stale_loader_is_one_freshness_incident_until_fresh_data_resolves_it(contract_loader):
    loader, writer = contract_loader("STALE", schedule_cron="", freshness_sla_minutes=60)
    run(writer, loader, START - dt.timedelta(minutes=90))  # finished 89 minutes before START
    for minute in range(0, 10):
        tick(START + minute * TICK)
    (incident,) = incidents_of(loader)
    assert incident.rule.kind == "freshness" and incident.status == "OPEN"
    assert "SLA 60 min" in incident.title and "Wed 25 Nov" not in incident.title
    assert "Thu 26 Nov 09:31 CET" in incident.title  # the last data, as people read it in the loader's zone
    run(writer, loader, START + dt.timedelta(minutes=10))
    tick(START + dt.timedelta(minutes=12))
    incident.refresh_from_db()
    assert incident.status == "RESOLVED"


def test_fresh_data_sent_as_signals_keeps_a_loader_fresh(contract_loader):
    loader, writer = contract_loader("SIGNALS-ONLY", schedule_cron="", freshness_sla_minutes=60)
    ingestion.signals_ingest(
        writer=writer,
        payload={"loader_code": loader.loader_code, "signal_key": "rows", "signal_value": "5",
                 "validation_status": "SUCCESS", "captured_at": (START - dt.timedelta(minutes=30)).isoformat()},
    )  # fmt: skip
    tick(START)
    assert incidents_of(loader) == []


@pytest.mark.parametrize("contract", [{"freshness_sla_minutes": None}, {}], ids=["no SLA", "paused"])
def test_a_paused_loader_or_one_without_sla_is_never_stale(contract_loader, contract):
    loader, _writer = contract_loader("QUIET", schedule_cron="", **{"freshness_sla_minutes": 60, **contract})
    if "freshness_sla_minutes" not in contract:
        Loader.objects.filter(pk=loader.pk).update(is_paused=True)
    for hour in range(0, 5):
        tick(START + dt.timedelta(hours=hour))
    assert incidents_of(loader) == []


def test_a_new_contract_gets_its_sla_before_it_is_stale(contract_loader):
    loader, _writer = contract_loader("NEW", schedule_cron="", freshness_sla_minutes=60)
    LoaderVersion.objects.filter(loader=loader).update(decided_at=START - dt.timedelta(minutes=30))
    tick(START)
    assert incidents_of(loader) == []
    tick(START + dt.timedelta(minutes=31))
    assert [i.rule.kind for i in incidents_of(loader)] == ["freshness"]


# --- one problem, one incident: resolving, reopening, counting --------------------------------------


@pytest.fixture
def daily(contract_loader):
    """A loader due at 10:00 UTC (no missed-run noise), with a writer for its runs."""
    return contract_loader("DAILY", schedule_cron="0 10 * * *", schedule_timezone="UTC", grace_minutes=30)


def ticks(start: dt.datetime, minutes: int) -> dt.datetime:
    """A tick every minute from ``start`` for ``minutes`` minutes; the last moment ticked."""
    for minute in range(minutes):
        tick(start + minute * TICK)
    return start + (minutes - 1) * TICK


def test_a_successful_rerun_resolves_the_run_failed_incident_naming_the_run(daily):
    loader, writer = daily
    run(writer, loader, START, status="FAILED")
    ticks(START + TICK, 3)
    rerun = run(writer, loader, START + 4 * TICK)
    ticks(START + 5 * TICK, 3)
    (incident,) = incidents_of(loader)
    assert incident.status == "RESOLVED" and incident.resolved_by is None
    resolved = incident.events.get(kind=EventKind.RESOLVED)
    assert str(rerun.run_id) in resolved.message and resolved.data == {"run_id": str(rerun.run_id)}
    assert "Thu 26 Nov 10:05 UTC" in resolved.message


def test_with_resolve_on_success_off_a_rerun_leaves_the_incident_open(daily):
    loader, writer = daily
    DetectionRule.objects.filter(name="Run failed").update(params={"resolve_on_success": False})
    run(writer, loader, START, status="FAILED")
    run(writer, loader, START + 2 * TICK)
    ticks(START + 4 * TICK, 3)
    assert [i.status for i in incidents_of(loader)] == ["OPEN"]


def test_a_manual_resolve_without_a_new_failure_stays_resolved(daily, operator):
    loader, writer = daily
    run(writer, loader, START, status="FAILED")
    ticks(START + TICK, 2)
    (incident,) = incidents_of(loader)
    incident_resolve(user=operator, incident=incident, comment="known, fixed upstream")
    ticks(START + 3 * TICK, 20)  # the failed run is still in the 15-minute window for most of them
    (incident,) = incidents_of(loader)
    assert incident.status == "RESOLVED" and incident.occurrences == 1
    assert not incident.events.filter(kind=EventKind.REOPENED).exists()


def test_a_manual_resolve_then_a_new_failure_reopens_saying_which(daily, operator):
    loader, writer = daily
    run(writer, loader, START, status="FAILED")
    ticks(START + TICK, 2)
    (incident,) = incidents_of(loader)
    incident_resolve(user=operator, incident=incident)
    ticks(START + 3 * TICK, 3)
    second = run(writer, loader, START + 6 * TICK, status="FAILED")
    ticks(START + 7 * TICK, 2)
    (incident,) = incidents_of(loader)
    assert incident.status == "OPEN" and incident.occurrences == 2
    (reopened,) = incident.events.filter(kind=EventKind.REOPENED)
    assert str(second.run_id) in reopened.message and "10:07 UTC" in reopened.message


def test_titles_follow_the_counts_and_occurrences_count_failures_not_evaluations(daily):
    loader, writer = daily
    run(writer, loader, START, status="FAILED")
    ticks(START + TICK, 5)
    (incident,) = incidents_of(loader)
    assert incident.occurrences == 1 and incident.title.startswith("DAILY: 1 failed run(s)")
    run(writer, loader, START + 6 * TICK, status="FAILED")
    run(writer, loader, START + 8 * TICK, status="FAILED")
    ticks(START + 10 * TICK, 3)
    (incident,) = incidents_of(loader)
    assert incident.occurrences == 2  # two evaluations saw new failures (the two came in one tick)
    assert (
        incident.title.startswith("DAILY: 3 failed run(s)") and "the latest at Thu 26 Nov 10:09 UTC" in incident.title
    )
    assert incident.description.startswith(incident.title) and "ORA-00942" not in incident.title
    assert incident.metrics["failed_runs"] == 3
    new_breaches = incident.events.filter(kind=EventKind.REFIRED, data__new_breach=True)
    assert new_breaches.count() == 1 and "failed at Thu 26 Nov 10:09 UTC" in new_breaches.get().message


def test_a_threshold_rule_resolved_by_hand_comes_back_only_after_a_clear(rule_factory, daily, operator):
    loader, _writer = daily
    DetectionRule.objects.update(enabled=False)
    rule = rule_factory("signal_failure_rate", threshold=5.0, message="{subject}: {value}% failed")
    add_signals(loader, failed=5, ok=5, at=START)
    rule_evaluate(rule=rule, now=START)
    incident_resolve(user=operator, incident=Incident.objects.get())
    for minute in range(1, 4):  # the same failures, still in the window
        assert rule_evaluate(rule=rule, now=START + minute * TICK).decisions[0].action == "held"
    rule_evaluate(rule=rule, now=START + 10 * TICK)  # out of the window: clear
    add_signals(loader, failed=9, ok=1, at=START + 12 * TICK)
    assert rule_evaluate(rule=rule, now=START + 12 * TICK).decisions[0].action == "reopened"
    incident = Incident.objects.get()
    assert incident.occurrences == 2 and incident.title == "DAILY: 90% failed"
    assert incident.events.get(kind=EventKind.REOPENED).message == "Reopened by a new breach: DAILY: 90% failed"


def test_a_stale_loader_is_one_occurrence_however_many_ticks(contract_loader):
    loader, writer = contract_loader("STALE-LONG", schedule_cron="", freshness_sla_minutes=30)
    run(writer, loader, START - dt.timedelta(hours=2))
    ticks(START, 15)
    (incident,) = incidents_of(loader)
    assert incident.occurrences == 1 and "no fresh data for 2 h 13 min" in incident.title  # the age as it is now


def test_each_run_out_of_range_is_a_breach_and_a_manual_resolve_waits_for_the_next_one(daily, operator):
    loader, writer = daily
    volume = DetectionRule.objects.get(name="Volume out of range")
    DetectionRule.objects.exclude(pk=volume.pk).update(enabled=False)

    def low_run(at: dt.datetime):
        created, _new = ingestion.run_start(
            writer=writer, data={"loader_code": loader.loader_code, "started_at": at.isoformat()}
        )
        finished = (at + TICK).isoformat()
        return ingestion.run_finish(
            writer=writer, run=created, data={"status": "SUCCEEDED", "finished_at": finished, "rows_written": 3}
        )

    low_run(START)
    ticks(START + 2 * TICK, 5)  # five evaluations of the one run: one occurrence
    (incident,) = incidents_of(loader)
    assert incident.occurrences == 1
    incident_resolve(user=operator, incident=incident)
    ticks(START + 7 * TICK, 3)
    assert Incident.objects.get(pk=incident.pk).status == "RESOLVED"  # the same run: it stays resolved
    second = low_run(START + 10 * TICK)
    ticks(START + 12 * TICK, 2)
    incident.refresh_from_db()
    assert incident.status == "OPEN" and incident.occurrences == 2
    assert f"run {second.run_id} wrote 3 rows" in incident.events.get(kind=EventKind.REOPENED).message


def test_a_stale_loader_resolved_by_hand_reopens_only_when_it_goes_stale_again(contract_loader, operator):
    loader, writer = contract_loader("STALE-AGAIN", schedule_cron="", freshness_sla_minutes=30)
    run(writer, loader, START - dt.timedelta(minutes=60))
    tick(START)
    (incident,) = incidents_of(loader)
    incident_resolve(user=operator, incident=incident, comment="source system down, known")
    ticks(START + TICK, 5)  # still stale since the same data
    assert Incident.objects.get(pk=incident.pk).status == "RESOLVED"
    run(writer, loader, START + 10 * TICK)  # fresh data at 10:11 UTC (11:11 CET)
    tick(START + 12 * TICK)
    tick(START + 42 * TICK)  # 31 minutes later: stale again, since newer data
    incident.refresh_from_db()
    assert incident.status == "OPEN" and incident.occurrences == 2
    reopened = incident.events.get(kind=EventKind.REOPENED).message
    assert reopened.startswith("Reopened by a new breach: STALE-AGAIN: no fresh data for 31 min")
    assert "last data: Thu 26 Nov 11:11 CET" in reopened
