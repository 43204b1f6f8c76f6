"""The Celery worker's own metrics endpoint (WORKER_METRICS_PORT), with a real worker process.

Its pool processes deliver notifications to local servers speaking Slack's Web API and a plain
webhook (tests/integrations/fakes.py); a scrape of the worker's main process must count exactly
what was delivered, per receiver and outcome, summed over every pool process — including those
replaced after each task — and never anything else.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from etl_monitor.celery import app
from integrations.models import Channel, ChannelKind, Delivery, DeliveryStatus, Purpose
from integrations.notifications.outbox import delivery_queue
from tests.integrations.fakes import FakeSlack, WebhookReceiver, serve
from tests.net import free_port
from tests.processes import ROOT, celery_worker, postgres_test_url, process_stop

NAME = "http_client_request_duration_seconds"
FINAL = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.GAVE_UP)


@contextmanager
def worker(tmp_path: Path, *extra: str, env: dict[str, str | None], concurrency: int = 2) -> Iterator[subprocess.Popen]:
    """A worker as deploy/Procfile.dev runs it (``env``'s None: unset); yields once it is ready for tasks."""
    from tests.platform.test_celery_worker import purge_broker

    purge_broker()
    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            celery_worker("--loglevel", "INFO", *extra, concurrency=concurrency),
            cwd=ROOT,
            env={name: value for name, value in {**os.environ, **env}.items() if value is not None},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and " ready." in log.read_text(), log.read_text()[-3000:]
        yield proc
    finally:
        process_stop(proc)


def scrape(port: int) -> Counter[tuple[str, str]]:
    """The worker endpoint's observation counts by (target_service, outcome)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{NAME}_count":
                assert set(sample.labels) == {"service", "target_service", "outcome"}, sample.labels
                assert sample.labels["service"] == "etl-monitor"
                counts[(sample.labels["target_service"], sample.labels["outcome"])] += int(sample.value)
    assert "127.0.0.1" not in "".join(line for line in text.splitlines() if line.startswith(NAME))
    return counts


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    state = list(Delivery.objects.values_list("channel__name", "status", "last_error"))
    pytest.fail(f"timed out waiting for {what}; deliveries: {state}")


def queue(channel: Channel, target: str, n: int = 1) -> list[int]:
    """``n`` test messages through ``channel``, each its own task (queued at once: no transaction)."""
    return [
        delivery_queue(
            incident=None,
            event=None,
            channel=channel,
            target=target,
            purpose=Purpose.TEST,
            key=f"metrics:{channel.pk}:{timezone.now().timestamp()}:{i}",
        ).pk
        for i in range(n)
    ]


def finished(ids: list[int]) -> bool:
    return Delivery.objects.filter(pk__in=ids, status__in=FINAL).count() == len(ids)


def pids_with_files(directory: Path) -> set[str]:
    """The processes that wrote values: prometheus_client's multiprocess files are <kind>_<pid>.db."""
    return {m.group(1) for f in directory.iterdir() if (m := re.fullmatch(r"\w+?_(\d+)\.db", f.name))}


@pytest.fixture
def receivers(require_postgres, monkeypatch, settings) -> Iterator[tuple[FakeSlack, WebhookReceiver, WebhookReceiver]]:
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    slack, accepting, failing = FakeSlack(), WebhookReceiver(), WebhookReceiver()
    stops = [serve(slack), serve(accepting), serve(failing)]
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
    yield slack, accepting, failing
    for stop in stops:
        stop()


def worker_env(slack: FakeSlack, port: int, directory: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres_test_url(),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_BASE_URL": slack.url,
        "NOTIFY_BACKOFF_BASE_SECONDS": "600",  # a failed delivery is not tried again during the test
        "NOTIFY_HTTP_TIMEOUT": "60",  # the held Slack post must not time out
        "WORKER_METRICS_PORT": str(port),
        "WORKER_METRICS_DIR": str(directory),
    }


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_worker_endpoint_counts_every_delivery_of_both_pool_processes_by_receiver_and_outcome(receivers, tmp_path):
    slack, accepting, failing = receivers
    failing.statuses = [500, 500]
    slack_channel = Channel.objects.get(name="slack")
    hook_ok = Channel.objects.create(name="hook-ok", kind=ChannelKind.WEBHOOK, url=accepting.url)
    hook_500 = Channel.objects.create(name="hook-500", kind=ChannelKind.WEBHOOK, url=failing.url)
    hook_down = Channel.objects.create(
        name="hook-down", kind=ChannelKind.WEBHOOK, url=f"http://127.0.0.1:{free_port()}/hook"
    )
    port, directory = free_port(), tmp_path / "worker-metrics"
    (directory / "stale").mkdir(parents=True)  # a previous run's leftovers: wiped at start
    release = threading.Event()
    # The first post is held open: one pool process waits on it while the other sends the rest.
    slack.script = [("hang", release), ("500", None)]
    try:
        with worker(tmp_path, env=worker_env(slack, port, directory)):
            assert not (directory / "stale").exists()
            held = queue(slack_channel, "#alerts-low")
            wait_for(lambda: slack.calls_to("chat.postMessage"), "the first Slack post to be held")
            rest = [
                *queue(slack_channel, "#alerts-low", 3),
                *queue(hook_ok, hook_ok.url, 3),
                *queue(hook_500, hook_500.url, 2),
                *queue(hook_down, hook_down.url),
            ]
            wait_for(lambda: finished(rest), "the other pool process to send the rest")
            release.set()
            wait_for(lambda: finished(held), "the held Slack post")
            counts = scrape(port)
            writers = pids_with_files(directory)
    finally:
        release.set()

    assert counts == {
        ("slack", "success"): 3,
        ("slack", "server_error"): 1,
        ("webhook", "success"): 3,
        ("webhook", "server_error"): 2,
        ("webhook", "error"): 1,
    }
    assert len(writers) == 2  # both pool processes' values are in the sum
    assert len(slack.posts()) == 3 and len(accepting.accepted()) == 3


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_pool_processes_replaced_after_each_task_keep_their_counts(receivers, tmp_path):
    slack, accepting, _failing = receivers
    hook = Channel.objects.create(name="hook-ok", kind=ChannelKind.WEBHOOK, url=accepting.url)
    port, directory = free_port(), tmp_path / "worker-metrics"
    with worker(tmp_path, "--max-tasks-per-child", "1", env=worker_env(slack, port, directory), concurrency=1):
        ids = queue(hook, hook.url, 4)
        wait_for(lambda: finished(ids), "the webhook deliveries")
        wait_for(lambda: scrape(port) == {("webhook", "success"): 4}, "the four sends in the sum", timeout=10)
        writers = pids_with_files(directory)
    assert len(accepting.accepted()) == 4
    assert len(writers) == 4  # one pool process per task, each gone, each still counted


def listening_ports(pgid: int) -> set[int]:
    """The TCP ports processes of the group listen on (Linux: their socket inodes in /proc/net/tcp)."""
    inodes: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_without_the_setting_the_worker_listens_nowhere_and_leaves_its_directory_alone(tmp_path):
    directory = tmp_path / "worker-metrics"
    (directory / "kept").mkdir(parents=True)
    with worker(tmp_path, env={"WORKER_METRICS_PORT": None, "WORKER_METRICS_DIR": str(directory)}) as proc:
        time.sleep(2)  # the worker with the setting listens well within this once ready (below)
        assert listening_ports(proc.pid) == set()
    assert (directory / "kept").exists()

    # The same worker with the setting: the check does see a listener, and only the one.
    port = free_port()
    with worker(tmp_path, env={"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_DIR": str(directory)}) as proc:
        deadline = time.monotonic() + 10
        while not listening_ports(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening_ports(proc.pid) == {port}
        assert scrape(port) == Counter()
    assert not (directory / "kept").exists()


def test_a_worker_given_the_webs_directory_refuses_to_start(tmp_path):
    from django.conf import settings

    env = {
        **os.environ,
        "WORKER_METRICS_PORT": str(free_port()),
        "WORKER_METRICS_DIR": f"{settings.VAR_DIR}/prometheus",
    }
    done = subprocess.run(
        celery_worker("--loglevel", "INFO"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "WORKER_METRICS_DIR" in done.stderr and "web's metrics directory" in done.stderr


def documented_queries() -> list[str]:
    """The PromQL of docs/monitoring.md's section on these calls (a line starting with spaces
    continues the query above it)."""
    text = (ROOT / "docs" / "monitoring.md").read_text()
    section = text.split("### ETL Monitor's calls to other services", 1)[1].split("\n### ", 1)[0]
    block = section.split("```promql\n", 1)[1].split("```", 1)[0]
    queries: list[str] = []
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(" ") and queries:
            queries[-1] += " " + line.strip()
        else:
            queries.append(line)
    return queries


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_the_worker_and_the_documented_queries_answer(receivers, tmp_path):
    from tests.conftest import _service_unavailable
    from tests.integrations.prom import Prometheus

    if not Prometheus.available():
        _service_unavailable("Prometheus (the Debian package `prometheus`)")
    slack, accepting, _failing = receivers
    hook = Channel.objects.create(name="hook-ok", kind=ChannelKind.WEBHOOK, url=accepting.url)
    down = Channel.objects.create(name="hook-down", kind=ChannelKind.WEBHOOK, url=f"http://127.0.0.1:{free_port()}/")
    port = free_port()
    server = Prometheus({"etl-monitor-worker": ([f"127.0.0.1:{port}"], "/metrics")})
    with worker(tmp_path, env=worker_env(slack, port, tmp_path / "worker-metrics")):
        server.start()
        try:
            ids = [*queue(hook, hook.url, 3), *queue(down, down.url)]
            wait_for(lambda: finished(ids), "the webhook deliveries")
            totals = server.wait_for(
                'sum by (target_service, outcome) (http_client_request_duration_seconds_count{service="etl-monitor"})',
                lambda result: len(result) == 2,
            )
            time.sleep(2)  # a few more scrapes: rates need two samples
            answers = {query: server.query(query) for query in documented_queries()}
        finally:
            server.stop()
    assert {(s["metric"]["target_service"], s["metric"]["outcome"]): float(s["value"][1]) for s in totals} == {
        ("webhook", "success"): 3.0,
        ("webhook", "error"): 1.0,
    }
    assert len(answers) == 3 and all(answers.values()), answers
