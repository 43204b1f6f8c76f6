"""Incident storm: one detection batch opening and routing 1,000 incidents, on PostgreSQL.

Issue #14 part 7: 1,000 incidents opened AND routed (their deliveries written to the outbox)
in one detection batch ≤ 3 s (about 18 s before the bulk path, ≈ 28 queries per incident).

Method
------
Loaders with failing signals (bench/common.py) and one HIGH failure-rate rule whose
notification rule routes to an email recipient and a Slack channel: one claimed batch
(``rules_evaluate_claimed``, as the tick's task runs it) opens every incident, writes their
timeline and two deliveries each, and commits; the commit queues the sends on Redis (no
worker runs: only the opening is measured). Two cases: 1,000 subjects breaching one rule,
and 3 rules × 400 subjects evaluated in one batch. Reported: seconds from the claim to the
commit, queries in the batch and per incident. Each case runs on fresh tables.

Alertmanager: one webhook post of ALERTMANAGER_MAX_ALERTS (200) new critical alerts through
Django's test client (authentication, parsing, opening and routing, commit): seconds and queries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from common import broker_use_and_purge, failing_loaders_drop, failing_loaders_seed, queries_counted
from django.conf import settings
from django.db import connection
from django.utils import timezone

from incidents.detection import rules_evaluate_claimed
from incidents.models import DetectionRule, Incident
from integrations.models import Channel, Delivery, NotificationRule
from signals_app.retention import signals_partitions_ensure

T = TypeVar("T")

MAX_SECONDS = 3.0  # 1,000 incidents opened and routed in one batch
CASES = ((1, 1_000), (3, 400))  # (rules, subjects)


def _seed(rules: int, subjects: int) -> list[int]:
    failing_loaders_seed("STM", subjects, "bench-storm")
    Channel.objects.update_or_create(name="email", defaults={"kind": "EMAIL", "enabled": True})
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    NotificationRule.objects.filter(severity="HIGH", team=None, tag=None).update(
        channels=["email", "slack"], recipients=["platform-team@company.com"], slack_channel="#alerts-high"
    )
    return [
        DetectionRule.objects.create(
            name=f"bench storm {i}", kind="signal_failure_rate", threshold=5.0 + i, severity="HIGH"
        ).pk
        for i in range(rules)
    ]


def _clean(rule_ids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE integrations_delivery, integrations_incidentnotification, incidents_incident, "
            "incidents_incidentevent, incidents_rulesubjectstate, signals_app_signal CASCADE"
        )
    DetectionRule.objects.filter(pk__in=rule_ids).delete()
    failing_loaders_drop("STM", "bench-storm")


def _measured(call: Callable[[], T]) -> tuple[T, int, float, float]:
    """(what ``call`` returned, queries it ran, seconds, CPU seconds of this process)."""
    with queries_counted() as queries:
        started, cpu = time.perf_counter(), time.process_time()
        result = call()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return result, queries.count, seconds, cpu


def _storm(rules: int, subjects: int) -> tuple[int, int, int, float, float]:
    """(incidents, deliveries, queries, seconds, CPU seconds of this process) of one batch opening
    every incident."""
    rule_ids = _seed(rules, subjects)
    try:
        # claims, opens, routes, commits
        _, queries, seconds, cpu = _measured(lambda: rules_evaluate_claimed(rule_ids=rule_ids, now=timezone.now()))
        return Incident.objects.count(), Delivery.objects.count(), queries, seconds, cpu
    finally:
        broker_use_and_purge()  # nothing is sent: drop the queued sends
        _clean(rule_ids)


def _alertmanager() -> tuple[int, int, int, float, float]:
    """(incidents, deliveries, queries, seconds, CPU seconds) of one Alertmanager post of the cap."""
    from django.test import Client

    token = "bench-am-token"
    settings.ALERTMANAGER_WEBHOOK_TOKEN = token
    count = settings.ALERTMANAGER_MAX_ALERTS
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "etl-monitor",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "ProbeFailure",
                    "instance": f"https://shop-{n}.example.org",
                    "severity": "critical",
                },
                "annotations": {"summary": "Shop probe failing"},
                "startsAt": "2026-05-04T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"{n:016x}",
            }
            for n in range(count)
        ],
    }
    data = json.dumps(body).encode()
    try:
        response, queries, seconds, cpu = _measured(
            lambda: Client().post(
                "/integrations/alertmanager/webhook/",
                data=data,
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        assert response.status_code == 200, response.content[:300]
        return Incident.objects.count(), Delivery.objects.count(), queries, seconds, cpu
    finally:
        broker_use_and_purge()
        _clean([])


def main() -> list[str]:
    from etl_monitor.roles import roles_sync

    roles_sync()
    settings.SLACK_BOT_TOKEN = "xoxb-bench"  # the Slack channel is configured (nothing is sent)
    signals_partitions_ensure(days_before=1, days_ahead=2)
    broker_use_and_purge()  # the commit queues the sends on Redis, as in production
    print(f"Incident storm, PostgreSQL; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(
        "| rules × subjects | incidents | deliveries | queries | queries / incident | seconds | CPU s (this process) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    missed = []
    for rules, subjects in CASES:
        incidents, deliveries, queries, seconds, cpu = _storm(rules, subjects)
        print(
            f"| {rules} × {subjects:,} | {incidents:,} | {deliveries:,} | {queries:,} "
            f"| {queries / max(incidents, 1):.2f} | {seconds:.2f} s | {cpu:.2f} s |",
            flush=True,
        )
        if incidents != rules * subjects or deliveries != 2 * incidents:
            missed.append(f"storm: {incidents} incidents, {deliveries} deliveries for {rules} × {subjects}")
        if seconds > MAX_SECONDS * incidents / 1_000:
            missed.append(
                f"storm: {incidents:,} incidents opened and routed in {seconds:.2f} s "
                f"(target ≤ {MAX_SECONDS} s per 1,000)"
            )
    incidents, deliveries, queries, seconds, cpu = _alertmanager()
    print(
        f"| Alertmanager post of {settings.ALERTMANAGER_MAX_ALERTS} alerts | {incidents:,} | {deliveries:,} "
        f"| {queries:,} | {queries / max(incidents, 1):.2f} | {seconds:.2f} s | {cpu:.2f} s |",
        flush=True,
    )
    if incidents != settings.ALERTMANAGER_MAX_ALERTS:
        missed.append(f"storm: an Alertmanager post of {settings.ALERTMANAGER_MAX_ALERTS} opened {incidents}")
    return missed
