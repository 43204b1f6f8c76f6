"""The Elasticsearch double answers as Elasticsearch 8 does for what the dashboards use, and refuses
loudly what it does not evaluate — asked through the real elasticsearch 8 client."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError
from pytest_httpserver import HTTPServer

from tests.grafana.es_double import ElasticsearchDouble


def log(hour: int, level: str, message: str, service: str) -> dict:
    return {
        "@timestamp": f"2026-12-03T{hour:02}:00:00Z",
        "level": level,
        "service": {"name": service},
        "message": message,
    }


DOCS = [
    log(9, "ERROR", "Database timeout after 30s", "billing"),
    log(10, "WARN", "slow query", "billing"),
    log(11, "ERROR", "timeout talking to the database", "ingest-api"),
    {**log(12, "INFO", "sent", ""), "service": None, "service.name": "notifier"},  # a dotted key, not an object
]


@pytest.fixture
def client(httpserver: HTTPServer) -> Elasticsearch:
    ElasticsearchDouble(DOCS, index="logs-etl").install(httpserver)
    return Elasticsearch(httpserver.url_for("/"), request_timeout=10)


def matching(client: Elasticsearch, lucene: str) -> list[str]:
    answer = client.search(index="logs-*", query={"query_string": {"query": lucene}}, size=100, sort=["@timestamp"])
    return [hit["_source"]["@timestamp"][11:13] for hit in answer["hits"]["hits"]]


@pytest.mark.parametrize(
    ("lucene", "hours"),
    [
        ("level:ERROR", ["09", "11"]),
        ("level:error", []),  # a keyword field is exact and case-sensitive
        ("message:TIMEOUT", ["09", "11"]),  # a text field matches lower-cased words
        ('message:"database timeout"', ["09"]),  # a phrase: those words, in that order
        ('message.keyword:"Database timeout after 30s"', ["09"]),
        ("message.keyword:timeout", []),  # the keyword sub-field is the whole string
        ("level:ERROR AND NOT service.name:billing", ["11"]),
        ("level:ERROR -service.name:billing", ["11"]),
        ("level:ERROR level:WARN", ["09", "10", "11"]),  # juxtaposition is OR, as query_string's default
        ("service.name:(billing OR notifier)", ["09", "10", "12"]),  # dotted keys and nested objects alike
        ("service.name:bill*", ["09", "10"]),
        ("service.name:*", ["09", "10", "11", "12"]),
        ("@timestamp:[2026-12-03T10:00:00Z TO 2026-12-03T11:00:00Z}", ["10"]),
        ("@timestamp:[2026-12-03T11:00:00Z TO *]", ["11", "12"]),
        ("sent", ["12"]),  # no field: any field
        ("*", ["09", "10", "11", "12"]),
    ],
)
def test_it_evaluates_lucene_as_elasticsearch_does(client, lucene, hours):
    assert matching(client, lucene) == hours


def test_it_aggregates_terms_with_metrics_and_orders_them(client):
    answer = client.search(
        index="logs-*",
        size=0,
        aggs={
            "s": {
                "terms": {"field": "service.name", "size": 1, "order": {"_count": "desc"}},
                "aggs": {"first": {"min": {"field": "@timestamp"}}, "n": {"value_count": {"field": "level"}}},
            }
        },
    )
    terms = answer["aggregations"]["s"]
    assert terms["sum_other_doc_count"] == 2
    [bucket] = terms["buckets"]
    assert (bucket["key"], bucket["doc_count"], bucket["n"]["value"]) == ("billing", 2, 2)
    assert bucket["first"]["value_as_string"] == "2026-12-03T09:00:00.000Z"


def test_a_date_histogram_fills_the_extended_bounds(client):
    answer = client.search(
        index="logs-*",
        size=0,
        aggs={
            "h": {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": "1h",
                    "min_doc_count": 0,
                    "extended_bounds": {"min": "2026-12-03T08:00:00Z", "max": "2026-12-03T13:00:00Z"},
                    "format": "epoch_millis",
                }
            }
        },
    )
    assert [b["doc_count"] for b in answer["aggregations"]["h"]["buckets"]] == [0, 1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"aggs": {"p": {"percentiles": {"field": "took"}}}}, "Unknown aggregation type [percentiles]"),
        ({"aggs": {"t": {"terms": {"field": "message"}}}}, "Fielddata is disabled on [message]"),
        ({"aggs": {"h": {"date_histogram": {"field": "@timestamp", "interval": "1h"}}}}, "unknown field [interval]"),
        ({"query": {"fuzzy": {"message": "timeot"}}}, "unknown query [fuzzy]"),
        ({"query": {"query_string": {"query": "message:timeot~"}}}, "the test double does not evaluate it"),
        ({"query": {"query_string": {"query": "level:(ERROR"}}}, "Failed to parse query"),
    ],
)
def test_what_it_does_not_evaluate_is_an_error_like_elasticsearchs(client, body, reason):
    with pytest.raises(BadRequestError) as error:
        client.search(index="logs-*", size=0, **body)
    assert reason in str(error.value.body["error"]["root_cause"][0]["reason"])


def test_a_missing_index_is_not_found_and_a_pattern_matching_nothing_is_empty(client):
    with pytest.raises(NotFoundError):
        client.search(index="audit", size=0)
    assert client.search(index="audit-*", size=0)["hits"]["total"]["value"] == 0


def test_msearch_answers_each_search_on_its_own(client):
    answers = client.msearch(
        searches=[
            {"index": "logs-*"},
            {"size": 0, "query": {"query_string": {"query": "level:ERROR"}}},
            {"index": "logs-*"},
            {"size": 0, "aggs": {"x": {"geohash_grid": {"field": "where"}}}},
        ]
    )["responses"]
    assert answers[0]["status"] == 200 and answers[0]["hits"]["total"]["value"] == 2
    assert answers[1]["status"] == 400 and answers[1]["error"]["type"] == "x_content_parse_exception"
