"""Jira: 500 incidents opened at once against a Jira that answers 429 to 20% of requests and
times out on 5% of creates (after storing the issue), with two real workers.

Issue (Jira): 100% of tickets created eventually, zero duplicates — report the success rate.

Method
------
500 loaders each get failing signals; one HIGH rule is evaluated the way the tick's task does
(one claimed batch, one commit), which opens the 500 incidents and their 500 Jira deliveries
(notifications are switched off here to measure Jira alone). Two Celery worker processes on
Redis send them, through the delivery outbox, to a fake Jira REST server
(tests/integrations/jira_fake.py) running in a process of its own. The fake answers 429 with
``Retry-After: 1`` to 20% of requests and, for 5% of the creates, stores the issue and answers
only after the client's timeout. The run ends when every delivery is SENT or GAVE_UP; tickets
are then counted per incident by the ``etlm-incident-<id>`` label each one carries.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from common import (
    broker_use_and_purge,
    failing_loaders_drop,
    failing_loaders_seed,
    production_env,
    stop,
    workers_start,
)
from django.conf import settings
from django.db import connection
from django.utils import timezone

from incidents.detection import rules_evaluate_claimed
from incidents.models import DetectionRule, Incident
from integrations.models import Delivery
from signals_app.retention import signals_partitions_ensure
from tests.integrations.jira_fake import jira_process

ROOT = Path(__file__).resolve().parent.parent
N_INCIDENTS = 500
WORKERS = 2
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
JIRA = {"JIRA_USERNAME": "bot@example.com", "JIRA_API_TOKEN": "jira-token", "JIRA_PROJECT": "OPS"}


def _seed() -> DetectionRule:
    failing_loaders_seed("JRA", N_INCIDENTS, "bench-jira")
    return DetectionRule.objects.create(name="bench jira", kind="signal_failure_rate", threshold=5.0, severity="HIGH")


def main() -> list[str]:
    from etl_monitor.roles import roles_sync

    roles_sync()
    signals_partitions_ensure(days_before=1, days_ahead=2)
    rule = _seed()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    fake = context.Process(target=jira_process, args=(theirs, 0.2, 0.05, 2.0, 1), daemon=True)
    fake.start()
    jira_url = ours.recv()
    for name, value in {
        **JIRA,
        "JIRA_ENABLED": True,
        "JIRA_BASE_URL": jira_url,
        "NOTIFICATIONS_ENABLED": False,
    }.items():
        setattr(settings, name, value)
    broker_use_and_purge()
    workers = workers_start(
        WORKERS,
        production_env(
            JIRA_ENABLED="true",
            JIRA_BASE_URL=jira_url,
            JIRA_TIMEOUT="1",
            **JIRA,
            # Short waits so the run takes seconds, not the production minutes (attempts: the default 8).
            NOTIFY_BACKOFF_BASE_SECONDS="0.5",
            NOTIFY_BACKOFF_MAX_SECONDS="5",
            LOG_LEVEL="ERROR",
        ),
        "jira",
    )
    try:
        time.sleep(4)
        rules_evaluate_claimed(rule_ids=[rule.pk], now=timezone.now())
        committed = time.time()
        deadline = committed + 600
        while Delivery.objects.exclude(status__in=["SENT", "GAVE_UP"]).exists() and time.time() < deadline:
            time.sleep(0.5)
        elapsed = time.time() - committed
        incidents = list(Incident.objects.filter(rule=rule).values_list("pk", "external_key"))
        sent = Delivery.objects.filter(status="SENT").count()
        gave_up = Delivery.objects.filter(status="GAVE_UP").count()
        attempts = sum(Delivery.objects.values_list("attempts", flat=True))
        pending = Delivery.objects.exclude(status__in=["SENT", "GAVE_UP"]).count()
        failures = list(Delivery.objects.filter(status="GAVE_UP").values_list("attempts", "last_error")[:5])
    finally:
        stop(workers)
        ours.send("stop")
        tally = ours.recv()
        fake.join(timeout=10)
    counts = tally["labels"]
    with_one = sum(1 for pk, _key in incidents if counts.get(f"etlm-incident-{pk}") == 1)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    keyed = sum(1 for _pk, key in incidents if key)
    rate = 100.0 * with_one / len(incidents) if incidents else 0.0
    print(f"Jira, PostgreSQL + Redis, {WORKERS} workers; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(
        "| incidents | tickets created | success rate | duplicates | key on the incident | gave up | attempts "
        "| 429s answered | create POSTs | seconds |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(incidents)} | {sum(counts.values())} | {rate:.1f}% | {duplicates} | {keyed} | {gave_up} | {attempts} "
        f"| {tally['statuses'].get(429, 0)} | {tally['creates']} | {elapsed:.1f} |",
        flush=True,
    )
    for tries, error in failures:
        print(f"gave up after {tries} attempts: {error}")
    missed = []
    if rate < 100.0 or pending or gave_up or sent != len(incidents):
        missed.append(f"jira: {rate:.1f}% of incidents with exactly one ticket ({gave_up} gave up, {pending} pending)")
    if duplicates:
        missed.append(f"jira: {duplicates} duplicate tickets")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE integrations_delivery, integrations_incidentnotification, incidents_incident, "
            "incidents_incidentevent, incidents_rulesubjectstate, signals_app_signal CASCADE"
        )
    rule.delete()
    failing_loaders_drop("JRA", "bench-jira")
    return missed
