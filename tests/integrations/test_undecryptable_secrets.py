"""A secret no configured key decrypts (written under another FIELD_ENCRYPTION_KEY) breaks nothing
but itself: lists and pages answer, saving keeps the stored token, sending says why it cannot.

Rows are written under ``KEY_A``; the tests then read them with only ``KEY_B`` configured.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from rest_framework.test import APIClient

from etl_monitor.crypto import UNDECRYPTABLE, CannotDecrypt, secret_undecryptable
from incidents.models import EventKind
from integrations.models import Channel, ChannelKind, DataSource, Delivery, DeliveryStatus, NotificationRule
from integrations.notifications.channels import channel_save
from integrations.notifications.outbox import delivery_send
from loaders.models import Loader, LoaderVersion, Team
from tests.integrations.conftest import WebhookReceiver

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def key_a(settings: Any) -> Any:
    settings.FIELD_ENCRYPTION_KEY = [KEY_A]
    return settings


def key_b(settings: Any) -> None:
    """From now on only KEY_B is configured: what KEY_A encrypted no longer decrypts."""
    settings.FIELD_ENCRYPTION_KEY = [KEY_B]


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def hook(key_a: Any, webhook: WebhookReceiver, team: Team) -> Channel:
    channel = Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=webhook.SECRET)
    NotificationRule.objects.create(severity="HIGH", team=team, channels=["ops-hook"], recipients=["a@example.com"])
    return channel


@pytest.fixture
def prometheus(key_a: Any) -> DataSource:
    return DataSource.objects.create(
        name="prom-main", kind="PROMETHEUS", url="http://127.0.0.1:9", auth="BEARER", secret="prom-token"
    )


def test_lists_of_channels_and_data_sources_answer_200_with_a_row_no_key_decrypts(
    hook: Channel, prometheus: DataSource, settings: Any, admin_user: Any, viewer: Any
):
    key_b(settings)

    for user in (admin_user, viewer):
        channels = api(user).get("/api/v1/channels/")
        assert channels.status_code == 200, channels.content
        [listed] = [c for c in channels.json()["results"] if c["name"] == "ops-hook"]
        assert listed["has_secret"] is True
        assert api(user).get("/api/v1/channels/ops-hook/").status_code == 200
        sources = api(user).get("/api/v1/data-sources/")
        assert sources.status_code == 200, sources.content
        [source] = sources.json()["results"]
        assert source["name"] == "prom-main" and source["has_secret"] is True


def test_loaders_with_an_undecryptable_connection_password_are_listed(
    key_a: Any, new_loader: Any, settings: Any, viewer: Any
):
    new_loader(connection_password="db-password")
    key_b(settings)

    listed = api(viewer).get("/api/v1/loaders/")
    assert listed.status_code == 200, listed.content
    detail = api(viewer).get("/api/v1/loaders/SALES-DAILY/")
    assert detail.status_code == 200, detail.content
    assert detail.json()["open_version"]["connection_password_set"] is True


def test_an_undecryptable_secret_reads_as_a_marker_logged_once_with_the_row_id(
    hook: Channel, settings: Any, caplog: pytest.LogCaptureFixture
):
    key_b(settings)

    with caplog.at_level(logging.WARNING, logger="etl_monitor.crypto"):
        for _ in range(3):
            secret = Channel.objects.get(pk=hook.pk).secret
            assert secret_undecryptable(secret) and secret  # set, but unreadable

    [record] = [r for r in caplog.records if r.name == "etl_monitor.crypto"]
    assert f"integrations.Channel {hook.pk}: secret" in record.getMessage()
    assert UNDECRYPTABLE in record.getMessage()
    with pytest.raises(CannotDecrypt, match=UNDECRYPTABLE):
        secret.startswith("https://")  # used as text, it says what is wrong instead of sending garbage
    assert "fernet" not in repr(secret)


def test_saving_other_fields_keeps_the_stored_secret_for_when_the_right_key_returns(
    hook: Channel, prometheus: DataSource, settings: Any, admin_user: Any
):
    key_b(settings)
    channel = channel_save(user=admin_user, data={"enabled": False}, channel=Channel.objects.get(pk=hook.pk))
    assert api(admin_user).patch(f"/api/v1/data-sources/{prometheus.pk}/", {"timeout_seconds": 3}).status_code == 200

    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]  # the old key listed again
    assert Channel.objects.get(pk=channel.pk).secret == WebhookReceiver.SECRET
    assert DataSource.objects.get(pk=prometheus.pk).secret == "prom-token"


def test_setting_the_secret_again_makes_the_channel_work(hook: Channel, settings: Any, admin_user: Any):
    key_b(settings)
    channel_save(user=admin_user, data={"secret": "new-secret"}, channel=Channel.objects.get(pk=hook.pk))

    assert Channel.objects.get(pk=hook.pk).secret == "new-secret"


def test_a_queued_delivery_through_that_channel_gives_up_with_the_reason(
    hook: Channel, open_incident: Any, webhook: WebhookReceiver, settings: Any
):
    incident = open_incident(send=False)  # queued while the secret was readable
    delivery = Delivery.objects.get(incident=incident, channel=hook)
    key_b(settings)

    delivery_send(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.GAVE_UP
    assert UNDECRYPTABLE in delivery.last_error
    assert webhook.requests == []  # nothing was sent with a wrong signature
    channel = Channel.objects.get(pk=hook.pk)
    assert not channel.healthy and UNDECRYPTABLE in channel.unhealthy_reason


def test_routing_skips_the_channel_and_says_why_on_the_timeline(
    hook: Channel, open_incident: Any, webhook: WebhookReceiver, settings: Any
):
    key_b(settings)

    incident = open_incident()

    assert not Delivery.objects.filter(incident=incident, channel=hook).exists()
    notes = incident.events.filter(kind=EventKind.NOT_NOTIFIED).values_list("message", flat=True)
    assert any(f"ops-hook: {UNDECRYPTABLE}" in note for note in notes)
    assert webhook.requests == []


def test_testing_the_channel_or_the_source_answers_with_the_reason(
    hook: Channel, prometheus: DataSource, settings: Any, admin_user: Any
):
    key_b(settings)

    tested = api(admin_user).post("/api/v1/channels/ops-hook/test/", {}, format="json")
    assert tested.status_code == 400
    assert UNDECRYPTABLE in str(tested.json())
    checked = api(admin_user).post(f"/api/v1/data-sources/{prometheus.pk}/test/")
    assert checked.status_code == 200
    assert checked.json()["ok"] is False and UNDECRYPTABLE in checked.json()["detail"]


def test_a_draft_copied_from_a_version_with_an_undecryptable_password_keeps_its_token(
    key_a: Any, new_loader: Any, settings: Any, editor: Any, approver: Any
):
    from loaders import services

    loader = new_loader(connection_password="db-password")
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=loader.open_version)
    )
    key_b(settings)
    services.loader_edit(user=editor, loader=Loader.objects.get(pk=loader.pk), data={"max_duration_minutes": 50})

    settings.FIELD_ENCRYPTION_KEY = [KEY_B, KEY_A]
    versions = LoaderVersion.objects.filter(loader=loader).order_by("number")
    assert [(v.state, v.connection_password) for v in versions] == [("ACTIVE", "db-password"), ("DRAFT", "db-password")]


def test_the_admin_lists_and_pages_say_the_secret_must_be_set_again(
    hook: Channel, prometheus: DataSource, settings: Any, client: Any, admin_user: Any, viewer: Any
):
    key_b(settings)

    for user in (admin_user, viewer):
        client.force_login(user)
        for url in (
            "/admin/integrations/channel/",
            f"/admin/integrations/channel/{hook.pk}/change/",
            "/admin/integrations/datasource/",
            f"/admin/integrations/datasource/{prometheus.pk}/change/",
        ):
            page = client.get(url)
            assert page.status_code == 200, (user, url)
            if url.endswith("/change/"):
                assert UNDECRYPTABLE in page.content.decode(), (user, url)


def test_loader_pages_in_the_admin_open_with_an_undecryptable_connection_password(
    key_a: Any, new_loader: Any, settings: Any, client: Any, admin_user: Any, editor: Any
):
    loader = new_loader(connection_password="db-password")
    key_b(settings)

    for user in (admin_user, editor):
        client.force_login(user)
        for url in (
            "/admin/loaders/loader/",
            f"/admin/loaders/loader/{loader.pk}/change/",
            f"/admin/loaders/loaderversion/{loader.open_version.pk}/change/",
            f"/admin/loaders/loaderversion/{loader.open_version.pk}/history/",
        ):
            assert client.get(url).status_code == 200, (user, url)
