"""Secrets are write-only on every read surface, for every role (Admins and superusers included):
each admin page and API read that could show a channel, data source, Jira or connection secret is
fetched by each role with a known marker stored in every secret, and the marker appears nowhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import Capture, Channel, DataSource, Delivery, DeliveryStatus, JiraSettings
from integrations.notifications import channels
from integrations.sources.services import data_source_save
from loaders.models import Loader, LoaderVersion

MARKER = "MRK-7f3a9c1e-never-shown"  # part of every secret below; must appear in no response
SECRETS = {
    "slack bot token": f"xoxb-{MARKER}-slack",
    "slack webhook URL": f"https://hooks.slack.com/services/T000/B000/{MARKER}",
    "webhook signing secret": f"sign-{MARKER}",
    "basic password": f"pw-{MARKER}",
    "bearer token": f"bearer-{MARKER}",
    "api key": f"key-{MARKER}",
    "connection password": f"conn-{MARKER}",
    "jira api token": f"jira-{MARKER}",
    "jira webhook secret": f"jira-hook-{MARKER}",
}
ROLES = ["viewer", "editor", "approver", "operator", "admin_user", "superuser"]


@pytest.fixture
def superuser(make_user) -> User:
    return make_user(username="sam-superuser", is_superuser=True)


@pytest.fixture
def secrets_everywhere(settings, admin_user, new_loader) -> dict[str, Any]:
    """Every kind of secret the platform stores, each changed once so that history has rows."""
    settings.JIRA_API_TOKEN = SECRETS["jira api token"]
    settings.JIRA_WEBHOOK_SECRET = SECRETS["jira webhook secret"]
    slack = channels.channel_save(
        user=admin_user, data={"secret": SECRETS["slack bot token"]}, channel=Channel.objects.get(name="slack")
    )
    slack_hook = channels.channel_save(
        user=admin_user, data={"name": "slack-hook", "kind": "SLACK_WEBHOOK", "secret": "https://hooks.slack.com/x"}
    )
    slack_hook = channels.channel_save(
        user=admin_user, data={"secret": SECRETS["slack webhook URL"], "enabled": False}, channel=slack_hook
    )
    hook = channels.channel_save(
        user=admin_user,
        data={"name": "hook", "kind": "WEBHOOK", "url": "https://receiver.example.com/in", "secret": "first"},
    )
    hook = channels.channel_save(user=admin_user, data={"secret": SECRETS["webhook signing secret"]}, channel=hook)
    sources = []
    for name, auth, secret in (
        ("es-basic", "BASIC", SECRETS["basic password"]),
        ("es-bearer", "BEARER", SECRETS["bearer token"]),
        ("es-key", "API_KEY", SECRETS["api key"]),
    ):
        source = data_source_save(
            user=admin_user,
            data={
                "name": name,
                "kind": "ELASTICSEARCH",
                "url": "https://es.example.com:9200",
                "auth": auth,
                "username": "monitor",
            },
            secret="first-secret",
        )
        sources.append(data_source_save(user=admin_user, data={"timeout_seconds": 3.0}, source=source, secret=secret))
    capture = Capture.objects.get(name="latency-p99")
    loader = new_loader("SECRET-LOADER", connection_password=SECRETS["connection password"])
    delivery = Delivery.objects.create(
        channel=hook,
        purpose="TEST",
        target=hook.url,
        key="secret-marker-delivery",
        payload={"message": "ETL Monitor test notification: this channel works."},
        payload_digest="x",
        status=DeliveryStatus.GAVE_UP,
        attempts=8,
        last_error="webhook: HTTP 401",
        next_attempt_at=timezone.now() - dt.timedelta(minutes=5),
    )
    return {
        "channels": [slack, slack_hook, hook],
        "sources": sources,
        "capture": capture,
        "version": loader.open_version,
        "delivery": delivery,
    }


def _object_pages(admin_path: str, obj: Any) -> list[str]:
    base = f"/admin/{admin_path}/{obj.pk}"
    pages = [f"{base}/change/", f"{base}/history/"]
    if hasattr(obj, "history"):
        pages += [f"{base}/history/{record.history_id}/" for record in obj.history.all()]
    return pages


def admin_pages(setup: dict[str, Any]) -> list[str]:
    pages = [
        "/admin/",
        "/admin/integrations/channel/",
        "/admin/integrations/datasource/",
        "/admin/integrations/capture/",
        "/admin/integrations/delivery/",
        "/admin/integrations/jirasettings/",
        "/admin/loaders/loaderversion/",
        f"/admin/loaders/loader/{setup['version'].loader_id}/change/",
    ]
    for channel in setup["channels"]:
        pages += _object_pages("integrations/channel", channel)
    for source in setup["sources"]:
        pages += _object_pages("integrations/datasource", source)
    pages += _object_pages("integrations/capture", setup["capture"])
    pages += [f"/admin/integrations/delivery/{setup['delivery'].pk}/change/"]
    pages += _object_pages("integrations/jirasettings", JiraSettings.current())
    pages += _object_pages("loaders/loaderversion", setup["version"])
    return pages


def api_pages(setup: dict[str, Any]) -> list[str]:
    pages = ["/api/v1/channels/", "/api/v1/data-sources/", "/api/v1/captures/", "/api/v1/deliveries/"]
    pages += [f"/api/v1/channels/{channel.name}/" for channel in setup["channels"]]
    pages += [f"/api/v1/data-sources/{source.pk}/" for source in setup["sources"]]
    pages += [f"/api/v1/captures/{setup['capture'].pk}/", f"/api/v1/deliveries/{setup['delivery'].pk}/"]
    code = setup["version"].loader.loader_code
    pages += [f"/api/v1/loaders/{code}/", f"/api/v1/loaders/{code}/versions/"]
    return pages


@pytest.mark.parametrize("role", ROLES)
def test_no_role_sees_a_stored_secret_on_any_admin_page(request, role, secrets_everywhere):
    user = request.getfixturevalue(role)
    client = Client()
    client.force_login(user)
    seen, leaks = 0, []
    for url in admin_pages(secrets_everywhere):
        response = client.get(url, follow=True)
        assert response.status_code in (200, 403), (url, response.status_code)
        seen += response.status_code == 200
        if MARKER in response.content.decode():
            leaks.append(url)
    assert leaks == [], f"{role} sees a secret on {leaks}"
    assert seen > 10  # the pages were really rendered, not refused


@pytest.mark.parametrize("role", ROLES)
def test_the_change_pages_say_only_whether_a_secret_is_set(request, role, secrets_everywhere):
    client = Client()
    client.force_login(request.getfixturevalue(role))
    for obj, path in [
        *((channel, "channel") for channel in secrets_everywhere["channels"]),
        *((source, "datasource") for source in secrets_everywhere["sources"]),
    ]:
        page = client.get(f"/admin/integrations/{path}/{obj.pk}/change/").content.decode()
        assert "set (hidden)" in page, (role, path, obj)


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reads_a_stored_secret_through_the_api(request, role, secrets_everywhere):
    client = APIClient()
    client.force_authenticate(request.getfixturevalue(role))
    for url in api_pages(secrets_everywhere):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert MARKER not in response.content.decode(), f"{role} reads a secret from {url}"


def test_a_refused_admin_save_does_not_echo_the_typed_secret(client, admin_user, secrets_everywhere):
    source = secrets_everywhere["sources"][0]
    typed = f"typed-{MARKER}"
    client.force_login(admin_user)
    response = client.post(
        f"/admin/integrations/datasource/{source.pk}/change/",
        {
            "name": source.name,
            "kind": "ELASTICSEARCH",
            "url": "not a url",
            "auth": "BASIC",
            "username": "monitor",
            "secret": typed,
            "verify_tls": "on",
            "timeout_seconds": "5",
            "enabled": "on",
        },
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors["url"]
    assert MARKER not in response.content.decode()
    assert DataSource.objects.get(pk=source.pk).secret == SECRETS["basic password"]  # nothing half-written


def test_the_secret_of_every_model_is_kept_out_of_its_history_tables(db):
    """History rows are what the history pages read: a secret never gets there in clear."""
    for model in (Channel, DataSource):
        assert "secret" not in {field.name for field in model.history.model._meta.fields}
    stored = LoaderVersion.history.model._meta.get_field("connection_password")
    assert type(stored).__name__ == "EncryptedTextField"
    assert Loader  # the loader pages are fetched above
