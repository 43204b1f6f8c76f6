"""Notifications: 1,000 incidents opened at once, delivered by two real workers to a local Slack
Web API and a local SMTP server.

Issue (notifications): all deliveries complete, zero duplicates; report deliveries per second
and the p95 time from incident open (its commit) to message received — target ≤ 2 s with two
workers.

Method
------
1,000 loaders each get failing signals; one HIGH rule (roadmap routing: email to
platform-team@… and Slack #alerts-high) is evaluated once, which opens the 1,000 incidents in
one transaction and, with them, their 2,000 deliveries. Two Celery worker processes on Redis
send them to local servers: a threaded fake of Slack's Web API
(tests/integrations/fakes.py) and aiosmtpd. Each received message is matched to its delivery
(Slack metadata key, email Message-ID) and timed against the commit. The receivers run in
processes of their own, as remote servers would.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
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
from integrations.models import Channel, Delivery, NotificationRule
from signals_app.retention import signals_partitions_ensure
from tests.integrations.fakes import receiver_process

ROOT = Path(__file__).resolve().parent.parent
N_INCIDENTS = 1_000
WORKERS = 2
MAX_P95_S = 2.0
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def _seed() -> DetectionRule:
    failing_loaders_seed("NTF", N_INCIDENTS, "bench-notify")
    Channel.objects.update_or_create(name="email", defaults={"kind": "EMAIL", "enabled": True})
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    NotificationRule.objects.filter(severity="HIGH", team=None, tag=None).update(
        channels=["email", "slack"], recipients=["platform-team@company.com"], slack_channel="#alerts-high"
    )
    return DetectionRule.objects.create(
        name="bench notifications", kind="signal_failure_rate", threshold=5.0, severity="HIGH"
    )


def _cpu(workers: list[subprocess.Popen], receivers: list) -> dict[str, float]:
    """CPU seconds used so far by the workers (with their pool processes), the receivers, this
    process, and the whole machine (PostgreSQL, Redis and everything else included)."""
    import resource

    tick = os.sysconf("SC_CLK_TCK")

    def tree(pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-s", str(os.getpgid(pid))], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def cpu_of(pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    usage = resource.getrusage(resource.RUSAGE_SELF)
    machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return {
        "workers": cpu_of([p for w in workers for p in tree(w.pid)]),
        "receivers": cpu_of([r.pid for r in receivers]),
        "this process": usage.ru_utime + usage.ru_stime,
        "machine busy": sum(machine) / tick - (machine[3] + machine[4]) / tick,  # all but idle and iowait
    }


def main() -> list[str]:
    from etl_monitor.roles import roles_sync

    roles_sync()
    signals_partitions_ensure(days_before=1, days_ahead=2)
    rule = _seed()
    # The receivers run in processes of their own, as remote servers would (in this process they
    # would share one interpreter lock with each other and with the polling below).
    context = multiprocessing.get_context("spawn")
    pipes, receivers = {}, []
    for kind in ("slack", "smtp"):
        ours, theirs = context.Pipe()
        proc = context.Process(target=receiver_process, args=(kind, theirs), daemon=True)
        proc.start()
        pipes[kind] = ours
        receivers.append(proc)
    slack_url, smtp_port = pipes["slack"].recv(), pipes["smtp"].recv()
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-bench", slack_url
    broker_use_and_purge()  # this process enqueues (on commit) to the workers' broker
    workers = workers_start(
        WORKERS,
        production_env(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_API_BASE_URL=slack_url,
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp_port),
        ),
        "notify",
        concurrency=int(os.environ.get("BENCH_NOTIFY_CONCURRENCY", "1")),
    )
    missed: list[str] = []
    try:
        time.sleep(4)  # the workers connect to the broker
        opened_at = time.time()
        # As the tick's task does: one claimed batch, one commit for 1,000 incidents and 2,000 deliveries.
        rules_evaluate_claimed(rule_ids=[rule.pk], now=timezone.now())
        committed = time.time()
        cpu_before = _cpu(workers, receivers)
        total = Delivery.objects.count()
        deadline = committed + 300
        while Delivery.objects.exclude(status="SENT").exists() and time.time() < deadline:
            time.sleep(0.2)
        done = time.time()
        cpu_after = _cpu(workers, receivers)
        incidents = Incident.objects.filter(rule=rule).count()
        sent = dict(Delivery.objects.filter(status="SENT").values_list("key", "external_id"))
    finally:
        stop(workers)
        for pipe in pipes.values():
            pipe.send("stop")
        posts = pipes["slack"].recv()
        received, emails = pipes["smtp"].recv()
        for proc in receivers:
            proc.join(timeout=10)
    arrivals = [at for _ts, at, _meta in posts] + list(received.values())
    latencies = [at - committed for at in arrivals]
    slack_posts = len(posts)
    slack_keys = [meta["event_payload"]["key"] for _ts, _at, meta in posts]
    duplicates = (len(slack_keys) - len(set(slack_keys))) + (emails - len(received))
    missing = total - (len(set(slack_keys)) + len(received))
    rate = total / (max(arrivals) - committed)
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1]
    print(
        f"Notifications, PostgreSQL + Redis, {WORKERS} workers; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| incidents | deliveries | SENT | Slack posts | emails | duplicates | deliveries/s | p50 | p95 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {incidents:,} | {total:,} | {len(sent):,} | {slack_posts:,} | {emails:,} | {duplicates} | {rate:,.0f} "
        f"| {p50:.2f} s | {p95:.2f} s |"
    )
    print(
        f"\nopening the incidents (one transaction, routing included): {committed - opened_at:.2f} s; "
        f"all sent {done - committed:.1f} s after the commit (target p95 ≤ {MAX_P95_S} s)",
        flush=True,
    )
    spent = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    print(
        "CPU seconds from the commit to the last delivery: "
        + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
        + f" (of {(done - committed) * (os.cpu_count() or 1):.1f} on {os.cpu_count()} cores)"
    )
    if len(sent) != total:
        missed.append(f"notifications: {total - len(sent)} deliveries not sent")
    if missing:
        missed.append(f"notifications: {missing} messages never received")
    if duplicates:
        missed.append(f"notifications: {duplicates} duplicate messages")
    if p95 > MAX_P95_S:
        missed.append(f"notifications: p95 open → received {p95:.2f} s (target ≤ {MAX_P95_S} s)")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE integrations_delivery, integrations_incidentnotification, incidents_incident, "
            "incidents_incidentevent, incidents_rulesubjectstate, signals_app_signal CASCADE"
        )
    rule.delete()
    failing_loaders_drop("NTF", "bench-notify")
    return missed
