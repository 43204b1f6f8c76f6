"""A stored secret can be cleared on every surface — the admin's "Clear the stored secret" box,
``"secret": null`` over the API, ``secret: null`` in a configuration file — with the permissions
of any change; the history says it was cleared, never what it was; a channel whose kind needs
the secret then says it cannot send; and no surface ever shows the old value."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from etl_monitor.errors import InvalidInput
from integrations.models import Channel, ChannelKind, DataSource
from integrations.notifications.channels import channel_configured, channel_save
from tests.config_files import config_apply, config_refused
from tests.integrations.conftest import assert_never_shown

HOOK = "https://hooks.slack.com/services/T0/B0/never-show-me-0123456789"
TOKEN = "xoxb-never-show-me-0123456789"
PASSWORD = "s3cret-never-shown-0123456789"


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def apply(tmp_path: Any, text: str, user: str = "ada-admin") -> str:
    return config_apply(tmp_path, text, "--as", user)


def apply_fails(tmp_path: Any, text: str, user: str = "ada-admin") -> str:
    return config_refused(tmp_path, text, "--as", user)


@pytest.fixture
def hook(admin_user: Any) -> Channel:
    """A Slack incoming webhook: its kind needs the secret (the webhook URL)."""
    return channel_save(user=admin_user, data={"name": "slack-hook", "kind": ChannelKind.SLACK_WEBHOOK, "secret": HOOK})


@pytest.fixture
def source(db: Any) -> DataSource:
    return DataSource.objects.create(
        name="logs",
        kind="ELASTICSEARCH",
        url="https://es.example.com:9200",
        auth="BASIC",
        username="m",
        secret=PASSWORD,
    )


def channel_form(channel: Channel, **overrides: str) -> dict[str, str]:
    return {"name": channel.name, "kind": channel.kind, "enabled": "on", "url": channel.url, "secret": "", **overrides}


# --- channels -------------------------------------------------------------------------------------


def test_the_admin_clears_a_channel_secret_which_then_cannot_send(client: Client, admin_user, hook: Channel):
    client.force_login(admin_user)
    page = client.get(f"/admin/integrations/channel/{hook.pk}/change/").content.decode()
    assert "Clear the stored secret" in page and HOOK not in page

    response = client.post(f"/admin/integrations/channel/{hook.pk}/change/", channel_form(hook, clear_secret="on"))

    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.secret == "" and hook.enabled
    assert channel_configured(hook) == "no incoming-webhook URL"
    latest = hook.history.latest()
    assert (latest.history_change_reason, latest.history_user) == ("secret cleared", admin_user)
    page = client.get(f"/admin/integrations/channel/{hook.pk}/change/").content.decode()
    assert "No: no incoming-webhook URL" in page and "not set" in page
    assert_never_shown(hook, client, HOOK)


def test_the_admin_refuses_a_new_secret_and_clearing_at_once(client: Client, admin_user, hook: Channel):
    client.force_login(admin_user)
    new = "https://hooks.slack.com/services/T0/B0/another-0123456789"
    response = client.post(
        f"/admin/integrations/channel/{hook.pk}/change/", channel_form(hook, secret=new, clear_secret="on")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["clear_secret"] == [
        "Either type a new secret or clear the stored one, not both."
    ]
    assert new not in response.content.decode() and HOOK not in response.content.decode()
    hook.refresh_from_db()
    assert hook.secret == HOOK


def test_who_may_not_change_a_channel_gets_no_clear_box_and_cannot_clear(client: Client, operator, hook: Channel):
    client.force_login(operator)
    page = client.get(f"/admin/integrations/channel/{hook.pk}/change/")
    assert page.status_code == 200 and "Clear the stored secret" not in page.content.decode()
    response = client.post(f"/admin/integrations/channel/{hook.pk}/change/", channel_form(hook, clear_secret="on"))
    assert response.status_code == 403
    assert api(operator).patch("/api/v1/channels/slack-hook/", {"secret": None}, format="json").status_code == 403
    hook.refresh_from_db()
    assert hook.secret == HOOK


def test_the_api_clears_with_null_and_keeps_with_empty_or_absent(admin_user, viewer):
    client = api(admin_user)
    created = client.post("/api/v1/channels/", {"name": "ops-slack", "kind": "SLACK", "secret": TOKEN}, format="json")
    assert created.status_code == 201 and created.json()["has_secret"] is True

    for kept in ({"secret": ""}, {"enabled": True}):
        response = client.patch("/api/v1/channels/ops-slack/", kept, format="json")
        assert response.status_code == 200 and response.json()["has_secret"] is True
    cleared = client.patch("/api/v1/channels/ops-slack/", {"secret": None}, format="json")

    assert cleared.status_code == 200
    body = cleared.json()
    assert body["has_secret"] is False and "secret" not in body
    assert Channel.objects.get(name="ops-slack").secret == ""
    assert Channel.objects.get(name="ops-slack").history.latest().history_change_reason == "secret cleared"
    # The Slack bot falls back to SLACK_BOT_TOKEN: with none, it says so.
    assert body["cannot_send"] == "no Slack bot token (SLACK_BOT_TOKEN)"
    for response in (created, cleared, api(viewer).get("/api/v1/channels/ops-slack/")):
        assert TOKEN not in response.content.decode()


def test_the_api_schema_says_how_to_keep_and_clear_a_secret(admin_user):
    schema = api(admin_user).get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "send null to clear it" in schema


def test_a_webhook_channel_without_its_optional_secret_still_sends_unsigned(admin_user):
    channel = channel_save(
        user=admin_user,
        data={"name": "ops-hook", "kind": ChannelKind.WEBHOOK, "url": "https://hooks.example.com/etl", "secret": "k"},
    )
    channel = channel_save(user=admin_user, data={"secret": None}, channel=channel)
    assert channel.secret == "" and channel_configured(channel) is None


def test_a_cleared_channel_can_still_be_changed_but_a_new_one_needs_its_secret(admin_user, hook: Channel):
    hook = channel_save(user=admin_user, data={"secret": None}, channel=hook)
    hook = channel_save(user=admin_user, data={"enabled": False}, channel=hook)
    assert (hook.enabled, hook.secret, channel_configured(hook)) == (False, "", "disabled")
    with pytest.raises(InvalidInput) as refused:
        channel_save(user=admin_user, data={"name": "another-hook", "kind": ChannelKind.SLACK_WEBHOOK, "secret": None})
    assert refused.value.errors == {"secret": ["Paste the incoming-webhook URL here."]}


CLEAR_CHANNEL = """
channels:
  - name: slack-hook
    kind: SLACK_WEBHOOK
    secret: null
"""


def test_a_configuration_file_clears_a_channel_secret_but_never_sets_one(tmp_path, admin_user, hook: Channel):
    refused = apply_fails(tmp_path, CLEAR_CHANNEL.replace("null", '"https://hooks.slack.com/x"'))
    assert "channels[0].secret: Secrets are not accepted from configuration files" in refused
    hook.refresh_from_db()
    assert hook.secret == HOOK

    out = apply(tmp_path, CLEAR_CHANNEL)

    assert "channels slack-hook: changed (secret)" in out and HOOK not in out
    hook.refresh_from_db()
    assert hook.secret == "" and channel_configured(hook) == "no incoming-webhook URL"
    assert hook.history.latest().history_change_reason in ("secret cleared", "apply_config config.yaml")
    assert "channels slack-hook: unchanged" in apply(tmp_path, CLEAR_CHANNEL)


def test_only_who_may_change_channels_clears_one_from_a_file(tmp_path, editor, hook: Channel):
    apply_fails(tmp_path, CLEAR_CHANNEL, user=editor.username)
    hook.refresh_from_db()
    assert hook.secret == HOOK


# --- data sources --------------------------------------------------------------------------------


def test_the_api_clears_a_source_secret_only_with_no_authentication(admin_user, source: DataSource):
    client = api(admin_user)
    refused = client.patch(f"/api/v1/data-sources/{source.pk}/", {"secret": None}, format="json")
    assert refused.status_code == 400
    assert "set auth to NONE in the same change" in refused.content.decode()
    source.refresh_from_db()
    assert source.secret == PASSWORD

    cleared = client.patch(f"/api/v1/data-sources/{source.pk}/", {"secret": None, "auth": "NONE"}, format="json")

    assert cleared.status_code == 200 and cleared.json()["has_secret"] is False
    assert PASSWORD not in cleared.content.decode()
    source.refresh_from_db()
    assert (source.secret, source.auth) == ("", "NONE")
    assert source.history.latest().history_change_reason == "secret cleared"


def test_the_admin_clears_a_source_secret(client: Client, admin_user, source: DataSource):
    client.force_login(admin_user)
    form = {
        "name": "logs",
        "kind": "ELASTICSEARCH",
        "url": "https://es.example.com:9200",
        "auth": "BASIC",
        "username": "m",
        "secret": "",
        "clear_secret": "on",
        "timeout_seconds": "5",
        "enabled": "on",
        "verify_tls": "on",
    }
    refused = client.post(f"/admin/integrations/datasource/{source.pk}/change/", form)
    assert refused.status_code == 200 and "clear_secret" in refused.context["adminform"].form.errors
    assert PASSWORD not in refused.content.decode()

    response = client.post(f"/admin/integrations/datasource/{source.pk}/change/", {**form, "auth": "NONE"})

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.secret, source.auth) == ("", "NONE")
    assert source.history.latest().history_change_reason == "secret cleared"
    for url in (
        f"/admin/integrations/datasource/{source.pk}/change/",
        f"/admin/integrations/datasource/{source.pk}/history/",
    ):
        assert PASSWORD not in client.get(url).content.decode()


def test_a_configuration_file_clears_a_source_secret(tmp_path, admin_user, source: DataSource):
    text = """
data_sources:
  - name: logs
    kind: ELASTICSEARCH
    url: https://es.example.com:9200
    auth: NONE
    secret: null
"""
    out = apply(tmp_path, text)
    assert "data_sources logs: changed" in out and PASSWORD not in out
    source.refresh_from_db()
    assert (source.secret, source.auth) == ("", "NONE")
