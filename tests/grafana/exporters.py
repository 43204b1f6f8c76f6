"""Test doubles of the exporters a Kubernetes deployment has and this machine cannot run, serving
their text exposition as the real ones print it, so the dashboards' PromQL is proven on the
series names, labels and quirks Prometheus will really see:

- ``KubeStateMetrics``: kube-state-metrics v2 (``kube_pod_info``, ``kube_pod_status_phase`` with
  every phase of every pod, 0 or 1; ``kube_pod_container_resource_limits`` with ``resource`` and
  ``unit``), ``# HELP``/``# TYPE`` lines as it writes them.
- ``Cadvisor``: the kubelet's ``/metrics/cadvisor``: explicit millisecond timestamps on every sample,
  a series per container plus the pod's own cgroup (``container=""``), which a query must leave out
  or it counts the pod twice.
- ``MicrometerService``: a Spring Boot service with Micrometer's Prometheus registry (simpleclient
  0.x format: a trailing comma in every label set, values as floats), resilience4j's circuit
  breaker gauges (``resilience4j_circuitbreaker_state{name,state}``: every state, lower case, 1 for
  the current one) and a client timer ``http.client.request.duration`` published as a histogram
  with SLO buckets and the common tag ``service`` (``management.metrics.tags.service``), whose
  ``outcome`` tag is Micrometer's (SUCCESS, CLIENT_ERROR, SERVER_ERROR…).

Counters grow with real time at fixed rates (``rate()`` has something to measure); ``text(at)``
gives the exposition at any moment, so the benchmark backfills a day from the same code.
The node exporter is not doubled: the tests run Debian's real ``prometheus-node-exporter``.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.integrations.prom import exposition_serve

NAMESPACE = "monitoring-app"  # the infrastructure dashboard's default namespace
NODES = ("node-a", "node-b")

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    container: str
    node: str
    phase: str
    memory_limit: float
    memory_used: float  # fraction of the limit
    cpu_limit: float
    cpu_used: float  # fraction of the limit

    @property
    def uid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{self.namespace}/{self.name}"))

    @property
    def running(self) -> bool:
        return self.phase == "Running"


# Pods of the default namespace in every phase, two near their memory limit (86 %: orange; 97 %: red),
# and one pod elsewhere that the default namespace leaves out.
PODS = (
    Pod(NAMESPACE, "etl-monitor-web-7d9f8b6c5-x2x4k", "web", "node-a", "Running", 1 * GiB, 0.55, 1.0, 0.30),
    Pod(NAMESPACE, "etl-monitor-web-7d9f8b6c5-q8w7p", "web", "node-b", "Running", 1 * GiB, 0.86, 1.0, 0.45),
    Pod(NAMESPACE, "etl-monitor-worker-5c6d7f8b9-m3n4b", "worker", "node-a", "Running", 2 * GiB, 0.97, 2.0, 0.90),
    Pod(NAMESPACE, "etl-monitor-beat-6b7c8d9f0-z1y2x", "beat", "node-b", "Running", 256 * MiB, 0.30, 0.25, 0.05),
    Pod(NAMESPACE, "etl-monitor-migrate-8h2k5", "migrate", "node-a", "Succeeded", 512 * MiB, 0.0, 0.5, 0.0),
    Pod(NAMESPACE, "etl-monitor-web-7d9f8b6c5-p0o9i", "web", "node-b", "Pending", 1 * GiB, 0.0, 1.0, 0.0),
    Pod(NAMESPACE, "etl-monitor-import-28871234-4kq2d", "import", "node-a", "Failed", 512 * MiB, 0.0, 0.5, 0.0),
    Pod("kube-system", "coredns-5d78c9869d-8tl4s", "coredns", "node-b", "Running", 170 * MiB, 0.12, 0.1, 0.02),
)
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _labels(pairs: dict[str, str], *, trailing_comma: bool = False) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in pairs.items())
    return "{" + body + ("," if trailing_comma and body else "") + "}"


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("+Inf" if value > 0 else "NaN")


class _Served:
    """Serves ``text(now)`` on ``/metrics`` (any path) from a loopback port."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.started = time.time()
        self.address = ""
        self._stop: Callable[[], None] | None = None

    def text(self, at: float) -> str:
        raise NotImplementedError

    def elapsed(self, at: float) -> float:
        return max(0.0, at - self.started)

    def start(self) -> _Served:
        self.address, self._stop = exposition_serve(lambda: self.text(time.time()).encode(), self.content_type)
        return self

    def stop(self) -> None:
        if self._stop:
            self._stop()


class KubeStateMetrics(_Served):
    """kube-state-metrics v2's pod series for ``pods``."""

    def __init__(self, pods: tuple[Pod, ...] = PODS) -> None:
        super().__init__()
        self.pods = pods

    def text(self, at: float) -> str:
        out = [
            "# HELP kube_pod_info [STABLE] Information about pod.",
            "# TYPE kube_pod_info gauge",
        ]
        for pod in self.pods:
            labels = {
                "namespace": pod.namespace, "pod": pod.name, "uid": pod.uid, "host_ip": "10.0.0.4",
                "pod_ip": "10.244.1.17", "node": pod.node, "created_by_kind": "ReplicaSet",
                "created_by_name": pod.name.rsplit("-", 1)[0], "priority_class": "", "host_network": "false",
            }  # fmt: skip
            out.append(f"kube_pod_info{_labels(labels)} 1")
        out += [
            "# HELP kube_pod_status_phase [STABLE] The pods current phase.",
            "# TYPE kube_pod_status_phase gauge",
        ]
        for pod in self.pods:
            for phase in PHASES:
                labels = {"namespace": pod.namespace, "pod": pod.name, "uid": pod.uid, "phase": phase}
                out.append(f"kube_pod_status_phase{_labels(labels)} {1 if phase == pod.phase else 0}")
        out += [
            "# HELP kube_pod_container_resource_limits The number of requested limit resource by a container. "
            "It is recommended to use the kube_pod_resource_limits metric exposed by kube-scheduler instead, "
            "as it is more precise.",
            "# TYPE kube_pod_container_resource_limits gauge",
        ]
        for pod in self.pods:
            base = {"namespace": pod.namespace, "pod": pod.name, "uid": pod.uid, "container": pod.container}
            base["node"] = pod.node
            cpu = {**base, "resource": "cpu", "unit": "core"}
            memory = {**base, "resource": "memory", "unit": "byte"}
            out.append(f"kube_pod_container_resource_limits{_labels(cpu)} {_number(pod.cpu_limit)}")
            out.append(f"kube_pod_container_resource_limits{_labels(memory)} {_number(pod.memory_limit)}")
        return "\n".join(out) + "\n"


class Cadvisor(_Served):
    """The kubelet's cAdvisor endpoint for the running pods of ``pods`` (of every node)."""

    def __init__(self, pods: tuple[Pod, ...] = PODS) -> None:
        super().__init__()
        self.pods = tuple(p for p in pods if p.running)

    def text(self, at: float) -> str:
        stamp = int(at * 1000)
        elapsed = self.elapsed(at)
        memory = [
            "# HELP container_memory_working_set_bytes Current working set in bytes.",
            "# TYPE container_memory_working_set_bytes gauge",
        ]
        cpu = [
            "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.",
            "# TYPE container_cpu_usage_seconds_total counter",
        ]
        for pod in self.pods:
            cgroup = f"/kubepods/burstable/pod{pod.uid}"
            container_id = hashlib.sha256(f"{pod.name}/{pod.container}".encode()).hexdigest()
            used_memory = pod.memory_limit * pod.memory_used
            used_cpu = 1000.0 + pod.cpu_limit * pod.cpu_used * elapsed
            # The pod's cgroup (container="") and the container's: summing both would count twice.
            pod_level = {"container": "", "id": cgroup, "image": "", "name": "", "namespace": pod.namespace}
            pod_level["pod"] = pod.name
            one = {
                "container": pod.container, "id": f"{cgroup}/{container_id}",
                "image": f"registry.example.com/etl-monitor/{pod.container}:1.4.2", "name": container_id,
                "namespace": pod.namespace, "pod": pod.name,
            }  # fmt: skip
            # The pause container's own small cgroup, as the kubelet still reports it.
            pause = {**one, "container": "POD", "image": "registry.k8s.io/pause:3.9", "id": f"{cgroup}/pause"}
            for labels, share in ((pod_level, 1.0), (one, 0.98), (pause, 0.02)):
                memory.append(
                    f"container_memory_working_set_bytes{_labels(labels)} {_number(used_memory * share)} {stamp}"
                )
                cpu_labels = {"container": labels["container"], "cpu": "total", **labels}
                cpu.append(
                    f"container_cpu_usage_seconds_total{_labels(cpu_labels)} {_number(used_cpu * share)} {stamp}"
                )
        return "\n".join(memory + cpu) + "\n"


# Inter-service calls of the customer's services: (caller, callee, requests per second,
# mean latency in seconds, share of SERVER_ERROR outcomes).
CALLS = (
    ("gateway", "auth", 40.0, 0.012, 0.0),
    ("gateway", "loader", 12.0, 0.080, 0.01),
    ("gateway", "import-export", 3.0, 0.450, 0.30),
    ("auth", "postgresql", 25.0, 0.004, 0.0),
    ("auth", "redis", 60.0, 0.001, 0.0),
    ("loader", "postgresql", 30.0, 0.015, 0.0),
    ("loader", "redis", 8.0, 0.002, 0.05),
    ("import-export", "loader", 2.0, 0.200, 0.0),
    ("import-export", "postgresql", 5.0, 0.060, 0.0),
)
# Circuit breakers by service: name → state (resilience4j's, lower case as its Micrometer binder tags it).
BREAKERS = {
    "gateway": {"auth": "closed", "loader": "closed", "import-export": "open"},
    "auth": {"postgresql": "closed", "redis": "closed"},
    "loader": {"postgresql": "closed", "redis": "half_open"},
    "import-export": {"loader": "closed", "postgresql": "closed"},
}
BREAKER_STATES = ("closed", "disabled", "forced_open", "half_open", "metrics_only", "open")
# management.metrics.distribution.slo.http.client.request.duration (seconds)
SLO_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class MicrometerService(_Served):
    """One Spring Boot service (``service``) with its outbound calls and circuit breakers."""

    service: str
    calls: tuple[tuple[str, str, float, float, float], ...] = field(default=CALLS)
    breakers: dict[str, dict[str, str]] = field(default_factory=lambda: BREAKERS)

    def __post_init__(self) -> None:
        super().__init__()

    def text(self, at: float) -> str:
        elapsed = self.elapsed(at)
        tags = {"application": self.service, "service": self.service}
        out = [
            "# HELP resilience4j_circuitbreaker_state The states of the circuit breaker",
            "# TYPE resilience4j_circuitbreaker_state gauge",
        ]
        for name, current in sorted(self.breakers.get(self.service, {}).items()):
            for state in BREAKER_STATES:
                labels = {**tags, "name": name, "state": state}
                out.append(
                    f"resilience4j_circuitbreaker_state{_labels(labels, trailing_comma=True)} "
                    f"{_number(1 if state == current else 0)}"
                )
        name = "http_client_request_duration_seconds"
        out += [f"# HELP {name}  ", f"# TYPE {name} histogram"]
        maxima = []
        for caller, callee, per_second, mean, errors in self.calls:
            if caller != self.service:
                continue
            total = per_second * (elapsed + 60.0)  # a minute of traffic before the first scrape
            for outcome, share in (("SUCCESS", 1.0 - errors), ("SERVER_ERROR", errors)):
                if share <= 0:
                    continue
                count = math.floor(total * share)
                labels = {**tags, "outcome": outcome, "target_service": callee, "uri": "/"}
                for bound in SLO_BUCKETS:
                    cumulative = math.floor(count * (1.0 - math.exp(-bound / mean)))
                    bucket = {**labels, "le": repr(bound)}
                    out.append(f"{name}_bucket{_labels(bucket, trailing_comma=True)} {_number(cumulative)}")
                out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'}, trailing_comma=True)} {_number(count)}")
                out.append(f"{name}_count{_labels(labels, trailing_comma=True)} {_number(count)}")
                out.append(f"{name}_sum{_labels(labels, trailing_comma=True)} {_number(count * mean)}")
                maxima.append((labels, mean * 6))
        out += [f"# HELP {name}_max  ", f"# TYPE {name}_max gauge"]
        for labels, value in maxima:
            out.append(f"{name}_max{_labels(labels, trailing_comma=True)} {_number(value)}")
        return "\n".join(out) + "\n"


SERVICES = ("gateway", "auth", "loader", "import-export")
