"""Detection scenarios on a controlled clock, with the seeded rules, as users meet them: one problem
is one incident; a skipped run of a frequent loader is reported within grace + one tick; stale data
is one freshness incident; a paused loader is never stale."""

from __future__ import annotations

import datetime as dt

import pytest

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from loaders import services as registry
from loaders.models import Loader, LoaderVersion
from signals_app import services as ingestion
from signals_app import tokens as ingest
from signals_app.models import Signal

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
