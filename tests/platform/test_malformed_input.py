"""Malformed input answers 400, never 500: NUL characters in any JSON string or form field, and JSON
nested deeper than the platform parses, on every JSON endpoint — the API (DRF's parser), the token
endpoint, the ingest endpoints (their own parser) and both webhooks (theirs).

PostgreSQL refuses NUL in text, so a NUL that reached a lookup or a write ended as a server error
there; SQLite only answered "does not exist". The matrix runs on the database configured, and once
more explicitly on PostgreSQL (``require_postgres``) so CI checks the failure that mattered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from etl_monitor.request_input import JSON_MAX_DEPTH, SURROGATE_MESSAGE, json_depth_exceeds
from incidents.models import DetectionRule, Silence
from integrations.models import NotificationRule
from loaders.models import Loader, Tag, Team
from signals_app.models import Run, Signal
from signals_app.tokens import ingest_token_create

DEEP = "[" * 100_000
NUL_MESSAGE = "NUL characters are not allowed."
SILENCE = {"starts_at": "2026-05-04T10:00:00Z", "ends_at": "2026-05-04T12:00:00Z", "comment": "maintenance"}

# (endpoint, model written, a valid body, the field holding the NUL, the NUL value, the field named)
LOOKUP_FIELDS = [
    ("/api/v1/rules/", DetectionRule, {"name": "r", "kind": "run_failed", "scope": "TEAM"}, "scope_owner", "data\x00"),
    ("/api/v1/rules/", DetectionRule, {"name": "r", "kind": "run_failed", "scope": "TAG"}, "scope_tag", "nightly\x00"),
    (
        "/api/v1/rules/",
        DetectionRule,
        {"name": "r", "kind": "run_failed", "scope": "LOADERS"},
        "scope_loaders",
        ["SALES-DAILY", "SALES\x00"],
    ),
    ("/api/v1/silences/", Silence, SILENCE, "tag", "nightly\x00"),
    ("/api/v1/silences/", Silence, SILENCE, "owner", "data-platform\x00"),
    ("/api/v1/silences/", Silence, SILENCE, "loader", "SALES-DAILY\x00"),
    ("/api/v1/notification-rules/", NotificationRule, {"severity": "HIGH", "channels": ["email"]}, "team", "dp\x00"),
    ("/api/v1/notification-rules/", NotificationRule, {"severity": "HIGH", "channels": ["email"]}, "tag", "x\x00"),
]
FIELD_IDS = [f"{endpoint.split('/')[3]}-{field}" for endpoint, _m, _b, field, _v in LOOKUP_FIELDS]


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def named(value: Any, field: str) -> str:
    """The field an answer names: a list's item is named by its index (``scope_loaders.1``)."""
    return f"{field}.1" if isinstance(value, list) else field


@pytest.fixture
def registry(active_loader: Loader) -> Loader:
    Tag.objects.get_or_create(name="nightly")
    active_loader.tags.add(Tag.objects.get(name="nightly"))
    return active_loader


def assert_nul_refused(client: APIClient, endpoint: str, model: Any, body: dict[str, Any], field: str, value: Any):
    before = model.objects.count()
    for encoding in ("json", "multipart"):
        data = {**body, field: value}
        if encoding == "multipart":
            # A form carries a list as repeated fields and no nested objects.
            data = {key: item for key, item in data.items() if not isinstance(item, dict)}
        response = client.post(endpoint, data, format=encoding)
        assert response.status_code == 400, (encoding, response.content)
        assert response.json() == {named(value, field) if encoding == "json" else field: [NUL_MESSAGE]}, encoding
    assert model.objects.count() == before


@pytest.mark.parametrize(("endpoint", "model", "body", "field", "value"), LOOKUP_FIELDS, ids=FIELD_IDS)
def test_it_refuses_a_nul_in_a_lookup_field_naming_it(admin_user, registry, endpoint, model, body, field, value):
    assert_nul_refused(api(admin_user), endpoint, model, body, field, value)


def test_on_postgresql_no_lookup_field_with_a_nul_is_a_server_error(require_postgres, admin_user, registry):
    client = api(admin_user)
    for endpoint, model, body, field, value in LOOKUP_FIELDS:
        assert_nul_refused(client, endpoint, model, body, field, value)


def test_it_refuses_a_nul_in_a_patch_and_changes_nothing(admin_user, registry):
    client = api(admin_user)
    created = client.post("/api/v1/silences/", {**SILENCE, "loader": "SALES-DAILY"}, format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/v1/silences/{created.json()['id']}/"
    response = client.patch(url, {"loader": "SALES\x00", "comment": "other"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"loader": [NUL_MESSAGE]}
    form = client.patch(url, "comment=other&owner=dp%00", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 400
    assert form.json() == {"owner": [NUL_MESSAGE]}
    assert Silence.objects.get().comment == "maintenance"


def test_it_names_the_path_of_a_nul_deep_in_a_json_body(admin_user, registry):
    rules = DetectionRule.objects.count()
    body = {"name": "r", "kind": "metric_threshold", "params": {"signal_key": "lag\x00"}, "threshold": 1}
    response = api(admin_user).post("/api/v1/rules/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"params.signal_key": [NUL_MESSAGE]}
    assert DetectionRule.objects.count() == rules


def test_it_refuses_a_nul_in_a_json_key(admin_user, registry):
    response = api(admin_user).post("/api/v1/rules/", {"name": "r", "kind": "run_failed", "x\x00": 1}, format="json")
    assert response.status_code == 400
    assert response.json() == {"x\\u0000": [NUL_MESSAGE]}


def test_a_nul_in_a_form_encoded_api_body_is_refused(admin_user, registry):
    client = api(admin_user)
    rules = NotificationRule.objects.count()
    body = "severity=HIGH&channels=email&team=dp%00"
    response = client.post("/api/v1/notification-rules/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.json() == {"team": [NUL_MESSAGE]}
    assert NotificationRule.objects.count() == rules


def test_a_malformed_multipart_body_answers_400_in_the_api_shape(admin_user):
    response = api(admin_user).post("/api/v1/rules/", b"garbage", content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["detail"].startswith("Multipart form parse error")


# --- the admin (Django forms, form-encoded and multipart) ----------------------------------------


ADMIN_FORMS = [
    ("/admin/incidents/detectionrule/add/", DetectionRule, {"name": "r\x00", "kind": "run_failed", "scope": "ALL"}),
    ("/admin/incidents/silence/add/", Silence, {**SILENCE, "loader": "1\x00", "timezone": "UTC"}),
    ("/admin/loaders/team/add/", Team, {"slug": "ops\x00", "name": "Ops"}),
    ("/admin/loaders/loader/add/", Loader, {"loader_code": "NEW\x00", "name": "New", "owner": "1"}),
]


@pytest.mark.parametrize(("url", "model", "form"), ADMIN_FORMS, ids=[u.split("/")[3] for u, _m, _f in ADMIN_FORMS])
@pytest.mark.parametrize("encoding", ["multipart", "urlencoded"])
def test_an_admin_form_with_a_nul_is_refused_and_nothing_is_written(
    client: Client, admin_user, registry, url, model, form, encoding
):
    client.force_login(admin_user)
    before = model.objects.count()
    if encoding == "multipart":
        response = client.post(url, form)
    else:
        from urllib.parse import urlencode

        response = client.post(url, urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code in (200, 400), response.status_code  # the form again with errors, or refused
    assert model.objects.count() == before


def test_on_postgresql_admin_forms_with_a_nul_are_refused(require_postgres, client: Client, admin_user, registry):
    client.force_login(admin_user)
    for url, model, form in ADMIN_FORMS:
        before = model.objects.count()
        assert client.post(url, form).status_code in (200, 400), url
        assert model.objects.count() == before


# --- deep JSON, on every JSON endpoint -----------------------------------------------------------


def deep_refused(response: Any) -> None:
    assert response.status_code == 400, response.content[:300]
    assert f"nested deeper than {JSON_MAX_DEPTH} levels" in response.content.decode()


def test_deep_json_to_the_token_endpoint_answers_400_without_credentials(db, settings):
    # The file cache is shared with other test processes: this test is not about the login throttle.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth-token": "1000/min"}}
    deep_refused(Client().post("/api/v1/auth/token/", DEEP, content_type="application/json"))


def test_deep_json_to_the_api_answers_400(admin_user):
    client = api(admin_user)
    rules = DetectionRule.objects.count()
    for endpoint in ("/api/v1/rules/", "/api/v1/silences/", "/api/v1/notification-rules/", "/api/v1/loaders/"):
        deep_refused(client.post(endpoint, DEEP, content_type="application/json"))
    deep_refused(client.post("/api/v1/rules/", '{"name": "r", "params": ' + DEEP, content_type="application/json"))
    assert DetectionRule.objects.count() == rules


def test_deep_json_to_the_ingest_endpoints_answers_400(active_loader, editor):
    _token, key = ingest_token_create(user=editor, loader=active_loader, name="job")
    job = APIClient()
    job.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    deep_refused(job.post("/api/v1/signals/", DEEP, content_type="application/json"))
    deep_refused(job.post("/api/v1/runs/", DEEP, content_type="application/json"))
    assert not Signal.objects.exists() and not Run.objects.exists()


def test_an_unpaired_surrogate_escape_is_refused_naming_the_field(active_loader, editor, admin_user):
    """ "\\ud800" decodes in Python but no UTF-8 encoder can write it (it was a 500 on every JSON API,
    ingestion included); a paired escape is an ordinary character and is kept."""
    _token, key = ingest_token_create(user=editor, loader=active_loader, name="job")
    job = APIClient()
    job.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    code = active_loader.loader_code
    run = '{"loader_code": "' + code + '", "correlation_id": "abc\\ud800"}'
    response = job.post("/api/v1/runs/", run, content_type="application/json")
    assert response.status_code == 400
    assert f"correlation_id: {SURROGATE_MESSAGE}" in response.json()["detail"]
    signal = '[{"loader_code": "' + code + '", "signal_key": "k", "value": 1, "attributes": {"\\udc00": 1}}]'
    response = job.post("/api/v1/signals/", signal, content_type="application/json")
    assert response.status_code == 400
    assert not Signal.objects.exists() and not Run.objects.exists()
    rule = '{"name": "smile \\ud83d\\ude00", "kind": "run_failed"}'
    created = api(admin_user).post("/api/v1/rules/", rule, content_type="application/json")
    assert created.status_code == 201, created.json()
    assert DetectionRule.objects.get(pk=created.json()["id"]).name == "smile \U0001f600"


def test_json_at_the_depth_limit_is_parsed(admin_user):
    limit = "[" * (JSON_MAX_DEPTH - 1) + "]" * (JSON_MAX_DEPTH - 1)  # in a body object: exactly the limit
    body = '{"name": "r", "kind": "run_failed", "params": ' + limit + "}"
    response = api(admin_user).post("/api/v1/rules/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" not in response.content.decode()  # refused by the rule, not by the parser


def test_brackets_inside_strings_do_not_count_as_depth(admin_user):
    body = {"name": "r", "kind": "run_failed", "message": "[" * 400 + '"\\'}
    response = api(admin_user).post("/api/v1/rules/", body, format="json")
    assert response.status_code == 201, response.content[:300]


def depth(value: Any) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((depth(child) for child in children), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[{"\\\\', max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(value=json_values, limit=st.integers(min_value=0, max_value=4))
def test_the_depth_scan_reads_strings_and_escapes_as_json_does(value: Any, limit: int):
    raw = json.dumps(value).encode()
    assert json_depth_exceeds(raw, limit) == (depth(value) > limit), raw


@pytest.fixture
def jira_secret(settings: Any) -> str:
    settings.JIRA_WEBHOOK_SECRET = "jira-secret-for-tests"
    return settings.JIRA_WEBHOOK_SECRET


def jira_post(body: bytes, secret: str) -> Any:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature": signature}
    return Client().post("/integrations/jira/webhook/", data=body, content_type="application/json", headers=headers)


def test_deep_json_to_the_jira_webhook_answers_400(db, jira_secret):
    deep_refused(jira_post(DEEP.encode(), jira_secret))
    deep_refused(jira_post(b'{"webhookEvent": "comment_created", "comment": ' + DEEP.encode(), jira_secret))


def test_a_nul_in_a_jira_webhook_answers_400_naming_the_path(db, jira_secret):
    body = {
        "webhookEvent": "comment_created",
        "timestamp": int(time.time() * 1000),
        "issue": {"key": "OPS-1"},
        "comment": {"body": "done\x00"},
    }
    response = jira_post(json.dumps(body).encode(), jira_secret)
    assert response.status_code == 400
    assert "comment.body" in response.json()["detail"]


def test_deep_json_to_the_alertmanager_webhook_answers_400(db, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = "am-token"
    for body in (DEEP, '{"version": "4", "alerts": ' + DEEP):
        response = Client().post(
            "/integrations/alertmanager/webhook/",
            body,
            content_type="application/json",
            headers={"Authorization": "Bearer am-token"},
        )
        deep_refused(response)
