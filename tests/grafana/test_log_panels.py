"""The log dashboard's Elasticsearch queries, proven: every target of every dashboard that reads
Elasticsearch is turned into the request Grafana's data source sends (tests/grafana/grafana_es.py),
its Lucene text must parse with luqum, and it is sent with the real Elasticsearch 8 client to a
local server answering as Elasticsearch 8 does (tests/grafana/es_double.py) over a day of logs made
here. The answers must be the ones the day was made with: errors per service, the top message and
its first occurrence, one correlation id's lines in time order across services."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from luqum.parser import parser as lucene_parser
from pytest_httpserver import HTTPServer

from tests.grafana.dashboards import ELASTICSEARCH, Target, dashboard_load, targets
from tests.grafana.es_double import ElasticsearchDouble, to_millis
from tests.grafana.grafana_es import (
    ALL,
    DOCUMENT_KEYS,
    lucene_variables,
    msearch_header,
    search_body,
    table_columns,
    terms_body,
)

DAY_START = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
DAY_END = DAY_START + dt.timedelta(days=1)
START_MS, END_MS = to_millis(DAY_START.isoformat()), to_millis(DAY_END.isoformat())
INDEX = "logs-*"  # the provisioned data source's ELASTICSEARCH_INDEX
SERVICES = ("ingest-api", "loader-runner", "billing", "notifier")
# ERROR messages and how many times each occurs in the day (the most frequent first).
ERROR_MESSAGES = {
    "database timeout after 30s": 41,
    "upstream returned HTTP 503": 23,
    "row rejected: null customer_id": 17,
    "SFTP connection refused": 9,
    "schema mismatch: column amount is text": 6,
    "disk quota exceeded on /data": 4,
    "certificate expired for partner-api": 3,
    "duplicate key value violates unique constraint": 3,
    "kafka producer queue full": 2,
    "token refresh failed": 2,
    "out of memory in transform step": 1,
    "unknown currency code XBT": 1,
}
LOADERS = ("SALES-DAILY", "CRM-SYNC", "FX-RATES")
TRACE = "run-7f3a-9c21"  # the correlation id the timeline is asked about


def _at(seconds: float) -> str:
    return (DAY_START + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def log_day() -> list[dict[str, Any]]:
    """A day of logs of four services in production (and a little staging): INFO chatter, WARNs,
    the ERRORs of ERROR_MESSAGES, and executions whose correlation ids cross services. Documents
    are in ingestion order, which is not time order."""
    rng = random.Random(16)
    documents: list[dict[str, Any]] = []

    def log(seconds: float, service: str, level: str, message: str, **extra: Any) -> None:
        document = {
            "@timestamp": _at(seconds),
            "level": level,
            "service": {"name": service},
            "message": message,
            "environment": extra.pop("environment", "prod"),
            **extra,
        }
        documents.append(document)

    for _ in range(600):
        service = rng.choice(SERVICES)
        log(rng.uniform(0, 86_399), service, rng.choice(("INFO", "INFO", "INFO", "WARN")), f"{service} heartbeat ok")
    for message, count in ERROR_MESSAGES.items():
        for _ in range(count):
            service = rng.choice(SERVICES)
            extra = {"loader_code": rng.choice(LOADERS)} if service == "loader-runner" else {}
            log(
                rng.uniform(3_600, 86_399),
                service,
                "ERROR",
                message,
                correlation_id=f"run-{rng.randrange(10**6)}",
                **extra,
            )
    # Staging errors: the environment variable must keep them out of the production view.
    for i in range(5):
        log(40_000 + i, "billing", "ERROR", "database timeout after 30s", environment="staging")
    # The traced execution: accepted by the API, run by the runner, billed, then notified — logged
    # out of order, and with a second execution interleaved that must not appear.
    trace = [
        (50_010.0, "loader-runner", "INFO", "run started", {"loader_code": "SALES-DAILY"}),
        (50_000.0, "ingest-api", "INFO", "signal batch accepted", {}),
        (50_020.5, "loader-runner", "WARN", "slow source query", {"loader_code": "SALES-DAILY"}),
        (50_090.0, "notifier", "ERROR", "token refresh failed", {}),
        (50_060.0, "billing", "INFO", "usage recorded", {}),
        (50_030.0, "loader-runner", "ERROR", "database timeout after 30s", {"loader_code": "SALES-DAILY"}),
    ]
    for seconds, service, level, message, extra in trace:
        log(seconds, service, level, message, correlation_id=TRACE, **extra)
        log(seconds + 1, service, "INFO", "other execution", correlation_id="run-7f3a-0000")
    rng.shuffle(documents)
    return documents


DAY = log_day()


def production(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["environment"] == "prod"]


@pytest.fixture
def es(httpserver: HTTPServer) -> tuple[Elasticsearch, ElasticsearchDouble]:
    double = ElasticsearchDouble(DAY, index="logs-etl-2026.12.03")
    double.install(httpserver)
    return Elasticsearch(httpserver.url_for("/"), request_timeout=10), double


DASHBOARD = dashboard_load("etl-log-monitoring")
PROD = {"environment": ["prod"], "correlation_id": TRACE}


def run(client: Elasticsearch, target: Target, chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """``target`` as Grafana sends it (one _msearch pair), its answer; a failed search fails."""
    body = search_body(target.target, lucene_variables(DASHBOARD, chosen), START_MS, END_MS)
    [answer] = client.msearch(searches=[msearch_header(INDEX), body])["responses"]
    assert answer.get("status") == 200, f"{target.name}: {json.dumps(answer.get('error'))}"
    return answer


def panel_target(title: str) -> Target:
    [found] = [t for t in targets(ELASTICSEARCH) if t.panel["title"] == title]
    return found


ES_TARGETS = targets(ELASTICSEARCH)


def test_it_finds_the_log_dashboards_queries():
    assert {t.dashboard for t in ES_TARGETS} == {"etl-log-monitoring"}
    assert len(ES_TARGETS) >= 5


@pytest.mark.parametrize("target", ES_TARGETS, ids=[t.name for t in ES_TARGETS])
def test_every_elasticsearch_query_parses_and_answers_with_data(es, target):
    client, double = es
    for chosen in ({}, PROD):  # as the dashboard opens (All, an empty correlation id), and filled in
        body = search_body(target.target, lucene_variables(DASHBOARD, chosen), START_MS, END_MS)
        for clause in body["query"]["bool"]["filter"]:
            if "query_string" in clause:
                text = clause["query_string"]["query"]
                assert "$" not in text, f"{target.name}: a variable was left in {text!r}"
                lucene_parser.parse(text)  # raises on a query Elasticsearch would refuse to parse
    answer = run(client, target, PROD)
    assert answer["hits"]["total"]["value"] > 0, f"{target.name}: no document matched"
    if "aggs" in body:
        first = next(iter(body["aggs"]))
        buckets = answer["aggregations"][first]["buckets"]
        assert any(b["doc_count"] for b in buckets), f"{target.name}: empty aggregation"
    else:
        assert answer["hits"]["hits"], f"{target.name}: no documents returned"
    assert double.requests[-1] == body  # what the double evaluated is what was built


def test_error_rate_by_service_counts_each_services_production_errors(es):
    client, _ = es
    answer = run(client, panel_target("Error rate by service"), {"environment": ["prod"]})
    expected = Counter(d["service"]["name"] for d in production(DAY) if d["level"] == "ERROR")
    by_service = answer["aggregations"]["3"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in by_service} == dict(expected)
    assert [b["key"] for b in by_service] == [
        name for name, _ in sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    for bucket in by_service:
        histogram = bucket["2"]["buckets"]
        assert len(histogram) == 24 * 60 + 1  # a bucket a minute, the empty ones included (extended_bounds)
        assert (histogram[0]["key"], histogram[-1]["key"]) == (START_MS, END_MS)
        assert sum(b["doc_count"] for b in histogram) == expected[bucket["key"]]


def test_all_environments_add_the_staging_errors(es):
    client, _ = es
    answer = run(client, panel_target("Error rate by service"), {"environment": ALL})
    billing = {b["key"]: b["doc_count"] for b in answer["aggregations"]["3"]["buckets"]}["billing"]
    assert billing == sum(1 for d in DAY if d["level"] == "ERROR" and d["service"]["name"] == "billing")
    assert billing == 5 + sum(1 for d in production(DAY) if d["level"] == "ERROR" and d["service"]["name"] == "billing")


def test_the_service_variable_narrows_to_the_chosen_services(es):
    client, _ = es
    answer = run(client, panel_target("Error lines"), {"environment": ["prod"], "service": ["billing", "notifier"]})
    expected = sum(
        1 for d in production(DAY) if d["level"] == "ERROR" and d["service"]["name"] in ("billing", "notifier")
    )
    assert answer["hits"]["total"] == {"value": expected, "relation": "eq"}
    assert sum(b["doc_count"] for b in answer["aggregations"]["2"]["buckets"]) == expected


def test_top_messages_are_the_ten_most_frequent_with_their_first_and_last_occurrence(es):
    client, _ = es
    answer = run(client, panel_target("Top 10 error messages"), {"environment": ["prod"]})
    errors = [d for d in production(DAY) if d["level"] == "ERROR"]
    counts = Counter(d["message"] for d in errors)
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    buckets = answer["aggregations"]["2"]["buckets"]
    assert [(b["key"], b["doc_count"]) for b in buckets] == expected
    top = buckets[0]
    assert top["key"] == "database timeout after 30s"
    times = sorted(to_millis(d["@timestamp"]) for d in errors if d["message"] == top["key"])
    assert (top["4"]["value"], top["5"]["value"]) == (times[0], times[-1])
    assert to_millis(top["4"]["value_as_string"]) == times[0]
    assert answer["aggregations"]["2"]["sum_other_doc_count"] == sum(sorted(counts.values(), reverse=True)[10:])


def test_errors_by_loader_count_only_lines_that_name_a_loader(es):
    client, _ = es
    answer = run(client, panel_target("Errors by loader"), {"environment": ["prod"]})
    expected = Counter(d["loader_code"] for d in production(DAY) if d["level"] == "ERROR" and "loader_code" in d)
    assert {b["key"]: b["doc_count"] for b in answer["aggregations"]["2"]["buckets"]} == dict(expected)
    assert set(expected) == set(LOADERS)


def test_log_volume_by_level_counts_every_line(es):
    client, _ = es
    answer = run(client, panel_target("Log volume by level"), {"environment": ["prod"]})
    expected = Counter(d["level"] for d in production(DAY))
    assert {b["key"]: b["doc_count"] for b in answer["aggregations"]["3"]["buckets"]} == dict(expected)


def test_the_correlation_timeline_is_that_ids_lines_in_time_order_across_services(es):
    client, _ = es
    answer = run(client, panel_target("Correlation-id timeline"), PROD)
    hits = answer["hits"]["hits"]
    expected = sorted((d for d in DAY if d.get("correlation_id") == TRACE), key=lambda d: d["@timestamp"])
    assert len(expected) == 6
    # Grafana asks for the newest first; the table's sortBy shows them oldest first.
    assert [h["_source"] for h in reversed(hits)] == expected
    assert [h["_source"]["service"]["name"] for h in reversed(hits)] == [
        "ingest-api",
        "loader-runner",
        "loader-runner",
        "loader-runner",
        "billing",
        "notifier",
    ]
    assert [h["sort"][0] for h in hits] == sorted((to_millis(d["@timestamp"]) for d in expected), reverse=True)
    panel = panel_target("Correlation-id timeline").panel
    assert panel["options"]["sortBy"] == [{"displayName": "Time", "desc": False}]


def test_an_empty_correlation_id_shows_nothing_rather_than_everything(es):
    client, _ = es
    answer = run(client, panel_target("Correlation-id timeline"), {"correlation_id": ""})
    assert answer["hits"]["total"]["value"] == 0


def test_a_correlation_id_with_lucene_characters_is_escaped_not_interpreted(es):
    client, _ = es
    answer = run(client, panel_target("Correlation-id timeline"), {"correlation_id": "run-7f3a-* OR level:INFO"})
    assert answer["hits"]["total"]["value"] == 0


def test_the_service_variable_lists_the_services_of_the_environment(es):
    client, double = es
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    body = terms_body(variables["service"], lucene_variables(DASHBOARD, {"environment": ["staging"]}), START_MS, END_MS)
    answer = client.search(index=INDEX, **body)
    assert [b["key"] for b in answer["aggregations"]["1"]["buckets"]] == ["billing"]
    body = terms_body(variables["service"], lucene_variables(DASHBOARD), START_MS, END_MS)
    answer = client.search(index=INDEX, **body)
    assert [b["key"] for b in answer["aggregations"]["1"]["buckets"]] == sorted(SERVICES)  # _key ascending
    assert double.requests[-1]["aggs"]["1"]["terms"]["field"] == "service.name"
    body = terms_body(variables["environment"], lucene_variables(DASHBOARD), START_MS, END_MS)
    answer = client.search(index=INDEX, **body)
    assert [b["key"] for b in answer["aggregations"]["1"]["buckets"]] == ["prod", "staging"]


def test_loader_columns_link_to_the_loader_in_etl_monitor():
    for title, column in (("Errors by loader", "Loader"), ("Correlation-id timeline", "Loader")):
        panel = panel_target(title).panel
        [override] = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == column]
        [link] = [p["value"][0] for p in override["properties"] if p["id"] == "links"]
        assert link["url"] == "${etl_monitor_url}/admin/ops/loaders/${__data.fields.Loader}/"
    names = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert names["etl_monitor_url"]["type"] == "textbox" and names["etl_monitor_url"]["hide"] == 2
    assert names["correlation_id"]["type"] == "textbox"


TABLES = [t for t in ES_TARGETS if t.panel["type"] == "table"]


@pytest.mark.parametrize("target", TABLES, ids=[t.name for t in TABLES])
def test_table_transformations_and_overrides_name_columns_grafana_makes(es, target):
    """An organize transformation or an override naming a column Grafana does not make does
    nothing, silently: a renamed column keeps its raw name, a link never appears."""
    client, _ = es
    columns = table_columns(target.target, run(client, target, PROD))
    shown = list(columns)
    for transformation in target.panel.get("transformations", []):
        assert transformation["id"] == "organize"
        options = transformation["options"]
        for key in ("excludeByName", "indexByName", "renameByName"):
            unknown = set(options.get(key, {})) - set(columns) - set(DOCUMENT_KEYS)
            assert not unknown, f"{target.name}: {key} names {unknown}, Grafana's columns are {columns}"
        shown = [options.get("renameByName", {}).get(c, c) for c in columns if not options["excludeByName"].get(c)]
    for override in target.panel["fieldConfig"]["overrides"]:
        assert override["matcher"]["id"] == "byName"
        assert override["matcher"]["options"] in shown, f"{target.name}: override for a column not shown: {shown}"
    for sort in target.panel["options"].get("sortBy", []):
        assert sort["displayName"] in shown
