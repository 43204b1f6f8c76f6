"""Approval news: approvers are told by email (and on Slack when APPROVALS_SLACK_CHANNEL is set)
that a loader version waits for them; its maker is told when it was approved or rejected. The
real SMTP client against the local mailbox, the real Slack client against the fake workspace."""

from __future__ import annotations

import logging

import pytest

from integrations.models import Channel, ChannelKind
from loaders import services
from tests.conftest import version


@pytest.fixture
def people(make_user, editor, approver, approver2):
    """Everyone with an address: the editor, two approvers, a viewer (who is never told)."""
    from etl_monitor.roles import Role

    for user, address in (
        (editor, "eddie@example.com"),
        (approver, "abby@example.com"),
        (approver2, "alan@example.com"),
    ):
        user.email = address
        user.save(update_fields=["email"])
    make_user(Role.VIEWER, username="vic-viewer", email="vic@example.com")
    return editor, approver, approver2


def _submit(editor, loader, comment="Month end is slower"):
    draft = services.loader_draft_start(user=editor, loader=loader)
    services.loader_version_update(user=editor, version=draft, data={"grace_minutes": 35})
    return services.loader_version_submit(user=editor, version=draft, comment=comment)


def test_it_emails_each_approver_when_a_version_waits(
    mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    editor, _approver, _approver2 = people
    with django_capture_on_commit_callbacks(execute=True):
        v2 = _submit(editor, active_loader)
    recipients = sorted(m["To"] for m in mailbox.messages)
    assert recipients == ["abby@example.com", "alan@example.com"]  # not the submitter, not the viewer
    message = mailbox.to("abby@example.com")[0]
    assert message["Subject"] == "[ETL Monitor] SALES-DAILY v2 waits for your approval"
    body = message.get_content()
    assert "eddie-editor submitted SALES-DAILY v2" in body
    assert "Their comment: Month end is slower" in body
    assert f"/admin/loaders/loaderversion/{v2.pk}/change/" in body


def test_it_tells_the_maker_when_the_version_is_approved(
    mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    editor, approver, _approver2 = people
    v2 = _submit(editor, active_loader)
    with django_capture_on_commit_callbacks(execute=True):
        services.loader_version_approve(user=approver, version=v2, comment="fine")
    [message] = mailbox.messages
    assert message["To"] == "eddie@example.com"
    assert message["Subject"] == "[ETL Monitor] SALES-DAILY v2 was approved by abby-approver"
    assert "Comment: fine" in message.get_content()


def test_it_tells_the_maker_why_the_version_was_rejected(
    mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    editor, approver, _approver2 = people
    v2 = _submit(editor, active_loader)
    with django_capture_on_commit_callbacks(execute=True):
        services.loader_version_reject(user=approver, version=v2, reason="35 is too long")
    [message] = mailbox.messages
    assert message["Subject"] == "[ETL Monitor] SALES-DAILY v2 was rejected by abby-approver"
    assert "Reason: 35 is too long" in message.get_content()


def test_a_withdrawal_tells_nobody(mailbox, people, active_loader, django_capture_on_commit_callbacks):
    editor, _approver, _approver2 = people
    v2 = _submit(editor, active_loader)
    with django_capture_on_commit_callbacks(execute=True):
        services.loader_version_withdraw(user=editor, version=v2)
    assert mailbox.count == 0


def test_a_refused_submission_tells_nobody(mailbox, people, active_loader, django_capture_on_commit_callbacks):
    editor, _approver, _approver2 = people
    draft = services.loader_draft_start(user=editor, loader=active_loader)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(services.StateConflict):
        services.loader_version_submit(user=editor, version=draft)  # an empty change
    assert mailbox.count == 0


def test_an_import_that_submits_many_sends_one_email_per_approver(
    mailbox, people, team, django_capture_on_commit_callbacks
):
    editor, _approver, _approver2 = people
    rows = [{"loader_code": f"IMP-{i}", "name": f"imported {i}", "owner": team.slug} for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        services.loaders_create_many(user=editor, rows=rows, submit=True)
    assert mailbox.count == 2
    message = mailbox.to("abby@example.com")[0]
    assert message["Subject"] == "[ETL Monitor] 3 loader versions wait for your approval"
    assert "IMP-0 v1" in message.get_content() and "IMP-2 v1" in message.get_content()


def test_it_posts_to_the_approvals_slack_channel_when_one_is_set(
    settings, slack, mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    settings.APPROVALS_SLACK_CHANNEL = "#alerts-low"
    editor, approver, _approver2 = people
    with django_capture_on_commit_callbacks(execute=True):
        v2 = _submit(editor, active_loader)
    with django_capture_on_commit_callbacks(execute=True):
        services.loader_version_approve(user=approver, version=version(active_loader, 2))
    texts = [post["text"] for post in slack.posts("#alerts-low")]
    assert texts[0].startswith("SALES-DAILY v2 waits for your approval — http")
    assert f"/admin/loaders/loaderversion/{v2.pk}/change/" in texts[0]
    assert texts[1].startswith("SALES-DAILY v2 was approved by abby-approver")


def test_without_a_slack_channel_set_nothing_goes_to_slack(
    slack, mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _submit(people[0], active_loader)
    assert slack.messages == []
    assert mailbox.count == 2


def test_it_posts_through_a_slack_incoming_webhook_named_by_the_setting(
    settings, httpserver, mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    httpserver.expect_request("/services/T0/B0/approvals", method="POST").respond_with_data("ok")
    Channel.objects.create(
        name="approvals", kind=ChannelKind.SLACK_WEBHOOK, secret=httpserver.url_for("/services/T0/B0/approvals")
    )
    settings.APPROVALS_SLACK_CHANNEL = "approvals"
    with django_capture_on_commit_callbacks(execute=True):
        _submit(people[0], active_loader, comment="<!channel> look")
    [(request, _response)] = httpserver.log
    assert request.get_json()["text"].startswith("SALES-DAILY v2 waits for your approval")


def test_a_slack_failure_is_logged_and_the_submission_stands(
    settings, slack, mailbox, people, active_loader, django_capture_on_commit_callbacks, caplog
):
    settings.APPROVALS_SLACK_CHANNEL = "#no-such-channel"
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        v2 = _submit(people[0], active_loader)
    assert "approval news not posted to #no-such-channel" in caplog.text
    assert version(active_loader, 2).state == "PENDING_APPROVAL" and v2.pk
    assert mailbox.count == 2  # email went all the same


def test_a_mail_server_that_is_down_does_not_undo_the_decision(
    mailbox, people, active_loader, django_capture_on_commit_callbacks, caplog
):
    editor, approver, _approver2 = people
    v2 = _submit(editor, active_loader)
    mailbox.stop()
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        services.loader_version_approve(user=approver, version=v2)
    assert "approval email" in caplog.text
    assert version(active_loader, 2).state == "ACTIVE"


def test_the_news_carry_no_loader_name_nor_contract_values(
    mailbox, people, active_loader, django_capture_on_commit_callbacks
):
    editor, approver, _approver2 = people
    with django_capture_on_commit_callbacks(execute=True):
        v2 = _submit(editor, active_loader)
    with django_capture_on_commit_callbacks(execute=True):
        services.loader_version_approve(user=approver, version=v2)
    for message in mailbox.messages:
        text = message["Subject"] + message.get_content()
        assert active_loader.name not in text  # the name may be HIDDEN from a role: the code says enough
        assert "Nightly sales" not in text and "Europe/Berlin" not in text  # contract values
