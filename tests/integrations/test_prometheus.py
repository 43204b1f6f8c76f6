"""promql_threshold against a real Prometheus (Debian's package), scraping a small exporter the
test serves with circuit-breaker and memory series."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
import requests
from django.utils import timezone

from incidents.detection import rule_evaluate, rules_evaluate
from incidents.models import DetectionRule, Incident
from tests.conftest import _service_unavailable
from tests.integrations.prom import Exporter, Prometheus


@pytest.fixture(scope="module")
def prometheus() -> Iterator[tuple[str, Exporter]]:
    if not Prometheus.available():
        _service_unavailable("Prometheus (the Debian package `prometheus`)")
    exporter = Exporter().start()
    server = Prometheus({"exporter": ([exporter.address], "/metrics")})
    try:
        server.start()
        yield server.url, exporter
    finally:
        server.stop()
        exporter.stop()


def scraped(url: str, query: str, expect: dict[str, float]) -> None:
    """Wait until Prometheus answers ``query`` with these values (``label=value`` of the ``name`` or
    ``pod`` label → value); the exporter is scraped every second."""
    deadline = time.monotonic() + 20
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        answer = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
        seen = {
            next(f"{k}={v}" for k, v in sorted(s["metric"].items()) if k in ("name", "pod")): float(s["value"][1])
            for s in answer["data"]["result"]
        }
        if seen == expect:
            return
        time.sleep(0.3)
    pytest.fail(f"Prometheus answered {query!r} with {seen}, never {expect}")


@pytest.fixture
def breaker_rule(db, prometheus, settings):
    url, _exporter = prometheus
    settings.PROMETHEUS_URL = url
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.get(name="Circuit breaker open")  # the roadmap's, seeded disabled
    rule.enabled = True
    rule.params = {**rule.params, "subject_labels": "name"}
    rule.save()
    return rule


def test_each_open_circuit_breaker_is_its_own_incident_and_resolves_when_it_closes(prometheus, breaker_rule):
    url, exporter = prometheus
    exporter.set('resilience4j_circuitbreaker_state{name="payments",state="open"}', 1)
    exporter.set('resilience4j_circuitbreaker_state{name="orders",state="open"}', 1)
    exporter.set('resilience4j_circuitbreaker_state{name="search",state="open"}', 0)
    query = breaker_rule.params["query"]
    scraped(url, query, {"name=orders": 1, "name=payments": 1, "name=search": 0})

    report = rule_evaluate(rule=breaker_rule, now=timezone.now())
    assert report.error == ""
    assert {(d.subject, d.action) for d in report.decisions} == {
        ("name=orders", "opened"),
        ("name=payments", "opened"),
        ("name=search", "clear"),
    }
    incidents = Incident.objects.filter(rule=breaker_rule)
    assert {i.severity for i in incidents} == {"CRITICAL"} and {i.category for i in incidents} == {"INTEGRATION"}
    assert incidents.get(subject="name=payments").metrics["labels"]["state"] == "open"

    exporter.set('resilience4j_circuitbreaker_state{name="payments",state="open"}', 0)
    scraped(url, query, {"name=orders": 1, "name=payments": 0, "name=search": 0})
    report = rule_evaluate(rule=breaker_rule, now=timezone.now() + dt.timedelta(seconds=1))
    assert {(d.subject, d.action) for d in report.decisions} == {
        ("name=orders", "ongoing"),  # still open: the same breach, no new occurrence
        ("name=payments", "resolved"),
        ("name=search", "clear"),
    }
    assert incidents.get(subject="name=payments").status == "RESOLVED"
    assert incidents.get(subject="name=orders").status == "OPEN"


def test_memory_above_85_percent_fires_per_pod(prometheus, settings, db):
    url, exporter = prometheus
    settings.PROMETHEUS_URL = url
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.get(name="Container memory above 85%")
    rule.enabled = True
    rule.params = {**rule.params, "subject_labels": "pod"}
    rule.save()
    exporter.set('container_memory_usage_bytes{pod="etl-1"}', 900)
    exporter.set('container_spec_memory_limit_bytes{pod="etl-1"}', 1000)
    exporter.set('container_memory_usage_bytes{pod="etl-2"}', 500)
    exporter.set('container_spec_memory_limit_bytes{pod="etl-2"}', 1000)
    scraped(url, rule.params["query"], {"pod=etl-1": 90, "pod=etl-2": 50})
    report = rule_evaluate(rule=rule, now=timezone.now())
    assert {(d.subject, round(d.value), d.action) for d in report.decisions} == {
        ("pod=etl-1", 90, "opened"),
        ("pod=etl-2", 50, "clear"),
    }
    assert Incident.objects.get(rule=rule).title == "pod=etl-1: memory at 90% of its limit"


def test_a_prometheus_that_is_down_or_answers_garbage_is_one_unreachable_incident(db, settings, httpserver):
    settings.PROMETHEUS_URL = httpserver.url_for("/")
    httpserver.expect_request("/api/v1/query").respond_with_data("<html>bad gateway</html>", status=502)
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.get(name="Circuit breaker open")
    rule.enabled = True
    rule.save()
    report = rule_evaluate(rule=rule, now=timezone.now())
    assert report.error.startswith("source unavailable: prometheus")
    assert Incident.objects.get(subject="source:prometheus").title == "Data source unreachable: prometheus"
    # Once Prometheus answers again, the source's incident resolves by itself.
    httpserver.clear()
    httpserver.expect_request("/api/v1/query").respond_with_json(
        {"status": "success", "data": {"resultType": "vector", "result": []}}
    )
    assert rule_evaluate(rule=rule, now=timezone.now()).error == ""
    assert Incident.objects.get(subject="source:prometheus").status == "RESOLVED"


def test_a_query_that_is_not_an_instant_vector_is_reported(db, settings, prometheus):
    url, _exporter = prometheus
    settings.PROMETHEUS_URL = url
    rule = DetectionRule.objects.create(
        name="scalar", kind="promql_threshold", params={"query": "scalar(vector(1))"}, threshold=0.0
    )
    report = rule_evaluate(rule=rule, now=timezone.now())
    assert report.error.startswith("source unavailable: prometheus") and "instant vector" in report.error


def test_test_connection_of_a_prometheus_source(prometheus, admin_client, db):
    from integrations.models import DataSource

    url, _exporter = prometheus
    source = DataSource.objects.create(name="prom", kind="PROMETHEUS", url=url)
    response = admin_client.post(
        "/admin/integrations/datasource/", {"action": "test_connection", "_selected_action": [source.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["prom: Prometheus answers queries"]


def test_an_aggregation_over_the_window_reads_a_range_query(prometheus, settings, db):
    """With ``aggregation``, the rule reads each series' samples over its window (a range query):
    a spike the instant value no longer shows still counts for ``max``."""
    url, exporter = prometheus
    settings.PROMETHEUS_URL = url
    query = 'container_memory_usage_bytes{pod="etl-3"} / container_spec_memory_limit_bytes{pod="etl-3"} * 100'
    exporter.set('container_memory_usage_bytes{pod="etl-3"}', 950)
    exporter.set('container_spec_memory_limit_bytes{pod="etl-3"}', 1000)
    scraped(url, query, {"pod=etl-3": 95})
    time.sleep(1.5)  # a few samples at 95 %
    exporter.set('container_memory_usage_bytes{pod="etl-3"}', 500)
    scraped(url, query, {"pod=etl-3": 50})
    time.sleep(1.5)  # and a few at 50 % (the range's end is a whole second)

    def rule(name: str, **params) -> DetectionRule:
        return DetectionRule.objects.create(
            name=name,
            kind="promql_threshold",
            params={"query": query, "subject_labels": "pod", **params},
            operator="GT",
            threshold=85.0,
            window_seconds=60,
        )

    now = timezone.now()
    instant = rule_evaluate(rule=rule("instant"), now=now)
    peak = rule_evaluate(rule=rule("peak", aggregation="max", step_seconds=1), now=now)
    low = rule_evaluate(rule=rule("low", aggregation="min", step_seconds=1), now=now)
    assert [(d.subject, d.value, d.action) for d in instant.decisions] == [("pod=etl-3", 50.0, "clear")]
    assert [(d.subject, d.value, d.action) for d in peak.decisions] == [("pod=etl-3", 95.0, "opened")]
    assert [(d.subject, d.value, d.action) for d in low.decisions] == [("pod=etl-3", 50.0, "clear")]
    opened = Incident.objects.get(rule__name="peak")
    assert opened.metrics["aggregation"] == "max" and opened.metrics["samples"] >= 3


def test_a_range_step_below_one_second_is_refused(db):
    from etl_monitor.errors import InvalidInput
    from incidents.kinds import kind_get

    with pytest.raises(InvalidInput) as refused:
        kind_get("promql_threshold").validate_params({"query": "up", "aggregation": "max", "step_seconds": 0})
    assert refused.value.errors == {"params.step_seconds": ["Must be at least 1."]}
    with pytest.raises(InvalidInput) as refused:
        kind_get("promql_threshold").validate_params({"query": "up", "aggregation": "median"})
    assert refused.value.errors == {"params.aggregation": ["Must be one of avg, max, min, last."]}


def test_a_source_that_fails_is_asked_once_per_batch_and_its_incident_fires_once(db, settings, httpserver):
    """Ten rules on a Prometheus that answers 502: one request (not ten timeouts in a row), one
    occurrence of the source's incident, and every rule reports the failure."""
    settings.PROMETHEUS_URL = httpserver.url_for("/")
    httpserver.expect_request("/api/v1/query").respond_with_data("<html>bad gateway</html>", status=502)
    rules = [
        DetectionRule.objects.create(name=f"probe {i}", kind="promql_threshold", params={"query": f"up{{n='{i}'}}"})
        for i in range(10)
    ]
    reports = rules_evaluate(rules=rules, now=timezone.now())
    assert len(httpserver.log) == 1
    assert all("prometheus: PrometheusApiClientException: HTTP Status Code 502" in r.error for r in reports)
    incident = Incident.objects.get(subject="source:prometheus")
    assert incident.occurrences == 1 and {r.decisions[0].incident_id for r in reports} == {incident.pk}
    rules_evaluate(rules=rules, now=timezone.now())  # the next batch asks again
    incident.refresh_from_db()
    assert len(httpserver.log) == 2 and incident.occurrences == 1  # one outage: seen again, not counted again


def test_a_source_answering_records_its_success_at_most_once_a_minute(db, settings, httpserver):
    from integrations.models import DataSource

    httpserver.expect_request("/api/v1/query").respond_with_json(
        {"status": "success", "data": {"resultType": "vector", "result": []}}
    )
    source = DataSource.objects.create(name="prom", kind="PROMETHEUS", url=httpserver.url_for("/"))
    rule = DetectionRule.objects.create(name="p", kind="promql_threshold", params={"query": "up", "source": "prom"})
    rule_evaluate(rule=rule, now=timezone.now())
    source.refresh_from_db()
    first = source.last_success_at
    rule_evaluate(rule=rule, now=timezone.now())
    source.refresh_from_db()
    assert first is not None and source.last_success_at == first  # no write for a second success
    DataSource.objects.filter(pk=source.pk).update(last_error="down", last_error_at=timezone.now())
    rule_evaluate(rule=rule, now=timezone.now())
    source.refresh_from_db()
    assert source.last_success_at > first  # after an error, the next success is written at once
