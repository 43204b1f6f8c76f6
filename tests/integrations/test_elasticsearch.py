"""The es_error_count kind with the real Elasticsearch 8 client against a local server answering
``_search`` as Elasticsearch 8 does (including the X-Elastic-Product header the client requires)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from incidents.detection import rule_evaluate, rules_evaluate
from incidents.models import DetectionRule, Incident
from integrations.models import DataSource
from tests.config_files import config_apply, config_refused
from tests.incidents.conftest import NOW, add_signals
from tests.net import free_port

ES = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/vnd.elasticsearch+json; compatible-with=8"}


def es_answer(total: int, top: list[tuple[str, int]], services: list[tuple[str, int]] | None = None) -> dict:
    buckets = [{"key": message, "doc_count": n} for message, n in top]
    answer = {
        "took": 3,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "max_score": None, "hits": []},
        "aggregations": {"top": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": buckets}},
    }
    if services is not None:
        answer["aggregations"] = {
            "services": {
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": 0,
                "buckets": [
                    {"key": name, "doc_count": n, "top": {"buckets": [{"key": f"{name} failed", "doc_count": n}]}}
                    for name, n in services
                ],
            }
        }
    return answer


@pytest.fixture
def es(httpserver: HTTPServer, settings) -> HTTPServer:
    settings.ELASTICSEARCH_URL = httpserver.url_for("/")
    settings.ELASTICSEARCH_INDEX = "logs-*"
    settings.KIBANA_URL = "https://kibana.example.com"
    return httpserver


@pytest.fixture
def log_rule(db):
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.get(name="Error log spike")  # the roadmap's rule 2, seeded disabled
    rule.enabled = True
    rule.save()
    return rule


def search_bodies(server: HTTPServer) -> list[dict]:
    return [json.loads(request.data) for request, _response in server.log if request.path.endswith("/_search")]


def test_more_errors_than_the_threshold_open_an_incident_with_the_top_messages(es, log_rule):
    es.expect_request("/logs-*/_search", method="POST").respond_with_json(
        es_answer(73, [("db timeout", 40), ("null pointer", 20)]), headers=ES
    )
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert [(d.subject, d.value, d.action) for d in report.decisions] == [("all services", 73.0, "opened")]
    incident = Incident.objects.get(rule=log_rule)
    assert (incident.severity, incident.category, incident.loader) == ("MEDIUM", "LOG", None)
    assert incident.title == "all services: 73 ERROR log lines in 5 minutes (threshold 50)"
    assert incident.metrics["top_messages"] == ["db timeout (40)", "null pointer (20)"]
    assert incident.metrics["kibana"].startswith("https://kibana.example.com/app/discover#/")
    [body] = search_bodies(es)
    assert body["size"] == 0
    time_range = body["query"]["bool"]["filter"][0]["range"]["@timestamp"]
    assert (time_range["gte"], time_range["lte"]) == ((NOW - dt.timedelta(minutes=5)).isoformat(), NOW.isoformat())
    assert body["query"]["bool"]["filter"][1] == {"term": {"level": "ERROR"}}


def test_at_the_threshold_nothing_fires(es, log_rule):
    es.expect_request("/logs-*/_search", method="POST").respond_with_json(es_answer(50, []), headers=ES)
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert [(d.value, d.action) for d in report.decisions] == [(50.0, "clear")]
    assert not Incident.objects.exists()


def test_per_service_counts_open_one_incident_per_offending_service(es, log_rule):
    log_rule.params = {"service_field": "service.name", "level_field": "log.level", "index": "app-logs"}
    log_rule.save()
    es.expect_request("/app-logs/_search", method="POST").respond_with_json(
        es_answer(0, [], services=[("billing", 80), ("search", 3)]), headers=ES
    )
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert {(d.subject, d.action) for d in report.decisions} == {("billing", "opened"), ("search", "clear")}
    assert Incident.objects.get().metrics["top_messages"] == ["billing failed (80)"]
    [body] = search_bodies(es)
    assert body["aggs"]["services"]["terms"]["field"] == "service.name"
    assert body["query"]["bool"]["filter"][1] == {"term": {"log.level": "ERROR"}}


def test_an_unreachable_source_is_one_incident_and_the_other_rules_complete(settings, log_rule, active_loader):
    DataSource.objects.create(
        name="elasticsearch", kind="ELASTICSEARCH", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1
    )
    failures = DetectionRule.objects.get(name="Signal failure rate above 5%")
    failures.enabled = True
    failures.save()
    add_signals(active_loader, failed=5, ok=5)
    log_report, failure_report = rules_evaluate(rules=[log_rule, failures], now=NOW)
    assert log_report.error.startswith("source unavailable: elasticsearch")
    assert failure_report.error == "" and failure_report.decisions[0].action == "opened"
    unreachable = Incident.objects.get(subject="source:elasticsearch")
    assert unreachable.title == "Data source unreachable: elasticsearch" and unreachable.rule is None
    rule_evaluate(rule=log_rule, now=NOW + dt.timedelta(minutes=1))
    unreachable.refresh_from_db()
    assert Incident.objects.filter(subject="source:elasticsearch").count() == 1  # deduplicated
    assert unreachable.occurrences == 1 and unreachable.last_seen == NOW + dt.timedelta(minutes=1)  # one outage
    source = DataSource.objects.get(name="elasticsearch")
    assert "ConnectionError" in source.last_error and source.last_success_at is None


@pytest.mark.parametrize(
    "answer",
    [
        Response(json.dumps({"unexpected": True}), headers=ES),  # not a search answer
        Response(json.dumps(es_answer(1, [])), headers={"Content-Type": "application/json"}),  # not Elasticsearch
        Response("<html>proxy error</html>", status=502, headers={"Content-Type": "text/html"}),
    ],
    ids=["garbage", "no-product-header", "proxy-error"],
)
def test_a_source_answering_garbage_is_reported_as_unreachable(es, log_rule, answer):
    es.expect_request("/logs-*/_search", method="POST").respond_with_response(answer)
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert report.error.startswith("source unavailable: elasticsearch")
    assert Incident.objects.get(subject="source:elasticsearch").status == "OPEN"


def test_no_source_configured_says_so(settings, log_rule):
    settings.ELASTICSEARCH_URL = ""
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert "no data source 'elasticsearch'" in report.error


def test_basic_auth_and_the_secret_reach_elasticsearch_but_never_the_error(es, log_rule):
    DataSource.objects.create(
        name="elasticsearch",
        kind="ELASTICSEARCH",
        url=es.url_for("/"),
        auth="BASIC",
        username="elastic",
        secret="pw-s3cret",
    )
    es.expect_request(
        "/logs-*/_search", method="POST", headers={"Authorization": "Basic ZWxhc3RpYzpwdy1zM2NyZXQ="}
    ).respond_with_json(es_answer(1, []), headers=ES)
    report = rule_evaluate(rule=log_rule, now=NOW)
    assert report.error == "" and report.decisions[0].value == 1.0
    assert DataSource.objects.get().last_success_at is not None


def test_only_admins_manage_data_sources_and_the_secret_never_shows(client, admin_client, editor, db):
    source = DataSource.objects.create(
        name="logs", kind="ELASTICSEARCH", url="http://es.example.com:9200", auth="API_KEY", secret="key-123"
    )
    page = admin_client.get(f"/admin/integrations/datasource/{source.pk}/change/").content.decode()
    assert "key-123" not in page
    data = {
        "name": "logs",
        "kind": "ELASTICSEARCH",
        "url": "http://es.example.com:9200",
        "auth": "API_KEY",
        "username": "",
        "secret": "",
        "timeout_seconds": "5",
        "enabled": "on",
        "verify_tls": "on",
    }
    response = admin_client.post(f"/admin/integrations/datasource/{source.pk}/change/", data)
    assert response.status_code == 302
    assert DataSource.objects.get().secret == "key-123"  # kept
    client.force_login(editor)
    assert client.get("/admin/integrations/datasource/add/").status_code == 403
    assert (
        client.post(f"/admin/integrations/datasource/{source.pk}/change/", {**data, "url": "http://evil"}).status_code
        == 403
    )
    assert DataSource.objects.get().url == "http://es.example.com:9200"


def test_a_source_form_names_what_its_authentication_lacks(admin_client, db):
    response = admin_client.post(
        "/admin/integrations/datasource/add/",
        {"name": "prom", "kind": "PROMETHEUS", "url": "http://prom:9090", "auth": "BASIC", "timeout_seconds": "5"},
    )
    form = response.context["adminform"].form
    assert form.errors["username"] == ["Basic authentication needs a username."]
    assert form.errors["secret"] == ["This authentication needs a secret: enter it."]
    assert not DataSource.objects.exists()


SOURCES_YAML = """
data_sources:
  - name: prometheus
    kind: PROMETHEUS
    url: http://prometheus.internal:9090
    timeout_seconds: 3
  - name: logs
    kind: ELASTICSEARCH
    url: https://es.internal:9200
    verify_tls: false
"""


def _apply(tmp_path, text: str, user: str):
    return config_apply(tmp_path, text, "--as", user)


def test_data_sources_apply_from_yaml_idempotently(tmp_path, admin_user):
    _apply(tmp_path, SOURCES_YAML, admin_user.username)
    assert list(
        DataSource.objects.order_by("name").values_list("name", "kind", "url", "verify_tls", "timeout_seconds")
    ) == [
        ("logs", "ELASTICSEARCH", "https://es.internal:9200", False, 5.0),
        ("prometheus", "PROMETHEUS", "http://prometheus.internal:9090", True, 3.0),
    ]
    history = DataSource.history.count()
    _apply(tmp_path, SOURCES_YAML, admin_user.username)
    assert DataSource.history.count() == history  # unchanged: nothing saved again
    assert DataSource.history.filter(name="logs").first().history_user == admin_user


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("password: hunter2", "data_sources[0].password: Secrets are not accepted from configuration files"),
        ("auth: BEARER", "data_sources[0].auth: This authentication needs a secret"),
        ("kind: GRAPHITE", "data_sources[0].kind"),
        ("url: ftp://logs.internal", "data_sources[0].url: Enter an http:// or https:// URL"),
        ("url: http://logs_internal:9200", "data_sources[0].url: Not a valid host name: logs_internal."),
    ],
)
def test_bad_data_sources_name_the_path_and_change_nothing(tmp_path, admin_user, item, message):
    text = f"data_sources:\n  - name: p\n    {item}\n"
    if "url:" not in item:
        text += "    url: http://p:9090\n"
    if "kind:" not in item:
        text += "    kind: PROMETHEUS\n"

    err = config_refused(tmp_path, text, "--as", admin_user.username)
    assert message in err
    assert not DataSource.objects.exists()


def test_only_admins_apply_data_sources(tmp_path, editor):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        _apply(tmp_path, SOURCES_YAML, editor.username)
    assert not DataSource.objects.exists()


def test_test_connection_reads_the_server_and_counts_the_log_index(es, admin_client, db):
    from integrations.models import DataSource

    info = {
        "name": "es-1",
        "cluster_name": "logs-prod",
        "cluster_uuid": "aXb3",
        "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1"},
        "tagline": "You Know, for Search",
    }
    es.expect_request("/", method="GET").respond_with_json(info, headers=ES)
    es.expect_request("/logs-*/_count", method="POST").respond_with_json(
        {"count": 123456, "_shards": {"total": 3, "successful": 3, "skipped": 0, "failed": 0}}, headers=ES
    )
    source = DataSource.objects.create(name="logs", kind="ELASTICSEARCH", url=es.url_for("/"))
    response = admin_client.post(
        "/admin/integrations/datasource/", {"action": "test_connection", "_selected_action": [source.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "logs: Elasticsearch 8.15.0 (cluster logs-prod); logs-*: 123,456 documents"
    ]
    source.refresh_from_db()
    assert source.last_success_at is not None and source.last_error == ""


def test_test_connection_names_an_index_it_cannot_read(es, admin_client, db):
    from integrations.models import DataSource

    es.expect_request("/", method="GET").respond_with_json(
        {"cluster_name": "c", "version": {"number": "8.15.0"}}, headers=ES
    )
    es.expect_request("/logs-*/_count", method="POST").respond_with_json(
        {
            "error": {"type": "security_exception", "reason": "action [indices:data/read/search] is unauthorized"},
            "status": 403,
        },
        status=403,
        headers=ES,
    )
    source = DataSource.objects.create(name="logs", kind="ELASTICSEARCH", url=es.url_for("/"))
    response = admin_client.post(
        "/admin/integrations/datasource/", {"action": "test_connection", "_selected_action": [source.pk]}, follow=True
    )
    (message,) = [str(m) for m in response.context["messages"]]
    assert message.startswith("logs: AuthorizationException") and "unauthorized" in message
    source.refresh_from_db()
    assert "unauthorized" in source.last_error


@pytest.mark.parametrize(
    "url", ["http://elasticsearch:9200", "https://es.example.com:9200/", "http://10.0.0.7:9200", "http://[::1]:9200"]
)
def test_a_source_may_be_a_bare_service_name_or_an_address(admin_user, url):
    """Kubernetes and Compose name services without a dot (``http://elasticsearch:9200``), which
    Django's URL check would refuse."""
    from integrations.sources.services import data_source_save

    source = data_source_save(user=admin_user, data={"name": "logs", "kind": "ELASTICSEARCH", "url": url})
    assert DataSource.objects.get(pk=source.pk).url == url
