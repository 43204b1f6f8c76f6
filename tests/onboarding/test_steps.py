"""Each step of the checklist turns done only when its live condition holds, through the real
services; demo data and the rows the migrations seed never count."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from etl_monitor.bootstrap import DEMO_TAG, demo_load
from etl_monitor.models import FieldProtection, ProtectionLevel
from integrations.models import Channel, ChannelKind, DeliveryStatus
from integrations.notifications import outbox
from loaders import services
from loaders.models import Loader, Team, VersionState
from onboarding import services as onboarding
from onboarding.models import Step
from signals_app import services as signals
from signals_app.models import IngestToken
from signals_app.tokens import Writer, ingest_token_create, ingest_token_revoke
from tests.onboarding.conftest import done, state

pytestmark = pytest.mark.django_db


def test_it_starts_with_nothing_done_although_the_migrations_seed_a_team_loaders_and_channels() -> None:
    assert Team.objects.filter(slug="etl-monitor").exists()  # the STATS-* loaders' team
    assert Loader.objects.filter(loader_code__startswith="STATS-").exists()
    assert FieldProtection.objects.filter(is_builtin=True).exists()
    assert all(not s.done for s in [state(step) for step in Step])


def test_it_counts_a_team_a_person_created(editor: User) -> None:
    assert not done(Step.TEAM)
    services.team_upsert(user=editor, slug="finance", data={"name": "Finance"})
    assert done(Step.TEAM)
    assert state(Step.TEAM).status == "Team Finance exists."


def test_it_leaves_out_demo_teams_and_teams_written_without_a_person(demo_users: Any) -> None:
    services.team_upsert(user=demo_users[0], slug="demo-team", data={"name": "Demo team"})
    Team.objects.create(slug="shell-team", name="From a shell")  # no history user
    assert not done(Step.TEAM)


def test_a_loader_counts_only_once_a_second_person_approved_it(new_loader: Any, editor: User, approver: User) -> None:
    loader = new_loader()
    assert not done(Step.LOADER)
    assert "is a draft" in state(Step.LOADER).status
    assert state(Step.LOADER).link_url == f"/admin/loaders/loaderversion/{loader.open_version.pk}/change/"
    draft = services.loader_version_submit(user=editor, version=loader.open_version)
    assert not done(Step.LOADER)
    assert "waits for an Approver" in state(Step.LOADER).status
    services.loader_version_approve(user=approver, version=draft)
    assert done(Step.LOADER)
    assert state(Step.LOADER).status == f"SALES-DAILY v1 was approved by {approver.username}."


def test_a_rejected_loader_is_not_done(new_loader: Any, editor: User, approver: User) -> None:
    loader = new_loader()
    draft = services.loader_version_submit(user=editor, version=loader.open_version)
    services.loader_version_reject(user=approver, version=draft, reason="Wrong schedule")
    assert loader.versions.get().state == VersionState.REJECTED
    assert not done(Step.LOADER)
    assert "Wrong schedule" in state(Step.LOADER).status


def test_the_demo_does_not_count_for_any_step(admin_user: User) -> None:
    assert demo_load()
    demo = Loader.objects.get(loader_code="SALES-DAILY")
    ingest_token_create(user=admin_user, loader=demo, name="demo job", kind=IngestToken.Kind.API)
    signals.run_start(writer=Writer(user=admin_user), data={"loader_code": "SALES-DAILY"})
    checklist = [state(step) for step in (Step.TEAM, Step.LOADER, Step.TOKEN, Step.FIRST_RUN)]
    assert [s.done for s in checklist] == [False] * 4


def test_a_loader_a_person_tagged_demo_does_not_count(
    new_loader: Any, editor: User, approver: User, admin_user: User
) -> None:
    loader = new_loader(tags=[DEMO_TAG])
    draft = services.loader_version_submit(user=editor, version=loader.open_version)
    services.loader_version_approve(user=approver, version=draft)
    ingest_token_create(user=editor, loader=loader, name="job")
    signals.run_start(writer=Writer(user=admin_user), data={"loader_code": loader.loader_code})
    assert not any(done(step) for step in (Step.LOADER, Step.TOKEN, Step.FIRST_RUN))


@pytest.mark.parametrize("kind", [IngestToken.Kind.API, IngestToken.Kind.PING])
def test_a_token_or_a_ping_key_counts_until_it_is_revoked(active_loader: Loader, editor: User, kind: str) -> None:
    assert not done(Step.TOKEN)
    assert state(Step.TOKEN).link_url == f"/admin/signals_app/ingesttoken/add/?loader={active_loader.pk}"
    token, raw = ingest_token_create(user=editor, loader=active_loader, name="airflow prod", kind=kind)
    assert done(Step.TOKEN)
    step = state(Step.TOKEN)
    word = "ping key" if kind == IngestToken.Kind.PING else "API token"
    assert step.status == f"SALES-DAILY has the {word} {token.prefix}… (airflow prod)." and raw not in step.status
    ingest_token_revoke(user=editor, token=token)
    assert not done(Step.TOKEN)


def test_a_first_run_counts(active_loader: Loader, editor: User) -> None:
    token, _ = ingest_token_create(user=editor, loader=active_loader, name="job")
    assert not done(Step.FIRST_RUN)
    signals.run_start(writer=Writer(token=token), data={"loader_code": active_loader.loader_code})
    assert done(Step.FIRST_RUN)


def test_a_first_signal_counts(active_loader: Loader, editor: User) -> None:
    token, _ = ingest_token_create(user=editor, loader=active_loader, name="job")
    signals.signals_ingest(
        writer=Writer(token=token),
        payload={
            "loader_code": active_loader.loader_code,
            "signal_key": "rows",
            "signal_value": "12",
            "validation_status": "SUCCESS",
        },
    )
    assert done(Step.FIRST_RUN)
    assert state(Step.FIRST_RUN).status == "A first signal of SALES-DAILY arrived."


def test_a_ping_counts_as_a_first_run(active_loader: Loader, editor: User) -> None:
    key, _ = ingest_token_create(user=editor, loader=active_loader, name="cron", kind=IngestToken.Kind.PING)
    signals.ping_record(token=key, loader_code=active_loader.loader_code, action="start")
    assert done(Step.FIRST_RUN)


@pytest.fixture
def email_channel(db: Any) -> Channel:
    return Channel.objects.get(name="email")  # seeded by a migration, never tested yet


def test_a_channel_counts_once_its_test_was_sent(email_channel: Channel, admin_user: User, mailoutbox: Any) -> None:
    assert not done(Step.CHANNEL)
    delivery = outbox.channel_test(user=admin_user, channel=email_channel, target="ops@example.com")
    assert delivery.status == DeliveryStatus.SENT and len(mailoutbox) == 1
    assert done(Step.CHANNEL)
    assert state(Step.CHANNEL).status == "The channel email sent a message successfully."


def test_a_channel_whose_test_failed_does_not_count(admin_user: User) -> None:
    hook = Channel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, url="http://127.0.0.1:9/nothing-listens")
    delivery = outbox.channel_test(user=admin_user, channel=hook, target=hook.url)
    assert delivery.status != DeliveryStatus.SENT
    assert not done(Step.CHANNEL)


def test_a_disabled_channel_does_not_count(email_channel: Channel, admin_user: User) -> None:
    outbox.channel_test(user=admin_user, channel=email_channel, target="ops@example.com")
    Channel.objects.filter(pk=email_channel.pk).update(enabled=False)
    assert not done(Step.CHANNEL)


def test_a_protection_rule_of_ones_own_counts_the_built_in_one_does_not() -> None:
    assert not done(Step.PROTECTION)
    FieldProtection.objects.create(
        model_label="loaders.loaderversion", field_name="connection_host", level=ProtectionLevel.MASKED
    )
    assert done(Step.PROTECTION)
    assert state(Step.PROTECTION).state_word == "Done"


def test_a_skip_counts_and_undoing_it_opens_the_step_again(admin_user: User) -> None:
    onboarding.step_skip(user=admin_user, step=Step.PROTECTION)
    step = state(Step.PROTECTION)
    assert (step.done, step.state_word, step.skipped_by) == (True, "Skipped", admin_user)
    onboarding.step_skip_undo(user=admin_user, step=Step.PROTECTION)
    assert not done(Step.PROTECTION)


def test_dashboards_count_with_grafana_configured(settings: Any) -> None:
    assert not done(Step.DASHBOARDS)
    settings.GRAFANA_URL = "https://grafana.example.com"
    assert done(Step.DASHBOARDS)
    assert state(Step.DASHBOARDS).link_url == "https://grafana.example.com"


def test_dashboards_count_once_someone_opened_a_loader_page(client: Any, viewer: User, active_loader: Loader) -> None:
    client.force_login(viewer)
    assert client.get("/admin/ops/loaders/NOPE/").status_code == 404
    assert not done(Step.DASHBOARDS)
    assert client.get("/admin/ops/loaders/SALES-DAILY/").status_code == 200
    assert done(Step.DASHBOARDS)
    assert state(Step.DASHBOARDS).status == "vera-viewer opened the page of SALES-DAILY."


def test_a_demo_account_opening_a_loader_page_does_not_count(client: Any, demo_users: Any) -> None:
    demo_load()
    client.force_login(demo_users[0])
    assert client.get("/admin/ops/loaders/SALES-DAILY/").status_code == 200
    assert not done(Step.DASHBOARDS)
