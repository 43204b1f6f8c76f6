"""A day of runs for five loaders, sent through the API on a controlled clock: exactly the expected incidents.

ON-TIME runs as planned; LATE starts 40 minutes late; FAILED fails; LONG runs 70
minutes (limit 30); LOW-VOL writes 10 rows (expected 1,000-5,000). The seeded
rules are evaluated every 10 minutes of the simulated day.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from rest_framework.test import APIClient

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from loaders import services as registry
from loaders.models import Loader
from signals_app import tokens as ingest

DAY = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
TICK = dt.timedelta(minutes=10)

LOADERS = {
    # code: (cron, max minutes, rows min, rows max)
    "ON-TIME": ("0 2 * * *", 30, 100, 1000),
    "LATE": ("0 3 * * *", 30, 100, 1000),
    "FAILED": ("0 4 * * *", 30, 100, 1000),
    "LONG": ("0 5 * * *", 30, 100, 1000),
    "LOW-VOL": ("0 6 * * *", 30, 1000, 5000),
}

# (start, finish, status, rows written) per loader, as clock times on DAY.
RUNS = {
    "ON-TIME": ("02:01", "02:11", "SUCCEEDED", 500),
    "LATE": ("03:40", "03:50", "SUCCEEDED", 500),
    "FAILED": ("04:00", "04:05", "FAILED", None),
    "LONG": ("05:00", "06:10", "SUCCEEDED", 500),
    "LOW-VOL": ("06:00", "06:10", "SUCCEEDED", 10),
}


def at(clock: str) -> dt.datetime:
    hours, minutes = map(int, clock.split(":"))
    return DAY + dt.timedelta(hours=hours, minutes=minutes)


@pytest.fixture
def day_setup(editor, approver, team):
    clients = {}
    for code, (cron, max_minutes, low, high) in LOADERS.items():
        loader = registry.loader_create(
            user=editor,
            data={
                "loader_code": code,
                "name": code,
                "owner": team.slug,
                "schedule_cron": cron,
                "schedule_timezone": "UTC",
                "grace_minutes": 15,
                "max_duration_minutes": max_minutes,
                "expected_rows_min": low,
                "expected_rows_max": high,
            },
        )
        version = registry.loader_version_submit(user=editor, version=loader.open_version)
        registry.loader_version_approve(user=approver, version=version)
        type(version).objects.filter(pk=version.pk).update(decided_at=DAY)  # approved at the start of the day
        _token, raw = ingest.ingest_token_create(user=editor, loader=Loader.objects.get(pk=loader.pk), name="job")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        clients[code] = client
    return clients


def send(client: APIClient, method: str, url: str, payload: dict) -> dict:
    response = getattr(client, method)(url, json.dumps(payload), content_type="application/json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_a_day_of_runs_gives_exactly_the_expected_incidents(day_setup):
    clients = day_setup
    rules = list(DetectionRule.objects.filter(enabled=True))
    events = sorted(
        [(at(start), "start", code) for code, (start, _f, _s, _r) in RUNS.items()]
        + [(at(finish), "finish", code) for code, (_s, finish, _st, _r) in RUNS.items()]
    )
    run_ids: dict[str, str] = {}
    clock = DAY
    while clock < DAY + dt.timedelta(days=1):
        while events and events[0][0] <= clock:
            moment, what, code = events.pop(0)
            if what == "start":
                run_ids[code] = send(
                    clients[code], "post", "/api/v1/runs/", {"loader_code": code, "started_at": moment.isoformat()}
                )["run_id"]
            else:
                _start, _finish, status, rows = RUNS[code]
                payload = {"status": status, "finished_at": moment.isoformat()}
                if rows is not None:
                    payload.update(rows_read=rows, rows_written=rows)
                send(clients[code], "patch", f"/api/v1/runs/{run_ids[code]}/", payload)
        for rule in rules:
            rule_evaluate(rule=rule, now=clock)
        clock += TICK

    found = sorted((i.rule.name, i.subject) for i in Incident.objects.select_related("rule"))
    assert found == sorted(
        [
            ("Missed run", "LATE"),
            ("Run failed", "FAILED"),  # one failed run, one incident: its own signals are not a failure rate
            ("Run too long", "LONG"),
            ("Volume out of range", "LOW-VOL"),
        ]
    )
    by_rule = {i.rule.name: i for i in Incident.objects.select_related("rule")}
    assert by_rule["Missed run"].status == "RESOLVED"  # the late run started: cleared by itself
    assert by_rule["Run failed"].status == "RESOLVED"  # out of the 15-minute window again
    assert by_rule["Volume out of range"].status == "OPEN"  # still the latest run of the day
    assert by_rule["Missed run"].first_seen == at("03:20")
    # Titles people read: local times and durations in words, the counts as they were last measured.
    assert by_rule["Missed run"].title.startswith("LATE: the run due Thu 26 Nov 03:00 UTC did not start")
    assert by_rule["Run too long"].title == "LONG: a run has taken 1 h 10 min (limit 30 min)"
    assert by_rule["Run failed"].title.endswith(
        "1 failed run(s) or FAILED signal(s) in the last 15 minutes, the latest at Thu 26 Nov 04:05 UTC"
    )
    assert {i.occurrences for i in by_rule.values()} == {1}  # one breach each, however many ticks saw it
    assert by_rule["Run too long"].first_seen == at("05:40")
