"""Horizontal scaling of batch ingest (issue 17): 1 vs 2 web instances and 1 vs 3 Celery workers,
same run, same data, on PostgreSQL + Redis; the CPU each signal costs, and PostgreSQL's bytes per
stored signal — the figures docs/scaling.md's sizing table is computed from.

Method
------
Each configuration starts its own processes with production settings: ``web`` gunicorn instances
(deploy/gunicorn.conf.py, one worker process x 4 threads each: an instance is a replica) and
``workers`` Celery worker nodes (concurrency 1 each), on the benchmark database and Redis. The same
pre-encoded batches (``BATCHES`` x ``BATCH`` signals over ``LOADERS`` loaders, every 50th signal
FAILED, so each batch also queues the detection fast path for its loader) are sent by
``CLIENT_THREADS`` client threads with keep-alive connections, spread over the instances.

Measured per configuration:

- **ingest**: signals/s from the first request to the last 2xx answer (the web tier's rate);
- **drained**: from the first request until the broker holds no task, queued or running (Redis:
  the queue is empty and no message is unacknowledged): what the workers add;
- **CPU**: user + system seconds, from /proc, of the gunicorn processes, the Celery processes and
  this database's PostgreSQL backends, per 1,000 signals (Redis, shared with others, is left out).

The configurations run twice, interleaved (1/1, 2/1, 1/3, 2/3, then again), and the table shows
each run: on a shared 2-core machine a neighbour's burst moves one window. The signals table is
emptied between configurations; the incidents the FAILED signals open are deleted with it.

Then the same CPU reading for ``SINGLE_REQUESTS`` POSTs of one signal each (one instance, one
worker): a job that does not batch pays per request, not per signal, and the sizing table shows
both. Worker replicas for detection are computed from bench_detection's measured cycle CPU.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import os
import signal
import statistics
import subprocess
import threading
import time

from common import (
    REDIS_URL,
    cpu_seconds,
    gunicorn_command,
    healthz_wait,
    maker_and_checker,
    production_env,
    start,
    workers_start,
)
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from incidents.models import Incident, RuleSubjectState
from loaders import services as loader_services
from loaders.models import Loader, Team
from signals_app import tokens
from tests.net import free_port

LOADERS = 8
BATCH = 1_000
BATCHES = 80  # 80,000 signals per configuration
CLIENT_THREADS = 8
FAILED_EVERY = 50
CONFIGURATIONS = [(1, 1), (2, 1), (1, 3), (2, 3)]  # (web instances, worker nodes)
ROUNDS = 2
SINGLE_REQUESTS = 3_000  # one signal per request: what a job without batching costs
PREFIX = "SCALING"
# Worker and detection figures measured by the other benchmarks (docs/benchmarks.md): the CPU of one
# detection cycle of 200 rules x 1,000 loaders (bench_detection, 2026-12-03 re-run) and of one
# delivery sent (bench_notifications: ~1.4 ms per delivery in the worker).
DETECTION_CYCLE_CPU_S = 0.78
DETECTION_CYCLE_RULE_LOADERS = 200 * 1_000
DELIVERY_CPU_S = 0.0014
SECONDS_PER_DAY = 86_400


def _setup() -> dict[str, str]:
    """``LOADERS`` ACTIVE loaders (four eyes, through the services) and an ingest token each."""
    maker, checker = maker_and_checker("scaling")
    team = Team.objects.create(slug="scaling", name="Scaling")
    raw_tokens = {}
    for i in range(LOADERS):
        code = f"{PREFIX}-{i}"
        loader = loader_services.loader_create(user=maker, data={"loader_code": code, "name": code, "owner": team.slug})
        version = loader_services.loader_version_submit(user=maker, version=loader.open_version)
        loader_services.loader_version_approve(user=checker, version=version)
        _token, raw_tokens[code] = tokens.ingest_token_create(
            user=maker, loader=Loader.objects.get(pk=loader.pk), name="b"
        )
    return raw_tokens


def _cleanup() -> None:
    loaders = Loader.objects.filter(loader_code__startswith=f"{PREFIX}-")
    _empty(loaders)
    loaders.delete()
    Team.objects.filter(slug="scaling").delete()
    User.objects.filter(username__in=["scaling-maker", "scaling-checker"]).delete()


def _empty(loaders) -> None:
    """Empty the signals table (only benchmark data lives there now) and the incidents the FAILED
    signals opened, so every configuration starts from the same state."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE signals_app_signal")
    Incident.objects.filter(loader__in=loaders).delete()
    RuleSubjectState.objects.filter(subject__in=[loader.loader_code for loader in loaders]).delete()


def _bodies(raw_tokens: dict[str, str]) -> list[tuple[str, bytes]]:
    captured = (timezone.now() - dt.timedelta(minutes=2)).isoformat()
    codes = sorted(raw_tokens)
    bodies = []
    for b in range(BATCHES):
        code = codes[b % len(codes)]
        items = [
            {
                "loader_code": code,
                "signal_key": f"metric_{i % 20}",
                "signal_value": i % 1000,
                "validation_status": "FAILED" if i % FAILED_EVERY == 0 else "SUCCESS",
                "metric_type": "ROW_COUNT",
                "captured_at": captured,
                "correlation_id": f"scaling-{b}",
            }
            for i in range(BATCH)
        ]
        bodies.append((raw_tokens[code], json.dumps(items).encode()))
    return bodies


def _env(**extra: str) -> dict[str, str]:
    # 2 % FAILED stays under the default failure-rate rule (5 %): the fast path evaluates, opens
    # nothing; notifications off all the same, so no retry of an unreachable receiver outlives a run.
    return production_env(NOTIFICATIONS_ENABLED="false", **extra)


def _web_start(port: int) -> subprocess.Popen:
    env = _env(
        ALLOWED_HOSTS="127.0.0.1,localhost", SIGNAL_INGEST_RATE="100000000/min", WEB_CONCURRENCY="1", WEB_THREADS="4"
    )
    proc = start(gunicorn_command(port), env)
    healthz_wait(port)
    return proc


def _family(pid: int) -> list[int]:
    """The process and its descendants."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *(p for child in out for p in _family(int(child)))]


def _cpu(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seconds


def _backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def _broker_busy(client) -> bool:
    """Tasks queued or running (kombu's Redis transport keeps running ones in ``unacked``)."""
    return bool(client.llen("celery") or client.hlen("unacked"))


def _send(ports: list[int], bodies: list[tuple[str, bytes]]) -> float:
    queue = list(range(len(bodies)))
    lock = threading.Lock()
    errors: list[str] = []

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[n % len(ports)], timeout=120)
        while True:
            with lock:
                if not queue:
                    return
                index = queue.pop()
            token, body = bodies[index]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            conn.request("POST", "/api/v1/signals/", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                errors.append(str(response.status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} batch requests failed: {errors[:5]}")
    return time.perf_counter() - started


def _configuration(web: int, workers: int, bodies: list[tuple[str, bytes]]) -> dict[str, float]:
    import redis

    broker = redis.Redis.from_url(REDIS_URL)
    broker.delete("celery", "unacked", "unacked_index")
    ports = [free_port() for _ in range(web)]
    servers = [_web_start(port) for port in ports]
    nodes = workers_start(workers, _env(), "scaling", concurrency=1)
    try:
        time.sleep(3)  # the worker nodes connect to the broker
        web_pids = [pid for s in servers for pid in _family(s.pid)]
        worker_pids = [pid for w in nodes for pid in _family(w.pid)]
        before = {"web": _cpu(web_pids), "worker": _cpu(worker_pids), "postgres": _cpu(_backends())}
        started = time.perf_counter()
        ingest_seconds = _send(ports, bodies)
        while _broker_busy(broker) and time.perf_counter() - started < 300:
            time.sleep(0.05)
        drained_seconds = time.perf_counter() - started
        after = {"web": _cpu(web_pids), "worker": _cpu(worker_pids), "postgres": _cpu(_backends())}
    finally:
        for proc in [*servers, *nodes]:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*servers, *nodes]:
            proc.wait(timeout=60)
    total = len(bodies) * BATCH
    cpu = {kind: sum(v - before[kind].get(pid, 0.0) for pid, v in after[kind].items()) for kind in after}
    return {
        "web": web,
        "workers": workers,
        "signals_per_s": total / ingest_seconds,
        "drained_per_s": total / drained_seconds,
        "drain_lag_s": drained_seconds - ingest_seconds,
        **{f"cpu_{kind}_per_1k": seconds / total * 1000 for kind, seconds in cpu.items()},
    }


def _single(raw_tokens: dict[str, str]) -> dict[str, float]:
    """One web instance, one worker: ``SINGLE_REQUESTS`` POSTs of one signal each, CPU per request."""
    code = sorted(raw_tokens)[0]
    captured = (timezone.now() - dt.timedelta(minutes=2)).isoformat()
    body = {"loader_code": code, "signal_key": "rows", "signal_value": 1, "validation_status": "SUCCESS",
            "captured_at": captured}  # fmt: skip
    bodies = [(raw_tokens[code], json.dumps(body).encode())] * SINGLE_REQUESTS
    port = free_port()
    server = _web_start(port)
    nodes = workers_start(1, _env(), "scaling-single", concurrency=1)
    try:
        time.sleep(3)
        web_pids = [pid for pid in _family(server.pid)]
        worker_pids = [pid for w in nodes for pid in _family(w.pid)]
        before = {"web": _cpu(web_pids), "worker": _cpu(worker_pids), "postgres": _cpu(_backends())}
        seconds = _send([port], bodies)
        after = {"web": _cpu(web_pids), "worker": _cpu(worker_pids), "postgres": _cpu(_backends())}
    finally:
        for proc in [server, *nodes]:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in [server, *nodes]:
            proc.wait(timeout=60)
    cpu = {kind: sum(v - before[kind].get(pid, 0.0) for pid, v in after[kind].items()) for kind in after}
    return {
        "requests_per_s": SINGLE_REQUESTS / seconds,
        **{f"cpu_{kind}_ms": value / SINGLE_REQUESTS * 1000 for kind, value in cpu.items()},
    }


def _bytes_per_signal() -> tuple[float, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('signals_app_signal')")
        size = int(cursor.fetchone()[0])
        cursor.execute("SELECT count(*) FROM signals_app_signal")
        count = cursor.fetchone()[0]
    return size / max(count, 1), count


def main() -> list[str]:
    if connection.vendor != "postgresql":
        return ["scaling: needs PostgreSQL"]
    raw_tokens = _setup()
    loaders = Loader.objects.filter(loader_code__startswith=f"{PREFIX}-")
    try:
        bodies = _bodies(raw_tokens)
        results = []
        size = (0.0, 0)
        for _round in range(ROUNDS):
            for web, workers in CONFIGURATIONS:
                _empty(loaders)
                results.append(_configuration(web, workers, bodies))
                if size[1] == 0:
                    size = _bytes_per_signal()
        _empty(loaders)
        single = _single(raw_tokens)
        _empty(loaders)
    finally:
        _cleanup()
    return _report(results, size, single)


def _report(results: list[dict[str, float]], size: tuple[float, int], single: dict[str, float]) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    print(f"Horizontal scaling of batch ingest, {BATCHES} x {BATCH:,} signals per configuration; {when}")
    print(f"load average before the report: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs\n")
    print("| web instances | worker nodes | ingest signals/s | drained signals/s | drain lag s "
          "| CPU s / 1k signals: web | worker | PostgreSQL |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['web']} | {r['workers']} | {r['signals_per_s']:,.0f} | {r['drained_per_s']:,.0f} "
            f"| {r['drain_lag_s']:.2f} | {r['cpu_web_per_1k']:.3f} | {r['cpu_worker_per_1k']:.3f} "
            f"| {r['cpu_postgres_per_1k']:.3f} |"
        )

    def median(web: int, workers: int, key: str) -> float:
        return statistics.median(r[key] for r in results if (r["web"], r["workers"]) == (web, workers))

    web_ratio = median(2, 1, "signals_per_s") / median(1, 1, "signals_per_s")
    worker_ratio = median(1, 3, "drained_per_s") / median(1, 1, "drained_per_s")
    both_ratio = median(2, 3, "signals_per_s") / median(1, 1, "signals_per_s")
    cpu = {k: statistics.median(r[f"cpu_{k}_per_1k"] for r in results) for k in ("web", "worker", "postgres")}
    per_signal_bytes, counted = size
    print(
        f"\nratios (medians): 2 web / 1 web ingest {web_ratio:.2f}x; 3 workers / 1 worker drained {worker_ratio:.2f}x;"
        f" 2 web + 3 workers / 1 + 1 ingest {both_ratio:.2f}x"
    )
    print(
        f"CPU per 1,000 signals (median over all runs): web {cpu['web']:.3f} s, worker {cpu['worker']:.3f} s, "
        f"PostgreSQL {cpu['postgres']:.3f} s; total {sum(cpu.values()):.3f} s"
    )
    print(
        f"PostgreSQL size per stored signal (pg_total_relation_size over the partitions, {counted:,} signals): "
        f"{per_signal_bytes:.0f} bytes"
    )
    print(
        f"one signal per request ({SINGLE_REQUESTS:,} POSTs, 1 web instance, {CLIENT_THREADS} clients): "
        f"{single['requests_per_s']:,.0f} requests/s; CPU per request: web {single['cpu_web_ms']:.2f} ms, "
        f"worker {single['cpu_worker_ms']:.2f} ms, PostgreSQL {single['cpu_postgres_ms']:.2f} ms"
    )
    _sizing(cpu, per_signal_bytes, single)
    missed = []
    if any(r["signals_per_s"] <= 0 for r in results):
        missed.append("scaling: a configuration stored nothing")
    return missed


def _sizing(cpu: dict[str, float], per_signal_bytes: float, single: dict[str, float]) -> None:
    """The sizing table of docs/scaling.md, computed from this run's figures: replicas for a
    sustained rate at 60 % of their CPU limit (web pod: 1 CPU), two at least (one may be rolled)."""
    print(
        "\n| signals/s sustained | web CPU, batches of 1,000 | web CPU, one per request | web replicas "
        "(batches / single) | PostgreSQL CPU (batches / single) | PostgreSQL per retention day |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for rate in (10, 100, 1_000, 5_000):
        batched, one = rate * cpu["web"] / 1000, rate * single["cpu_web_ms"] / 1000
        db_batched, db_one = rate * cpu["postgres"] / 1000, rate * single["cpu_postgres_ms"] / 1000
        replicas = f"{max(2, math.ceil(batched / 0.6))} / {max(2, math.ceil(one / 0.6))}"
        day = _human(rate * SECONDS_PER_DAY * per_signal_bytes)
        print(f"| {rate:,} | {batched:.2f} | {one:.2f} | {replicas} | {db_batched:.2f} / {db_one:.2f} | {day} |")
    print("\n| loaders x rules (every 60 s) | detection CPU (cores) | worker replicas (2 CPU each) |")
    print("|---:|---:|---:|")
    for loaders, rules in ((100, 20), (1_000, 200), (10_000, 200), (10_000, 1_000)):
        cores = DETECTION_CYCLE_CPU_S * loaders * rules / DETECTION_CYCLE_RULE_LOADERS / 60
        print(f"| {loaders:,} x {rules:,} | {cores:.2f} | {max(2, math.ceil(cores / 1.2))} |")


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
