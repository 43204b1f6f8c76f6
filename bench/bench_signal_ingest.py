"""Signal ingestion through the real HTTP stack (gunicorn, PostgreSQL, Redis).

Issue (signal ingestion), on PostgreSQL:

1. Batch ingest: 200,000 signals, 1,000 per request, through gunicorn — throughput
   at least 30% of a raw ``COPY`` of the same rows into the same table, measured
   in the same run. Memory of a web worker afterwards reported.
2. Single-signal POSTs at 32 concurrent clients: requests per second at least half
   of what a trivial authenticated JSON view (``GET /api/v1/whoami/``, same token,
   same server) does in the same run; p99 latency reported.

Method
------
gunicorn runs with deploy/gunicorn.conf.py (2 workers x 4 threads on this
2-core machine) and production settings (DEBUG off), Redis as cache (the
per-token rate limit), the rate limit raised out of the way. Batch bodies are
encoded before the clock starts; 4 client threads with keep-alive connections
send them. The COPY baseline writes the same 200,000 rows with psycopg's COPY
from this process. The concurrent test uses ``wrk`` (Debian package) with 32
connections, whoami and ingest alternating six times for 6 s each: on a shared machine
a neighbour's burst can halve one window's rate, and more, shorter windows average it out.
The target compares the averages; each whoami window and the ingest window after it also
give a paired share, whose median and range are reported.

Each wrk run also reports the CPU time per request of the processes that serve it — the
gunicorn workers and this database's PostgreSQL backends, read from /proc (Redis, a process
shared with others, is left out). On a shared machine requests per second move with the
neighbours' load; CPU time per request moves far less, and says where the cost is.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import gunicorn_command, healthz_wait, maker_and_checker, production_env
from django.db import connection
from django.utils import timezone

from loaders import services as loader_services
from loaders.models import Loader, Team
from signals_app import tokens
from signals_app.models import Signal
from signals_app.services import SIGNAL_COLUMNS, SignalRow
from tests.net import free_port

ROOT = Path(__file__).resolve().parent.parent
TOTAL = 200_000
BATCH = 1_000
CLIENT_THREADS = 4
MIN_COPY_SHARE = 0.30
MIN_SINGLE_SHARE = 0.50
WRK_SECONDS = 6
WRK_ALTERNATIONS = 6
WRK_CONNECTIONS = 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/<pid>/stat's CPU times


def _setup() -> tuple[Loader, str]:
    maker, checker = maker_and_checker("bench")
    team = Team.objects.create(slug="bench", name="Bench")
    loader = loader_services.loader_create(
        user=maker, data={"loader_code": "BENCH-INGEST", "name": "b", "owner": team.slug}
    )
    version = loader_services.loader_version_submit(user=maker, version=loader.open_version)
    loader_services.loader_version_approve(user=checker, version=version)
    _token, raw = tokens.ingest_token_create(user=maker, loader=loader, name="bench")
    return Loader.objects.get(pk=loader.pk), raw


def _signal(i: int, captured: str) -> dict:
    return {
        "loader_code": "BENCH-INGEST",
        "signal_key": f"metric_{i % 20}",
        "signal_value": i % 1000,
        "validation_status": "FAILED" if i % 50 == 0 else "SUCCESS",
        "metric_type": "ROW_COUNT",
        "captured_at": captured,
        "correlation_id": f"batch-{i // BATCH}",
    }


def _start_server(port: int, tmp: Path) -> subprocess.Popen:
    env = production_env(
        ALLOWED_HOSTS="127.0.0.1,localhost",
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        SIGNAL_INGEST_RATE="100000000/min",
        WEB_CONCURRENCY="2",
        WEB_THREADS="4",
    )
    proc = subprocess.Popen(
        gunicorn_command(port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    healthz_wait(port, tries=200)
    return proc


def _workers(master: int) -> list[int]:
    return [
        int(pid) for pid in subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    ]


def _worker_rss_mb(master: int) -> list[float]:
    sizes = []
    for pid in _workers(master):
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        if match:
            sizes.append(int(match.group(1)) / 1024)
    return sizes


def _batch_ingest(port: int, token: str, bodies: list[bytes]) -> float:
    queue = list(range(len(bodies)))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    return
                index = queue.pop()
            conn.request("POST", "/api/v1/signals/", body=bodies[index], headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                errors.append(str(response.status))

    threads = [threading.Thread(target=worker) for _ in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} batch requests failed: {errors[:5]}")
    return elapsed


def _copy_baseline(loader: Loader, items: list[dict]) -> float:
    now = timezone.now()
    rows = [
        SignalRow(
            loader_id=loader.pk,
            signal_key=i["signal_key"],
            signal_value=str(i["signal_value"]),
            value_number=float(i["signal_value"]),
            validation_status=i["validation_status"],
            metric_type=i["metric_type"],
            metric_source="ETL",
            captured_at=dt.datetime.fromisoformat(i["captured_at"].replace("Z", "+00:00")),
            received_at=now,
            correlation_id=i["correlation_id"],
            run_id=None,
            attributes=None,
            idempotency_key=None,
            loader_paused=False,
            no_active_version=False,
        )
        for i in items
    ]
    columns = ", ".join(SIGNAL_COLUMNS)
    started = time.perf_counter()
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY signals_app_signal ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE signals_app_signal")
    return elapsed


def _serving_cpu_seconds(master: int) -> dict[int, float]:
    """CPU time (user + system) so far of each gunicorn worker and of this database's other
    PostgreSQL backends (the workers' connections), by process id."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        backends = [row[0] for row in cursor.fetchall()]
    seconds = {}
    for pid in [*_workers(master), *backends]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:  # ended since it was listed
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def _wrk_measured(master: int, port: int, path: str, token: str, body: str | None, tmp: Path) -> dict[str, float]:
    """A wrk run, with the serving processes' CPU time per request."""
    before = _serving_cpu_seconds(master)
    result = _wrk(port, path, token, body, tmp)
    after = _serving_cpu_seconds(master)
    used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    result["cpu_ms"] = used / max(result["requests"], 1) * 1000
    return result


def _wrk(port: int, path: str, token: str, body: str | None, tmp: Path) -> dict[str, float]:
    script = tmp / "wrk.lua"
    lines = [f'wrk.headers["Authorization"] = "Bearer {token}"']
    if body is not None:
        lines += [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f"wrk.body = {json.dumps(body)}",
        ]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{WRK_CONNECTIONS}",
            f"-d{WRK_SECONDS}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=WRK_SECONDS + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(match.group(1)), match.group(2)
        latency[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {
        "rps": rps,
        "requests": requests,
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def main() -> list[str]:
    if not shutil.which("wrk"):
        return ["signal ingest: wrk is not installed (apt-get install wrk)"]
    loader, token = _setup()
    try:
        return _measure(loader, token)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE signals_app_signal")
        # Only this benchmark's loader: the seeded STATS-* loaders are held by their captures.
        Loader.objects.filter(loader_code="BENCH-INGEST").delete()


def _measure(loader: Loader, token: str) -> list[str]:
    captured = (timezone.now() - dt.timedelta(minutes=5)).isoformat()
    items = [_signal(i, captured) for i in range(TOTAL)]
    bodies = [json.dumps(items[i : i + BATCH]).encode() for i in range(0, TOTAL, BATCH)]
    copy_seconds = _copy_baseline(loader, items)

    tmp = Path(tempfile.mkdtemp(prefix="etl-bench-ingest-"))
    port = free_port()
    server = _start_server(port, tmp)
    try:
        http_seconds = _batch_ingest(port, token, bodies)
        stored = Signal.objects.filter(loader=loader).count()
        rss = _worker_rss_mb(server.pid)
        single_body = json.dumps(_signal(1, captured))
        runs = []
        for _ in range(WRK_ALTERNATIONS):
            runs.append(("whoami", _wrk_measured(server.pid, port, "/api/v1/whoami/", token, None, tmp)))
            runs.append(("ingest", _wrk_measured(server.pid, port, "/api/v1/signals/", token, single_body, tmp)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    copy_rate, http_rate = TOTAL / copy_seconds, TOTAL / http_seconds
    share = http_rate / copy_rate
    whoami = [r for name, r in runs if name == "whoami"]
    ingest = [r for name, r in runs if name == "ingest"]
    whoami_rps = sum(r["rps"] for r in whoami) / len(whoami)
    ingest_rps = sum(r["rps"] for r in ingest) / len(ingest)
    single_share = ingest_rps / whoami_rps
    whoami_cpu = sum(r["cpu_ms"] for r in whoami) / len(whoami)
    ingest_cpu = sum(r["cpu_ms"] for r in ingest) / len(ingest)
    print(f"Signal ingestion, PostgreSQL + Redis, gunicorn 2x4; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| batch ingest (200,000 signals, 1,000 per request) | seconds | signals/s |")
    print("|---|---:|---:|")
    print(f"| raw COPY of the same rows (baseline) | {copy_seconds:.2f} | {copy_rate:,.0f} |")
    print(
        f"| POST /api/v1/signals/ through gunicorn, {CLIENT_THREADS} clients | {http_seconds:.2f} | {http_rate:,.0f} |"
    )
    print(f"\nthroughput share of COPY: {share:.0%} (target ≥ {MIN_COPY_SHARE:.0%}); stored {stored:,} signals")
    print(f"web worker memory after the batch run (RSS): {', '.join(f'{m:.0f} MB' for m in rss)}\n")
    print(
        f"| {WRK_CONNECTIONS} concurrent clients, {WRK_SECONDS} s each | req/s | p50 ms | p99 ms | non-2xx "
        "| CPU ms per request |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in runs:
        label = (
            "GET /api/v1/whoami/ (trivial authenticated view)"
            if name == "whoami"
            else "POST /api/v1/signals/ (1 signal)"
        )
        print(
            f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['cpu_ms']:.2f} |"
        )
    paired = sorted(i["rps"] / w["rps"] for w, i in zip(whoami, ingest, strict=True))
    print(f"\nsingle-signal rate share of the trivial view: {single_share:.0%} (target ≥ {MIN_SINGLE_SHARE:.0%})")
    print(
        f"paired windows (whoami, then ingest): median share {statistics.median(paired):.0%}, "
        f"from {paired[0]:.0%} to {paired[-1]:.0%}"
    )
    print(
        f"CPU per request (gunicorn workers + PostgreSQL backends): whoami {whoami_cpu:.2f} ms, "
        f"single-signal POST {ingest_cpu:.2f} ms; whoami's share {whoami_cpu / ingest_cpu:.0%}"
    )

    missed = []
    if stored != TOTAL:
        missed.append(f"signal ingest: stored {stored} of {TOTAL}")
    if share < MIN_COPY_SHARE:
        missed.append(f"signal ingest: batch throughput {share:.0%} of COPY (target ≥ {MIN_COPY_SHARE:.0%})")
    if single_share < MIN_SINGLE_SHARE:
        missed.append(
            f"signal ingest: single POSTs {single_share:.0%} of the trivial view (target ≥ {MIN_SINGLE_SHARE:.0%})"
        )
    if any(r["errors"] for _name, r in runs):
        missed.append("signal ingest: non-2xx answers under load")
    return missed
