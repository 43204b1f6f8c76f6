"""Data sources and statistics captures over the REST API: every role reads them, only Admin writes,
tests a source or runs a capture; the source secret is write-only; errors name the field."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from integrations.models import Capture, DataSource
from loaders.models import Loader
from tests.integrations.prom import QUEUE_DEPTH
from tests.net import free_port

SECRET = "s3cret-never-shown-0123456789"
SOURCES = "/api/v1/data-sources/"
CAPTURES = "/api/v1/captures/"
READ_ONLY_ROLES = ["viewer", "editor", "operator", "approver"]

LOGS = {"name": "logs", "kind": "ELASTICSEARCH", "url": "https://es.example.com:9200"}


def api(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def source_rows() -> list[tuple]:
    return list(DataSource.objects.order_by("pk").values_list("name", "kind", "url", "auth", "username", "enabled"))


def capture_rows() -> list[tuple]:
    return list(Capture.objects.order_by("pk").values_list("name", "loader__loader_code", "query", "key_label"))


@pytest.fixture
def logs(db) -> DataSource:
    return DataSource.objects.create(**LOGS, auth="BASIC", username="monitor", secret=SECRET)


# --- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", READ_ONLY_ROLES)
def test_every_role_reads_sources_and_captures_but_only_admins_write_them(request, role, logs):
    client = api(request.getfixturevalue(role))
    capture = Capture.objects.get(name="latency-p99")
    sources_before, captures_before = source_rows(), capture_rows()
    for url in (SOURCES, f"{SOURCES}{logs.pk}/", CAPTURES, f"{CAPTURES}{capture.pk}/"):
        assert client.get(url).status_code == 200, url
    for response in (
        client.post(SOURCES, {**LOGS, "name": "logs-2"}, format="json"),
        client.patch(f"{SOURCES}{logs.pk}/", {"enabled": False}, format="json"),
        client.delete(f"{SOURCES}{logs.pk}/"),
        client.post(f"{SOURCES}{logs.pk}/test/"),
        client.post(CAPTURES, QUEUE_DEPTH, format="json"),
        client.patch(f"{CAPTURES}{capture.pk}/", {"enabled": False}, format="json"),
        client.delete(f"{CAPTURES}{capture.pk}/"),
        client.post(f"{CAPTURES}{capture.pk}/run/"),
    ):
        assert response.status_code == 403, response.request
        assert response.json()["code"] == "permission_denied"
    assert (source_rows(), capture_rows()) == (sources_before, captures_before)
    assert Capture.objects.get(pk=capture.pk).last_run_at is None  # the capture never ran


def test_without_credentials_nothing_is_shown_or_done(logs):
    capture = Capture.objects.get(name="latency-p99")
    for response in (
        api().get(SOURCES),
        api().get(f"{SOURCES}{logs.pk}/"),
        api().post(f"{SOURCES}{logs.pk}/test/"),
        api().get(CAPTURES),
        api().post(f"{CAPTURES}{capture.pk}/run/"),
    ):
        assert response.status_code == 401 and response.json()["code"] == "not_authenticated"


def test_unknown_ids_are_a_json_404(viewer, admin_user):
    for client in (api(viewer), api(admin_user)):
        for url in (f"{SOURCES}999999/", f"{CAPTURES}999999/"):
            missing = client.get(url)
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert api(admin_user).post(f"{SOURCES}999999/test/").status_code == 404
    assert api(admin_user).post(f"{CAPTURES}999999/run/").status_code == 404


def test_there_is_no_put(admin_user, logs):
    refused = api(admin_user).put(f"{SOURCES}{logs.pk}/", LOGS, format="json")
    assert refused.status_code == 405


# --- data sources ----------------------------------------------------------------------------------


def test_an_admin_adds_changes_and_deletes_a_data_source_and_history_names_them(admin_user):
    client = api(admin_user)
    created = client.post(SOURCES, {**LOGS, "timeout_seconds": 2.5, "verify_tls": False}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert {k: body[k] for k in ("name", "kind", "url", "auth", "username", "verify_tls", "timeout_seconds")} == {
        **LOGS,
        "auth": "NONE",
        "username": "",
        "verify_tls": False,
        "timeout_seconds": 2.5,
    }
    assert (body["has_secret"], body["last_success_at"], body["last_error"], body["last_error_at"]) == (
        False,
        None,
        "",
        None,
    )
    url = f"{SOURCES}{body['id']}/"
    changed = client.patch(url, {"enabled": False}, format="json")
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    assert client.delete(url).status_code == 204
    assert not DataSource.objects.exists()
    assert [(h.history_type, h.history_user) for h in DataSource.history.order_by("history_id")] == [
        ("+", admin_user),
        ("~", admin_user),
        ("-", admin_user),
    ]


def test_the_secret_is_write_only_and_kept_when_omitted_or_empty(admin_user, viewer):
    client = api(admin_user)
    created = client.post(SOURCES, {**LOGS, "auth": "BASIC", "username": "monitor", "secret": SECRET}, format="json")
    assert created.status_code == 201, created.json()
    assert "secret" not in created.json() and created.json()["has_secret"] is True
    url = f"{SOURCES}{created.json()['id']}/"
    omitted = client.patch(url, {"timeout_seconds": 3}, format="json")
    empty = client.patch(url, {"secret": "", "username": "monitor-2"}, format="json")
    assert (omitted.status_code, empty.status_code) == (200, 200)
    assert DataSource.objects.get().secret == SECRET and DataSource.objects.get().username == "monitor-2"
    responses = [
        created,
        omitted,
        empty,
        client.get(url, HTTP_ACCEPT="text/html"),  # the browsable API's forms
        client.get(SOURCES),
        api(viewer).get(SOURCES),
        api(viewer).get(url),
        client.options(SOURCES),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        assert SECRET not in response.content.decode()
    replaced = client.patch(url, {"secret": "another-secret"}, format="json")
    assert replaced.status_code == 200 and "another-secret" not in replaced.content.decode()
    assert DataSource.objects.get().secret == "another-secret"
    assert "secret" not in {field.name for field in DataSource.history.model._meta.fields}


def test_the_schema_shows_the_secret_as_write_only(db):
    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert "secret" not in schemas["DataSource"]["properties"]
    assert schemas["DataSourceRequest"]["properties"]["secret"]["writeOnly"] is True
    assert schemas["PatchedDataSourceRequest"]["properties"]["secret"]["writeOnly"] is True


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**LOGS, "url": "not a url"}, "url", "Enter an http:// or https:// URL"),
        ({**LOGS, "kind": "GRAPHITE"}, "kind", '"GRAPHITE" is not a valid choice.'),
        ({**LOGS, "auth": "BASIC", "secret": SECRET}, "username", "Basic authentication needs a username."),
        ({**LOGS, "auth": "BEARER"}, "secret", "This authentication needs a secret: enter it."),
        (
            {**LOGS, "kind": "PROMETHEUS", "auth": "API_KEY", "secret": SECRET},
            "auth",
            "Prometheus takes basic or bearer authentication, not an API key.",
        ),
        ({**LOGS, "name": "old-logs"}, "name", "Data source with this Name already exists."),
        ({**LOGS, "name": "Logs and more"}, "name", "letters, numbers, underscores or hyphens"),
        ({**LOGS, "password": SECRET}, "password", "Unknown field."),
        ({**LOGS, "url": f"https://elastic:{SECRET}@es.example.com:9200"}, "url", "not in the URL"),
    ],
    ids=["bad-url", "bad-kind", "basic-without-username", "bearer-without-secret", "api-key-on-prometheus",
         "duplicate-name", "not-a-slug", "unknown-field", "credentials-in-url"],
)  # fmt: skip
def test_data_source_errors_name_the_field_and_save_nothing(admin_user, data, field, message):
    DataSource.objects.create(name="old-logs", kind="ELASTICSEARCH", url="http://es.example.com")
    before, history = source_rows(), DataSource.history.count()
    refused = api(admin_user).post(SOURCES, data, format="json")
    assert refused.status_code == 400
    assert any(message in text for text in refused.json()[field]), refused.json()
    assert SECRET not in refused.content.decode()
    assert source_rows() == before and DataSource.history.count() == history


def test_a_patch_is_judged_on_the_source_as_it_would_be(admin_user, logs):
    client = api(admin_user)
    url = f"{SOURCES}{logs.pk}/"
    refused = client.patch(url, {"username": ""}, format="json")
    assert refused.status_code == 400 and refused.json() == {"username": ["Basic authentication needs a username."]}
    refused = client.patch(url, {"kind": "PROMETHEUS", "auth": "API_KEY"}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"auth": ["Prometheus takes basic or bearer authentication, not an API key."]}
    bearer = client.patch(url, {"auth": "BEARER"}, format="json")  # the stored secret is the token now
    assert bearer.status_code == 200, bearer.json()
    source = DataSource.objects.get()
    assert (source.auth, source.username, source.secret, source.kind) == ("BEARER", "monitor", SECRET, "ELASTICSEARCH")


@pytest.mark.parametrize("kind", ["PROMETHEUS", "ELASTICSEARCH"])
def test_testing_a_source_nobody_listens_on_answers_why_and_records_it(admin_user, viewer, kind, caplog):
    port = free_port()  # bound by the kernel's choice, then released: nothing listens on it
    source = DataSource.objects.create(
        name="down", kind=kind, url=f"http://127.0.0.1:{port}", auth="BASIC", username="monitor", secret=SECRET
    )
    with caplog.at_level(logging.DEBUG):
        answer = api(admin_user).post(f"{SOURCES}{source.pk}/test/")
    assert answer.status_code == 200
    assert answer.json()["ok"] is False, answer.json()
    assert answer.json()["detail"].startswith("ConnectionError"), answer.json()  # the reason, for people
    assert SECRET not in answer.content.decode() and SECRET not in caplog.text
    shown = api(viewer).get(f"{SOURCES}{source.pk}/").json()
    assert shown["last_error"] == answer.json()["detail"] and shown["last_error_at"] is not None


def test_writing_a_source_logs_no_secret(admin_user, caplog):
    with caplog.at_level(logging.DEBUG):
        created = api(admin_user).post(SOURCES, {**LOGS, "auth": "BEARER", "secret": SECRET}, format="json")
        refused = api(admin_user).patch(
            f"{SOURCES}{created.json()['id']}/", {"url": "nope", "secret": "second-secret"}, format="json"
        )
    assert (created.status_code, refused.status_code) == (201, 400)
    assert SECRET not in caplog.text and "second-secret" not in caplog.text
    assert DataSource.objects.get().secret == SECRET


# --- captures ---------------------------------------------------------------------------------------


def test_an_admin_adds_and_changes_a_capture_by_loader_code(admin_user, viewer):
    client = api(admin_user)
    created = client.post(CAPTURES, {**QUEUE_DEPTH, "system": True, "last_stored": 7}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["loader"], body["key_label"], body["system"], body["last_stored"]) == (
        "STATS-INFRA",
        "queue",
        False,  # read-only fields sent are ignored: only a migration seeds system captures
        None,
    )
    url = f"{CAPTURES}{body['id']}/"
    changed = client.patch(url, {"loader": "STATS-PERF", "key_label": "queue, vhost"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert api(viewer).get(url).json()["loader"] == "STATS-PERF"
    capture = Capture.objects.get(name="queue-depth")
    assert (capture.loader.loader_code, capture.key_labels) == ("STATS-PERF", ["queue", "vhost"])
    assert [(h.history_type, h.history_user) for h in capture.history.order_by("history_id")] == [
        ("+", admin_user),
        ("~", admin_user),
    ]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({**QUEUE_DEPTH, "key_label": "queue-name"}, "key_label", "Not a Prometheus label name: queue-name."),
        ({**QUEUE_DEPTH, "loader": "NO-SUCH-LOADER"}, "loader", "No loader with the code 'NO-SUCH-LOADER'."),
        ({**QUEUE_DEPTH, "source": "logs"}, "source", "Data source 'logs' is Elasticsearch, not Prometheus."),
        ({**QUEUE_DEPTH, "metric_type": "QUEUE_DEPTH"}, "metric_type", '"QUEUE_DEPTH" is not a valid choice.'),
        ({**QUEUE_DEPTH, "name": "latency-p99"}, "name", "Capture with this Name already exists."),
        ({**QUEUE_DEPTH, "interval": 60}, "interval", "Unknown field."),
    ],
    ids=["bad-key-label", "unknown-loader", "source-kind-mismatch", "bad-metric-type", "duplicate-name",
         "unknown-field"],
)  # fmt: skip
def test_capture_errors_name_the_field_and_save_nothing(admin_user, logs, data, field, message):
    before = capture_rows()
    history = Capture.history.count()
    refused = api(admin_user).post(CAPTURES, data, format="json")
    assert refused.status_code == 400
    assert any(message in text for text in refused.json()[field]), refused.json()
    assert capture_rows() == before and Capture.history.count() == history


def test_a_capture_patch_names_the_bad_field_and_changes_nothing(admin_user):
    capture = Capture.objects.get(name="latency-p99")
    refused = api(admin_user).patch(f"{CAPTURES}{capture.pk}/", {"key_label": "service name"}, format="json")
    assert refused.status_code == 400 and refused.json() == {
        "key_label": ["Not a Prometheus label name: service name."]
    }
    assert Capture.objects.get(pk=capture.pk).key_label == capture.key_label


def test_running_a_capture_whose_source_is_not_configured_is_skipped_with_the_reason(admin_user, settings):
    settings.PROMETHEUS_URL = ""
    capture = Capture.objects.get(name="latency-p99")
    answer = api(admin_user).post(f"{CAPTURES}{capture.pk}/run/")
    assert answer.status_code == 200
    result = answer.json()
    assert (result["status"], result["found"], result["stored"], result["notes"]) == ("skipped", 0, 0, [])
    assert "no data source 'prometheus'" in result["error"] and "PROMETHEUS_URL" in result["error"]
    assert result["summary"] == f"skipped: {result['error']}" and result["bucket"]
    shown = api(admin_user).get(f"{CAPTURES}{capture.pk}/").json()
    assert shown["last_error"] == result["error"] and shown["last_run_at"] is not None
    assert shown["last_bucket_at"] is None


def test_an_admin_may_delete_a_seeded_capture_and_history_says_who(admin_user):
    """Allowed, as in the admin: a refusal only the API made would not hold. Disabling is the
    reversible way to stop a seeded capture; its loader and signals stay either way."""
    capture = Capture.objects.get(name="latency-p99", system=True)
    assert api(admin_user).delete(f"{CAPTURES}{capture.pk}/").status_code == 204
    assert not Capture.objects.filter(name="latency-p99").exists()
    assert Loader.objects.filter(loader_code="STATS-PERF").exists()
    deleted = Capture.history.get(id=capture.pk, history_type="-")
    assert (deleted.history_user, deleted.system) == (admin_user, True)
