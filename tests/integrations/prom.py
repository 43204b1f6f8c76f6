"""The real Prometheus and Alertmanager for tests and benchmarks: Debian's binaries, started on
free loopback ports with a configuration written for the occasion, plus a small exporter whose
series the caller sets."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import requests

from tests.integrations.fakes import http_serve
from tests.net import free_port

# A capture definition of one's own (the tests of captures and of their API create it).
QUEUE_DEPTH = {
    "name": "queue-depth",
    "loader": "STATS-INFRA",
    "source": "prometheus",
    "source_kind": "PROMETHEUS",
    "query": "sum by (queue) (rabbitmq_queue_messages_ready)",
    "key_label": "queue",
    "key_prefix": "queue:",
    "metric_type": "CUSTOM",
}


class Exporter:
    """Serves ``/metrics`` in the Prometheus text format; callers change the series at any time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[str, float] = {}
        self.growth: dict[str, float] = {}  # counters: added to the series at every scrape
        self.address = ""
        self._stop: Callable[[], None] | None = None

    def set(self, series: str, value: float) -> None:
        with self.lock:
            self.series[series] = value

    def grow(self, series: str, step: float) -> None:
        """Make ``series`` a counter rising by ``step`` at every scrape (0 stops it)."""
        with self.lock:
            self.series.setdefault(series, 0.0)
            self.growth[series] = step

    def remove(self, series: str) -> None:
        with self.lock:
            self.series.pop(series, None)

    def replace(self, series: dict[str, float]) -> None:
        with self.lock:
            self.series = dict(series)

    def text(self) -> bytes:
        with self.lock:
            for name, step in self.growth.items():
                if name in self.series:
                    self.series[name] += step
            return "".join(f"{name} {value}\n" for name, value in self.series.items()).encode()

    def start(self) -> Exporter:
        self.address, self._stop = exposition_serve(self.text)
        return self

    def stop(self) -> None:
        if self._stop:
            self._stop()


def exposition_serve(
    body: Callable[[], bytes], content_type: str = "text/plain; version=0.0.4"
) -> tuple[str, Callable[[], None]]:
    """Serve ``body()`` to every GET, as an exporter's /metrics does: the address and the stop."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = body()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server, stop = http_serve(Handler)
    return f"127.0.0.1:{server.server_address[1]}", stop


def _wait_ready(url: str, proc: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} (see its log)")
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready in {seconds:.0f} s")


class _Server:
    """One of Debian's binaries, started on a free loopback port with its files in a temporary folder."""

    binary_name = ""

    def __init__(self) -> None:
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="etl-prom-"))

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.binary_name) is not None

    def _launch(self, port: int, arguments: list[str]) -> None:
        """Run the binary with ``arguments`` (listening on ``port``) until it says it is ready."""
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(self.tmp / f"{self.binary_name}.log", "wb")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [shutil.which(self.binary_name) or self.binary_name, *arguments],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        _wait_ready(self.url, self.proc, type(self).__name__)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Prometheus(_Server):
    """A real Prometheus scraping ``jobs`` (job name → (targets, metrics path)) every second,
    evaluating ``rules`` (the text of a rule file) every second and sending alerts to
    ``alertmanager`` (a base URL) when given. ``labels`` are target labels of every job (the
    dashboards' ``environment``, as a site's scrape configuration sets it)."""

    binary_name = "prometheus"

    def __init__(
        self,
        jobs: dict[str, tuple[list[str], str]],
        *,
        rules: str = "",
        alertmanager: str = "",
        lookback: str = "3s",
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.jobs, self.rules, self.alertmanager, self.lookback = jobs, rules, alertmanager, lookback
        self.labels = labels or {}  # target labels of every job (e.g. the environment)

    def config(self) -> str:
        lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "scrape_configs:"]
        for job, (targets, path) in self.jobs.items():
            lines += [
                f"  - job_name: {job}",
                f"    metrics_path: {path}",
                "    static_configs:",
                f"      - targets: [{', '.join(repr(t) for t in targets)}]",
            ]
            if self.labels:
                lines += ["        labels:", *(f"          {k}: {v!r}" for k, v in self.labels.items())]
        if self.rules:
            (self.tmp / "rules.yml").write_text(self.rules)
            lines += ["rule_files:", f"  - {self.tmp / 'rules.yml'}"]
        if self.alertmanager:
            target = self.alertmanager.split("://", 1)[-1].rstrip("/")
            lines += ["alerting:", "  alertmanagers:", "    - static_configs:", f"        - targets: ['{target}']"]
        return "\n".join(lines) + "\n"

    def start(self) -> Prometheus:
        (self.tmp / "prometheus.yml").write_text(self.config())
        port = free_port()
        self._launch(
            port,
            [
                f"--config.file={self.tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # A series gone from the exporter leaves the answers quickly.
                f"--query.lookback-delta={self.lookback}",
            ],
        )
        return self

    def query(self, query: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": query} if at is None else {"query": query, "time": at}
        answer = requests.get(f"{self.url}/api/v1/query", params=params, timeout=5).json()
        return answer["data"]["result"]

    def wait_for(self, query: str, check: Callable[[list[dict[str, Any]]], bool], seconds: float = 20) -> list:
        """Poll ``query`` until ``check(result)`` holds; the last result (AssertionError on timeout)."""
        deadline = time.monotonic() + seconds
        result: list = []
        while time.monotonic() < deadline:
            result = self.query(query)
            if check(result):
                return result
            time.sleep(0.3)
        raise AssertionError(f"Prometheus answered {query!r} with {result!r}, never what was awaited")


class Alertmanager(_Server):
    """A real Alertmanager (Debian's ``prometheus-alertmanager``, clustering off) sending every
    alert to one webhook (``webhook_url``, with ``Authorization: Bearer <token>``): a group is
    sent a second after it changes, resolved alerts too, and repeated every ``repeat_interval``."""

    binary_name = "prometheus-alertmanager"

    def __init__(self, webhook_url: str, *, token: str, repeat_interval: str = "1h") -> None:
        super().__init__()
        self.webhook_url, self.token, self.repeat_interval = webhook_url, token, repeat_interval

    def config(self) -> str:
        return "\n".join(
            [
                "route:",
                "  receiver: etl-monitor",
                "  group_by: ['...']",  # every alert its own group: sent as soon as it changes
                "  group_wait: 1s",
                "  group_interval: 1s",
                f"  repeat_interval: {self.repeat_interval}",
                "receivers:",
                "  - name: etl-monitor",
                "    webhook_configs:",
                f"      - url: '{self.webhook_url}'",
                "        send_resolved: true",
                "        http_config:",
                "          authorization:",
                "            type: Bearer",
                f"            credentials: '{self.token}'",
                "",
            ]
        )

    def start(self) -> Alertmanager:
        (self.tmp / "alertmanager.yml").write_text(self.config())
        port = free_port()
        self._launch(
            port,
            [
                f"--config.file={self.tmp / 'alertmanager.yml'}",
                f"--storage.path={self.tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: a single instance
            ],
        )
        return self


def series_values(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    """``label``'s value → the series' value, for an instant-vector result."""
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in result}
