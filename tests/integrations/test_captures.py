"""Statistics capture: the STATS-* loaders' captures against a real Prometheus (scraping an
exporter and this app's own /metrics) and against Elasticsearch 8 as the official client sees it
(pytest-httpserver); idempotency per bucket, sources that are down or not configured, validation,
roles, apply_config and the schedule.

The Prometheus tests use pytest-django's ``live_server`` (Prometheus scrapes the app), which makes
them transactional.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.schedules import crontab
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from etl_monitor.config import ConfigInvalid, config_apply
from etl_monitor.errors import InvalidInput, PermissionRefused
from etl_monitor.schedule import BEAT_SCHEDULE
from incidents.models import Incident
from integrations.models import Capture, DataSource
from integrations.sources.captures import CaptureResult, bucket_end, capture_run, captures_run
from integrations.sources.services import capture_save
from integrations.tasks import captures_run_task
from loaders.models import Loader, LoaderVersion
from signals_app.models import Signal
from tests.conftest import _service_unavailable, at_once
from tests.integrations.prom import QUEUE_DEPTH, Exporter, Prometheus, series_values
from tests.net import free_port

NOW = dt.datetime(2025, 3, 3, 10, 7, 30, tzinfo=dt.UTC)  # in the bucket 10:00–10:05 … ending 10:05
STATS_LOADERS = ("STATS-AVAIL", "STATS-ERROR-RATE", "STATS-INFRA", "STATS-PERF")
PROMETHEUS_CAPTURES = ["latency-p99", "availability", "memory", "cpu"]
HISTOGRAM = "http_server_request_duration_seconds_bucket"
SEEDED = importlib.import_module("integrations.migrations.0009_seed_statistics_capture")


def signal_values(loader_code: str) -> dict[str, float]:
    return dict(Signal.objects.filter(loader__loader_code=loader_code).values_list("signal_key", "value_number"))


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- a real Prometheus ------------------------------------------------------------------------------


# Prometheus scrapes the live server every second, between tests too. On SQLite the live server
# shares the test's in-memory connection: a scrape running while a transactional test's database
# is flushed makes that flush fail ("cannot start a transaction within a transaction"). Requests
# to the live server take this lock, and ``prom`` holds it from its teardown through the
# database's (``_scrapes_wait_for_the_flush`` releases it).
_LIVE_SERVER = threading.Lock()
_held = threading.Event()


def _one_request_at_a_time(app: Any) -> Any:
    def locked(environ: dict[str, Any], start_response: Any) -> Any:
        with _LIVE_SERVER:
            return app(environ, start_response)

    return locked


@pytest.fixture(autouse=True)
def _scrapes_wait_for_the_flush() -> Iterator[None]:
    """Set up before the database (autouse), so torn down after it: the end of the lock ``prom`` took."""
    yield
    if _held.is_set():
        _held.clear()
        _LIVE_SERVER.release()


@pytest.fixture(scope="module")
def prometheus(live_server: Any, django_db_blocker: Any) -> Iterator[Prometheus]:
    """One Prometheus for the module, scraping an exporter (latency histograms, pod memory and CPU)
    and this app's /metrics, ready once every seeded Prometheus capture has its answer."""
    if not Prometheus.available():
        _service_unavailable("Prometheus (the Debian package `prometheus`)")
    # Every request to the live server checks its database connection (close_old_connections), and
    # Prometheus scrapes it every second, between tests too: a refused scrape would lower the
    # availability of etl-monitor below 100 %.
    httpd = live_server.thread.httpd
    httpd.set_app(_one_request_at_a_time(httpd.get_app()))
    with django_db_blocker.unblock():
        yield from _prometheus_serving(live_server)


def _prometheus_serving(live_server: Any) -> Iterator[Prometheus]:
    exporter = Exporter().start()
    # payments: every request under 100 ms (p99 = 99 ms); orders: all between 100 and 500 ms (496 ms).
    for le, payments, orders in (("0.1", 10, 0), ("0.5", 10, 10), ("+Inf", 10, 10)):
        exporter.grow(f'{HISTOGRAM}{{service="payments",le="{le}"}}', payments)
        exporter.grow(f'{HISTOGRAM}{{service="orders",le="{le}"}}', orders)
    for pod, used, limit in (("etl-1", 900, 1000), ("etl-2", 500, 1000), ("idle", 0, 0)):  # idle: 0/0 is NaN
        exporter.set(f'container_memory_usage_bytes{{pod="{pod}"}}', used)
        exporter.set(f'container_spec_memory_limit_bytes{{pod="{pod}"}}', limit)
    exporter.set('container_memory_usage_bytes{container="node-agent"}', 100)  # no pod label
    exporter.set('container_spec_memory_limit_bytes{container="node-agent"}', 400)
    exporter.grow('container_cpu_usage_seconds_total{pod="etl-1"}', 0.5)
    app = live_server.url.split("://", 1)[1]
    server = Prometheus({"exporter": ([exporter.address], "/metrics"), "etl-monitor": ([app], "/metrics")})
    try:
        server.start()
        queries = {c["name"]: c["query"] for c in SEEDED.CAPTURES}
        server.wait_for(
            queries["latency-p99"], lambda r: len(r) == 2 and all(math.isfinite(float(s["value"][1])) for s in r)
        )
        # Both jobs scraped (a scrape missed on a loaded machine keeps the 5-minute share below 100).
        server.wait_for(
            queries["availability"],
            lambda r: (
                set(series_values(r, "job")) == {"exporter", "etl-monitor"}
                and all(value > 0 for value in series_values(r, "job").values())
            ),
        )
        server.wait_for(queries["memory"], lambda r: len(r) == 4)
        server.wait_for(queries["cpu"], lambda r: len(r) == 1)
        time.sleep(1.1)  # the next bucket end (1 s buckets) is after the answers were there
        yield server
    finally:
        server.stop()
        exporter.stop()


@pytest.fixture
def prom(prometheus: Prometheus, settings: Any, transactional_db: Any) -> Iterator[Prometheus]:
    # The flush after an earlier transactional test removed what the migrations seeded; the seed is
    # idempotent. (serialized_rollback cannot restore it: those flushes re-create the role groups.)
    SEEDED.seed(django_apps, None)
    settings.PROMETHEUS_URL = prometheus.url
    settings.ELASTICSEARCH_URL = ""
    settings.CAPTURE_BUCKET_SECONDS = 1  # with 5 minutes the bucket would end before this Prometheus started
    yield prometheus
    _LIVE_SERVER.acquire()  # no scrape until the database is flushed (see _LIVE_SERVER)
    _held.set()


def test_it_stores_the_p99_latency_of_each_service(prom):
    now = timezone.now()
    [result] = captures_run(now=now, names=["latency-p99"])
    end = bucket_end(now)
    assert (result.status, result.found, result.stored, result.notes) == ("stored", 2, 2, [])
    assert signal_values("STATS-PERF") == {"payments": pytest.approx(99.0), "orders": pytest.approx(496.0)}
    stored = Signal.objects.filter(loader__loader_code="STATS-PERF")
    assert {(s.metric_type, s.metric_source, s.captured_at, s.validation_status) for s in stored} == {
        ("LATENCY_P99_MS", "PROMETHEUS", end, "SUCCESS")
    }
    capture = Capture.objects.get(name="latency-p99")
    assert (capture.last_bucket_at, capture.last_stored, capture.last_error) == (end, 2, "")

    [again] = captures_run(now=now, names=["latency-p99"])  # the same bucket: nothing twice
    assert (again.status, again.found, again.stored) == ("stored", 2, 0)
    assert stored.count() == 2


def test_it_stores_the_availability_of_each_job_including_this_app(prom):
    now = timezone.now()
    [result] = captures_run(now=now, names=["availability"])
    assert (result.status, result.stored) == ("stored", 2)
    stored = signal_values("STATS-AVAIL")
    # What Prometheus itself answers for the capture's query at the bucket's end (on a loaded
    # machine a 1 s scrape can time out, so the share is not always 100).
    query = Capture.objects.get(name="availability").query
    assert stored == pytest.approx(series_values(prom.query(query, at=bucket_end(now).timestamp()), "job"))
    assert set(stored) == {"exporter", "etl-monitor"}
    assert all(50.0 < value <= 100.0 for value in stored.values()), stored
    assert set(
        Signal.objects.filter(loader__loader_code="STATS-AVAIL").values_list("metric_type", "metric_source")
    ) == {("UPTIME_PERCENT", "PROMETHEUS")}


def test_infra_memory_and_cpu_per_pod_skip_series_without_the_label_or_a_value(prom):
    now = timezone.now()
    results = {r.capture: r for r in captures_run(now=now, names=["memory", "cpu"])}
    memory, cpu = results["memory"], results["cpu"]
    assert (memory.status, memory.found, memory.stored) == ("stored", 2, 2)
    assert memory.notes == [
        "1 series without the label 'pod' skipped",
        "1 series without a finite value (NaN, Inf) skipped",
    ]
    assert "1 series without the label 'pod' skipped" in memory.summary()
    assert (cpu.status, cpu.stored) == ("stored", 1)
    values = signal_values("STATS-INFRA")
    assert set(values) == {"memory:etl-1", "memory:etl-2", "cpu:etl-1"}
    assert (values["memory:etl-1"], values["memory:etl-2"]) == (pytest.approx(90.0), pytest.approx(50.0))
    assert values["cpu:etl-1"] > 0
    assert dict(Signal.objects.filter(loader__loader_code="STATS-INFRA").values_list("signal_key", "metric_type")) == {
        "memory:etl-1": "MEMORY_PERCENT",
        "memory:etl-2": "MEMORY_PERCENT",
        "cpu:etl-1": "CPU_CORES",
    }


def test_the_scheduled_task_captures_every_configured_source(prom):
    entry = BEAT_SCHEDULE["statistics-capture"]
    assert entry["task"] == captures_run_task.name == "integrations.tasks.captures_run"
    assert entry["schedule"] == crontab(minute="*/5")

    captures_run_task()

    assert set(Signal.objects.values_list("loader__loader_code", "metric_source")) == {
        ("STATS-PERF", "PROMETHEUS"),
        ("STATS-AVAIL", "PROMETHEUS"),
        ("STATS-INFRA", "PROMETHEUS"),
    }
    assert "ELASTICSEARCH_URL" in Capture.objects.get(name="error-rate").last_error  # skipped: not configured
    assert not Incident.objects.exists()


def test_two_capture_runs_racing_store_each_key_once(require_postgres, prom):
    now = timezone.now()
    results = at_once(lambda: sum(r.stored for r in captures_run(now=now, names=PROMETHEUS_CAPTURES)), 2)
    keys = list(Signal.objects.values_list("loader__loader_code", "signal_key"))
    assert len(results) == 2
    assert len(keys) == len(set(keys)) == sum(results) == 7  # 2 latencies, 2 jobs, 2 memories, 1 CPU


# --- Elasticsearch ------------------------------------------------------------------------------------

ES_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json; compatible-with=8",
}


class FakeElasticsearch:
    """``_search`` of the index ``logs-*`` as Elasticsearch 8 answers a terms aggregation: a count per
    key under the aggregation's own name. ``broken`` is answered instead while it is set."""

    def __init__(self, server: HTTPServer) -> None:
        self.counts: dict[str, int] = {}
        self.broken: Response | None = None
        self.bodies: list[dict[str, Any]] = []
        server.expect_request("/logs-*/_search", method="POST").respond_with_handler(self._search)

    def _search(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.bodies.append(body)
        if self.broken is not None:
            return self.broken
        buckets = [{"key": key, "doc_count": n} for key, n in self.counts.items()]
        answer = {
            "took": 2,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": sum(self.counts.values()), "relation": "eq"}, "max_score": None, "hits": []},
            "aggregations": {
                name: {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": buckets}
                for name in body.get("aggs", {})
            },
        }
        return Response(json.dumps(answer), headers=ES_HEADERS)


@pytest.fixture
def es(httpserver: HTTPServer, settings: Any, db: Any) -> FakeElasticsearch:
    settings.ELASTICSEARCH_URL = httpserver.url_for("/")
    settings.ELASTICSEARCH_INDEX = "logs-*"
    fake = FakeElasticsearch(httpserver)
    fake.counts = {"billing": 7, "search": 2}
    return fake


def error_rate(now: dt.datetime = NOW) -> CaptureResult:
    return capture_run(Capture.objects.select_related("loader").get(name="error-rate"), now=now)


def test_error_counts_per_service_come_from_a_terms_aggregation_over_the_bucket(es):
    result = error_rate()
    end = dt.datetime(2025, 3, 3, 10, 5, tzinfo=dt.UTC)
    assert (result.status, result.bucket, result.found, result.stored) == ("stored", end, 2, 2)
    assert signal_values("STATS-ERROR-RATE") == {"billing": 7.0, "search": 2.0}
    stored = Signal.objects.filter(loader__loader_code="STATS-ERROR-RATE")
    assert {(s.metric_type, s.metric_source, s.captured_at) for s in stored} == {("ERROR_COUNT", "ELASTICSEARCH", end)}
    [body] = es.bodies
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [
        {"range": {"@timestamp": {"gte": "2025-03-03T10:00:00+00:00", "lt": "2025-03-03T10:05:00+00:00"}}},
        {"query_string": {"query": "level:ERROR"}},
    ]
    [aggregation] = body["aggs"].values()
    assert aggregation["terms"]["field"] == "service.name"


def test_the_same_bucket_twice_stores_nothing_and_the_next_bucket_stores_again(es):
    first = error_rate()
    second = error_rate(NOW + dt.timedelta(seconds=20))  # still the bucket ending 10:05
    assert (first.stored, second.status, second.found, second.stored) == (2, "stored", 2, 0)
    assert Signal.objects.count() == 2
    assert second.summary().startswith("0 of 2 values stored for the bucket ending 10:05 UTC")

    following = error_rate(NOW + dt.timedelta(minutes=5))
    assert (following.bucket.minute, following.stored) == (10, 2)
    assert Signal.objects.count() == 4
    assert Capture.objects.get(name="error-rate").last_stored == 2


@pytest.mark.parametrize("fault", ["garbage", "connection-refused"])
def test_a_failing_source_is_one_unreachable_incident_resolved_when_it_answers(es, httpserver, fault):
    if fault == "garbage":
        es.broken = Response(json.dumps({"unexpected": True}), headers=ES_HEADERS)
    else:
        source = DataSource.objects.create(
            name="elasticsearch", kind="ELASTICSEARCH", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1
        )
    result = error_rate()
    assert result.status == "failed" and result.error.startswith("source unavailable:")
    incident = Incident.objects.get(subject="source:elasticsearch")
    assert (incident.title, incident.rule, incident.status) == ("Data source unreachable: elasticsearch", None, "OPEN")
    assert not Signal.objects.exists()
    assert Capture.objects.get(name="error-rate").last_error == result.error

    assert error_rate(NOW + dt.timedelta(minutes=1)).status == "failed"
    incident.refresh_from_db()
    assert Incident.objects.filter(subject="source:elasticsearch").count() == 1
    assert incident.occurrences == 1  # one outage, seen again: not counted again

    if fault == "garbage":
        es.broken = None
    else:
        source.url = httpserver.url_for("/")
        source.save()
    recovered = error_rate(NOW + dt.timedelta(minutes=2))
    assert (recovered.status, recovered.stored) == ("stored", 2)
    incident.refresh_from_db()
    assert incident.status == "RESOLVED"


def test_an_elasticsearch_capture_without_a_query_counts_every_log_line(es, admin_user):
    capture = capture_save(
        user=admin_user,
        data={
            "name": "log-lines",
            "loader": "STATS-ERROR-RATE",
            "source": "elasticsearch",
            "source_kind": "ELASTICSEARCH",
            "query": "",
            "key_label": "service.name",
            "key_prefix": "lines:",
            "metric_type": "CUSTOM",
        },
    )
    assert capture_run(capture, now=NOW).stored == 2
    [body] = es.bodies
    assert [next(iter(f)) for f in body["query"]["bool"]["filter"]] == ["range"]


# --- not configured, disabled, paused --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "setting"), [("error-rate", "ELASTICSEARCH_URL"), ("latency-p99", "PROMETHEUS_URL")])
def test_a_source_not_configured_is_skipped_and_says_what_to_set(db, settings, name, setting):
    settings.PROMETHEUS_URL = settings.ELASTICSEARCH_URL = ""
    [result] = captures_run(now=NOW, names=[name])
    assert result.status == "skipped" and setting in result.error
    assert result.summary() == f"skipped: {result.error}"
    capture = Capture.objects.get(name=name)
    assert setting in capture.last_error and capture.last_bucket_at is None
    assert not Incident.objects.exists() and not Signal.objects.exists()


def test_a_disabled_source_is_skipped(db, settings):
    settings.PROMETHEUS_URL = "http://127.0.0.1:1"  # the row wins over the setting
    DataSource.objects.create(name="prometheus", kind="PROMETHEUS", url="http://127.0.0.1:1", enabled=False)
    [result] = captures_run(now=NOW, names=["availability"])
    assert result.status == "skipped" and "disabled" in result.error
    assert not Incident.objects.exists() and not Signal.objects.exists()


def test_a_paused_loader_is_skipped_without_asking_its_source(es):
    Loader.objects.filter(loader_code="STATS-ERROR-RATE").update(is_paused=True)
    result = error_rate()
    assert result.status == "skipped" and "paused" in result.error
    assert es.bodies == [] and not Signal.objects.exists() and not Incident.objects.exists()


# --- the STATS loaders ---------------------------------------------------------------------------------


def test_the_stats_loaders_are_active_system_loaders_with_history(db):
    loaders = Loader.objects.filter(loader_code__in=STATS_LOADERS).select_related("owner")
    assert sorted(loader.loader_code for loader in loaders) == list(STATS_LOADERS)
    for loader in loaders:
        assert loader.owner.slug == "etl-monitor"
        assert (loader.active_version.number, loader.active_version.state) == (1, "ACTIVE")
        assert loader.history.exists()
        assert LoaderVersion.history.filter(loader_id=loader.pk, state="ACTIVE").exists()
    captures = Capture.objects.filter(system=True)
    assert sorted(captures.values_list("name", "loader__loader_code")) == [
        ("availability", "STATS-AVAIL"),
        ("cpu", "STATS-INFRA"),
        ("error-rate", "STATS-ERROR-RATE"),
        ("latency-p99", "STATS-PERF"),
        ("memory", "STATS-INFRA"),
    ]
    assert all(capture.history.exists() for capture in captures)


def test_the_stats_loaders_and_their_signals_show_in_the_api_and_the_admin(es, viewer, client):
    listing = api(viewer).get("/api/v1/loaders/?owner=etl-monitor").json()
    assert {(item["loader_code"], item["active_version"]["state"], item["owner"]) for item in listing["results"]} == {
        (code, "ACTIVE", "etl-monitor") for code in STATS_LOADERS
    }

    error_rate()
    page = api(viewer).get("/api/v1/signals/?loader=STATS-ERROR-RATE&metric_source=ELASTICSEARCH").json()
    assert {(s["signal_key"], s["value_number"], s["metric_type"]) for s in page["results"]} == {
        ("billing", 7.0, "ERROR_COUNT"),
        ("search", 2.0, "ERROR_COUNT"),
    }
    client.force_login(viewer)
    admin_page = client.get("/admin/signals_app/signal/?metric_source__exact=ELASTICSEARCH")
    assert admin_page.status_code == 200
    assert "STATS-ERROR-RATE" in admin_page.content.decode() and "billing" in admin_page.content.decode()


# --- validation --------------------------------------------------------------------------------------

ES_COUNT = {**QUEUE_DEPTH, "source": "elasticsearch", "source_kind": "ELASTICSEARCH", "query": "level:WARN"}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**QUEUE_DEPTH, "key_label": "queue-name"}, "key_label", "Not a Prometheus label name: queue-name."),
        ({**QUEUE_DEPTH, "key_label": " , "}, "key_label", "Name the label (or field)"),
        ({**ES_COUNT, "key_label": "service.name, host.name"}, "key_label", "counts per one field"),
        ({**QUEUE_DEPTH, "source": "logs"}, "source", "Data source 'logs' is Elasticsearch, not Prometheus."),
        # No saved source of that name: the environment's default (ELASTICSEARCH_URL) is Elasticsearch.
        ({**QUEUE_DEPTH, "source": "elasticsearch"}, "source", "'elasticsearch' is Elasticsearch, not Prometheus."),
        ({**QUEUE_DEPTH, "loader": "NO-SUCH-LOADER"}, "loader", "No loader with the code 'NO-SUCH-LOADER'."),
        ({**QUEUE_DEPTH, "interval": 60}, "interval", "Unknown field."),
    ],
    ids=[
        "bad-label",
        "empty-key-label",
        "es-two-fields",
        "source-kind",
        "default-source-kind",
        "unknown-loader",
        "unknown-field",
    ],
)
def test_capture_save_names_the_bad_field_and_saves_nothing(admin_user, data, field, message):
    DataSource.objects.create(name="logs", kind="ELASTICSEARCH", url="http://es.example.com:9200")
    before = Capture.objects.count()
    with pytest.raises(InvalidInput) as refused:
        capture_save(user=admin_user, data=data)
    assert any(message in text for text in refused.value.errors[field]), refused.value.errors
    assert Capture.objects.count() == before and not Capture.objects.filter(name="queue-depth").exists()


def test_full_clean_names_the_field_of_a_bad_label(db):
    capture = Capture(**{**QUEUE_DEPTH, "loader": Loader.objects.get(loader_code="STATS-INFRA")})
    capture.key_label = "queue, le-bucket"
    with pytest.raises(ValidationError) as refused:
        capture.full_clean()
    assert refused.value.message_dict == {"key_label": ["Not a Prometheus label name: le-bucket."]}


# --- roles and the admin -----------------------------------------------------------------------------


def capture_form(**overrides: Any) -> dict[str, Any]:
    data = {
        **QUEUE_DEPTH,
        "loader": Loader.objects.get(loader_code="STATS-INFRA").pk,
        "description": "",
        "enabled": "on",
        "index": "",
        "time_field": "@timestamp",
    }
    return {**data, **overrides}


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_viewers_and_editors_see_captures_but_cannot_add_one(db, client, request, role):
    user = request.getfixturevalue(role)
    client.force_login(user)
    listing = client.get("/admin/integrations/capture/")
    assert listing.status_code == 200 and "latency-p99" in listing.content.decode()
    assert client.get("/admin/integrations/capture/add/").status_code == 403
    assert client.post("/admin/integrations/capture/add/", capture_form()).status_code == 403
    with pytest.raises(PermissionRefused):
        capture_save(user=user, data=QUEUE_DEPTH)
    with pytest.raises(ConfigInvalid) as refused:
        config_apply(text=captures_yaml(), user=user, source="captures.yaml")
    assert [(e.path, e.message) for e in refused.value.errors] == [
        ("captures[0]", "Your role does not allow you to manage statistics captures.")
    ]
    assert not Capture.objects.filter(name="queue-depth").exists()


def test_an_admin_adds_a_capture_in_the_admin_and_sees_a_bad_label_on_its_field(client, admin_user):
    client.force_login(admin_user)
    refused = client.post("/admin/integrations/capture/add/", capture_form(key_label="queue name"))
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["key_label"] == ["Not a Prometheus label name: queue name."]
    assert not Capture.objects.filter(name="queue-depth").exists()

    added = client.post("/admin/integrations/capture/add/", capture_form())
    assert added.status_code == 302
    capture = Capture.objects.get(name="queue-depth")
    assert (capture.loader.loader_code, capture.key_labels, capture.system) == ("STATS-INFRA", ["queue"], False)
    assert capture.history.get().history_user == admin_user


def test_capture_now_reports_the_result_in_a_message(es, client, admin_user, settings):
    settings.PROMETHEUS_URL = ""
    client.force_login(admin_user)
    pks = list(Capture.objects.filter(name__in=["error-rate", "latency-p99"]).values_list("pk", flat=True))
    response = client.post(
        "/admin/integrations/capture/", {"action": "capture_now", "_selected_action": pks}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("error-rate: 2 of 2 values stored for the bucket ending") for m in shown), shown
    assert any(m.startswith("latency-p99: skipped: no data source 'prometheus'") for m in shown), shown
    assert signal_values("STATS-ERROR-RATE") == {"billing": 7.0, "search": 2.0}


# --- apply_config --------------------------------------------------------------------------------------


def captures_yaml(**overrides: Any) -> str:
    item = {**QUEUE_DEPTH, **overrides}
    lines = ["captures:", f"  - name: {item.pop('name')}"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in item.items()]
    return "\n".join(lines) + "\n"


def test_captures_apply_from_yaml_idempotently(admin_user):
    def apply(text: str) -> list[tuple[str, str, list[str]]]:
        return [(c.key, c.action, c.fields) for c in config_apply(text=text, user=admin_user, source="c.yaml")]

    assert apply(captures_yaml()) == [("queue-depth", "created", [])]
    capture = Capture.objects.get(name="queue-depth")
    assert (capture.loader.loader_code, capture.query, capture.key_prefix, capture.metric_type) == (
        "STATS-INFRA",
        QUEUE_DEPTH["query"],
        "queue:",
        "CUSTOM",
    )
    history = Capture.history.count()
    assert apply(captures_yaml()) == [("queue-depth", "unchanged", [])]
    assert Capture.history.count() == history
    assert apply(captures_yaml(key_prefix="rabbitmq:")) == [("queue-depth", "changed", ["key_prefix"])]
    assert Capture.objects.get(name="queue-depth").key_prefix == "rabbitmq:"
    assert Capture.history.filter(name="queue-depth").first().history_user == admin_user


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"loader": "NO-SUCH-LOADER"}, "captures[0].loader", "No loader with the code 'NO-SUCH-LOADER'."),
        ({"api_token": "s3cr3t"}, "captures[0].api_token", "Secrets are not accepted from configuration files"),
        ({"password": "hunter2"}, "captures[0].password", "Secrets are not accepted from configuration files"),
        ({"key_label": "queue-name"}, "captures[0].key_label", "Not a Prometheus label name: queue-name."),
    ],
)
def test_bad_captures_in_yaml_name_the_item_path_and_change_nothing(admin_user, overrides, path, message):
    with pytest.raises(ConfigInvalid) as refused:
        config_apply(text=captures_yaml(**overrides), user=admin_user, source="c.yaml")
    [error] = refused.value.errors
    assert error.path == path and message in error.message
    assert error.line is not None
    assert not Capture.objects.filter(name="queue-depth").exists()


def test_captures_sharing_a_failing_source_ask_it_once_per_run(db, settings, httpserver):
    """The four seeded Prometheus captures on a Prometheus answering 502: one request per run,
    every capture failed with the reason, one occurrence of the source's incident."""
    settings.PROMETHEUS_URL = httpserver.url_for("/")
    httpserver.expect_request("/api/v1/query").respond_with_data("<html>bad gateway</html>", status=502)
    results = captures_run(now=NOW, names=PROMETHEUS_CAPTURES)
    assert len(httpserver.log) == 1
    assert [r.status for r in results] == ["failed"] * 4
    assert all("HTTP Status Code 502" in r.error for r in results)
    assert Incident.objects.get(subject="source:prometheus").occurrences == 1
    assert Signal.objects.count() == 0
