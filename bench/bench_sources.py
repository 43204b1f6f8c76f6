"""Monitoring sources: statistics capture over 500 services and a promql_threshold rule over 1,000
series, against the real Prometheus (Debian's package), on PostgreSQL.

Issue (monitoring sources):

1. A capture cycle over 500 services against the real Prometheus completes in ≤ 2 s and stores
   exactly 500 signals per metric.
2. A ``promql_threshold`` rule returning 1,000 series evaluates in ≤ 1 s.

Method
------
A local exporter serves, for 500 services, a request-duration histogram (4 buckets, counters
rising at every scrape), an availability gauge and memory usage/limit gauges per pod — 3,500
series — plus 1,000 ``bench_worker_queue_depth`` gauges. Prometheus scrapes it every second.
Three captures like the seeded ones (p99 latency per service, availability per service, memory
per pod) run as the beat task does (``captures_run``), each cycle for a new bucket; the table
shows the median of 3 cycles and the signals stored per metric. The same bucket is then
captured again (it must store nothing). The baseline is the same three PromQL queries sent
with ``requests`` and decoded, nothing stored: what any capture must pay to Prometheus.

For the rule, 1,000 series come back, 20 of them above the threshold. The first evaluation
opens their 20 incidents; the steady state (median of 5 later evaluations: 20 ongoing, 980
clear) is the figure. The baseline is the rule's query alone, over HTTP.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incidents.detection import rules_evaluate  # noqa: E402
from incidents.models import DetectionRule  # noqa: E402
from integrations.models import Capture  # noqa: E402
from integrations.sources.captures import captures_run  # noqa: E402
from loaders.models import Loader, LoaderVersion, Team, VersionState  # noqa: E402
from signals_app.models import Signal  # noqa: E402
from signals_app.retention import signals_partitions_ensure  # noqa: E402
from tests.integrations.prom import Exporter, Prometheus  # noqa: E402

SERVICES = 500
SERIES = 1_000
BREACHING = 20
MAX_CAPTURE_S = 2.0
MAX_RULE_S = 1.0
BUCKET_S = 5

CAPTURES = {
    "bench-latency-p99": (
        "LATENCY_P99_MS",
        "histogram_quantile(0.99, sum by (service, le) (rate(bench_request_duration_seconds_bucket[1m]))) * 1000",
        "service",
    ),
    "bench-availability": ("UPTIME_PERCENT", "avg by (service) (avg_over_time(bench_service_up[1m])) * 100", "service"),
    "bench-memory": (
        "MEMORY_PERCENT",
        "sum by (pod) (bench_memory_usage_bytes) / sum by (pod) (bench_memory_limit_bytes) * 100",
        "pod",
    ),
}
RULE_QUERY = "bench_worker_queue_depth"


def _exporter() -> Exporter:
    exporter = Exporter()
    for i in range(SERVICES):
        service = f"svc-{i:03d}"
        for le, step in (("0.05", 5 + i % 7), ("0.25", 9 + i % 5), ("1", 10 + i % 3), ("+Inf", 11 + i % 3)):
            exporter.grow(f'bench_request_duration_seconds_bucket{{service="{service}",le="{le}"}}', step)
        exporter.set(f'bench_service_up{{service="{service}"}}', 1 if i % 50 else 0)
        exporter.set(f'bench_memory_usage_bytes{{pod="{service}-0"}}', 400 + i)
        exporter.set(f'bench_memory_limit_bytes{{pod="{service}-0"}}', 1000)
    for i in range(SERIES):
        exporter.set(f'{RULE_QUERY}{{queue="q-{i:04d}"}}', 900 + i if i < BREACHING else i % 100)
    return exporter.start()


def _ready(prom: Prometheus) -> None:
    for _name, (_metric, query, _label) in CAPTURES.items():
        prom.wait_for(query, lambda r: len(r) == SERVICES and all(s["value"][1] not in ("NaN", "+Inf") for s in r), 60)
    prom.wait_for(RULE_QUERY, lambda r: len(r) == SERIES, 60)


def _seed() -> Loader:
    team, _ = Team.objects.get_or_create(slug="bench-sources", defaults={"name": "Bench sources"})
    loader = Loader.objects.create(loader_code="BENCH-STATS", name="Bench statistics", owner=team)
    LoaderVersion.objects.create(loader=loader, number=1, state=VersionState.ACTIVE)
    for name, (metric, query, label) in CAPTURES.items():
        Capture.objects.create(
            name=name, loader=loader, source="prometheus", query=query, key_label=label, metric_type=metric
        )
    return loader


def _next_bucket() -> dt.datetime:
    """Sleep into a new bucket; the moment to capture it at."""
    time.sleep(BUCKET_S - time.time() % BUCKET_S + 0.2)
    return timezone.now()


def _baseline(url: str, queries: list[str], at: float) -> float:
    started = time.perf_counter()
    for query in queries:
        answer = requests.get(f"{url}/api/v1/query", params={"query": query, "time": at}, timeout=10).json()
        assert len(answer["data"]["result"]) in (SERVICES, SERIES)
    return time.perf_counter() - started


def _captures(url: str, loader: Loader) -> tuple[list[str], list[str]]:
    names = list(CAPTURES)
    cycles, baselines, per_metric = [], [], []
    for _ in range(4):  # one warm-up
        now = _next_bucket()
        baselines.append(_baseline(url, [q for _m, q, _l in CAPTURES.values()], now.timestamp()))
        started = time.perf_counter()
        results = captures_run(now=now, names=names)
        cycles.append(time.perf_counter() - started)
        assert all(r.status == "stored" for r in results), [r.summary() for r in results]
        end = results[0].bucket
        per_metric.append(
            {
                metric: Signal.objects.filter(loader=loader, metric_type=metric, captured_at=end).count()
                for metric, _q, _l in CAPTURES.values()
            }
        )
    started = time.perf_counter()
    again = captures_run(now=now, names=names)
    rerun = time.perf_counter() - started
    cycle, baseline = statistics.median(cycles[1:]), statistics.median(baselines[1:])
    exact = all(counts == dict.fromkeys(counts, SERVICES) for counts in per_metric)
    lines = [
        f"| Capture cycle, 3 metrics × {SERVICES} services (median of 3) | **{cycle:.2f} s** "
        f"| ≤ {MAX_CAPTURE_S:.0f} s |",
        f"| Baseline: the 3 queries over HTTP, nothing stored | {baseline:.2f} s "
        f"(cycle = {cycle / baseline:.1f}×) | — |",
        f"| Signals stored per metric and bucket | {sorted({n for c in per_metric for n in c.values()})} "
        f"| exactly {SERVICES} |",
        f"| Same bucket again | {sum(r.stored for r in again)} stored, {rerun:.2f} s | 0 stored |",
    ]
    missed = []
    if cycle > MAX_CAPTURE_S:
        missed.append(f"sources: capture cycle {cycle:.2f} s > {MAX_CAPTURE_S} s")
    if not exact:
        missed.append(f"sources: signals per metric {per_metric} (want exactly {SERVICES})")
    if any(r.stored for r in again):
        missed.append("sources: capturing a bucket again stored signals")
    return lines, missed


def _rule(url: str) -> tuple[list[str], list[str]]:
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.create(
        name="bench queue depth",
        kind="promql_threshold",
        rule_type="INFRASTRUCTURE",
        params={"query": RULE_QUERY, "subject_labels": "queue"},
        operator="GT",
        threshold=500.0,
        severity="HIGH",
    )
    now = timezone.now()
    started = time.perf_counter()
    first = rules_evaluate(rules=[rule], now=now)[0]
    first_s = time.perf_counter() - started
    assert first.error == "", first.error
    opened = sum(1 for d in first.decisions if d.action == "opened")
    steady, baselines = [], []
    for i in range(5):
        at = now + dt.timedelta(seconds=30 * (i + 1))
        baselines.append(_baseline(url, [RULE_QUERY], time.time()))
        started = time.perf_counter()
        report = rules_evaluate(rules=[rule], now=at)[0]
        steady.append(time.perf_counter() - started)
        assert len(report.decisions) == SERIES and report.error == ""
    cycle, baseline = statistics.median(steady), statistics.median(baselines)
    lines = [
        f"| promql_threshold over {SERIES:,} series, steady state (median of 5) | **{cycle:.2f} s** "
        f"| ≤ {MAX_RULE_S:.0f} s |",
        f"| Baseline: its query over HTTP | {baseline:.2f} s (rule = {cycle / baseline:.1f}×) | — |",
        f"| First evaluation, opening {opened} incidents | {first_s:.2f} s | — |",
    ]
    rule.delete()
    return lines, ([f"sources: promql rule {cycle:.2f} s > {MAX_RULE_S} s"] if cycle > MAX_RULE_S else [])


def _cleanup() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE signals_app_signal, signals_app_signalkey, incidents_incident CASCADE")
    Capture.objects.filter(name__startswith="bench-").delete()
    Loader.objects.filter(loader_code="BENCH-STATS").delete()
    Team.objects.filter(slug="bench-sources").delete()


def main() -> list[str]:
    if not Prometheus.available():
        return ["sources: the Debian package `prometheus` is not installed"]
    settings.CAPTURE_BUCKET_SECONDS = BUCKET_S
    signals_partitions_ensure()
    settings.NOTIFICATIONS_ENABLED = False
    exporter = _exporter()
    prom = Prometheus({"bench": ([exporter.address], "/metrics")}, lookback="5m").start()
    settings.PROMETHEUS_URL = prom.url
    try:
        _ready(prom)
        loader = _seed()
        capture_lines, capture_missed = _captures(prom.url, loader)
        rule_lines, rule_missed = _rule(prom.url)
    finally:
        prom.stop()
        exporter.stop()
        _cleanup()
    print(f"Monitoring sources, real Prometheus, PostgreSQL; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| Measure | Result | Target |\n|---|---|---|")
    print("\n".join(capture_lines + rule_lines))
    return capture_missed + rule_missed


if __name__ == "__main__":
    print("run through bench/run.py (it prepares the database)")
