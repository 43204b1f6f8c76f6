"""History pages only show the past: simple-history's "history/<id>" page would save the old
version it shows when POSTed to (a revert), for anyone who may merely view the object, without
the services' role checks. SIMPLE_HISTORY_REVERT_DISABLED only hides its button."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from simple_history.admin import SimpleHistoryAdmin

from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from etl_monitor.models import FieldProtection
from integrations.models import JiraSettings
from loaders.models import Team

JIRA_FORM = {
    "severities": '["CRITICAL"]',
    "issue_type": "Reverted",
    "priorities": '{"CRITICAL": "Highest"}',
    "labels": '["etl"]',
    "correlation_field": "",
    "done_transition": "Done",
    "reopen_transition": "Reopen",
    "reopen_window_seconds": "600",
    "refire_comment_seconds": "600",
}


@pytest.mark.parametrize("role", ["viewer", "admin_user"])
def test_posting_to_a_history_page_changes_nothing(request, client, role, admin_user):
    conf = JiraSettings.current()
    conf.issue_type, conf._history_user = "Bug", admin_user
    conf.save()
    first = conf.history.order_by("history_id").first()
    client.force_login(request.getfixturevalue(role))
    url = f"/admin/integrations/jirasettings/{conf.pk}/history/{first.history_id}/"
    assert client.get(url).status_code == 200
    assert client.post(url, JIRA_FORM).status_code == 405
    assert JiraSettings.current().issue_type == "Bug"


def test_a_protection_rule_cannot_be_reverted_from_its_history_page(client, admin_user):
    rule = FieldProtection.objects.get(field_name="connection_password")
    rule.level = "HIDDEN"
    rule.save()
    first = rule.history.order_by("history_id").first()
    client.force_login(admin_user)
    url = f"/admin/etl_monitor/fieldprotection/{rule.pk}/history/{first.history_id}/"
    assert client.post(url, {"level": "MASKED", "note": ""}).status_code == 405
    assert FieldProtection.objects.get(pk=rule.pk).level == "HIDDEN"


def test_a_viewer_cannot_rewrite_a_team_from_its_history_page(client, viewer, team):
    team.name = "Renamed"
    team.save()
    first = team.history.order_by("history_id").first()
    client.force_login(viewer)
    url = f"/admin/loaders/team/{team.pk}/history/{first.history_id}/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Rewritten", "slug": team.slug, "email": "x@example.com"})
    assert response.status_code == 405
    assert Team.objects.get(pk=team.pk).name == "Renamed"


def test_every_admin_with_history_refuses_posts_to_its_history_pages():
    with_history = {type(a).__name__: a for a in site._registry.values() if isinstance(a, SimpleHistoryAdmin)}
    assert {"TeamAdmin", "LoaderVersionAdmin", "ChannelAdmin", "FieldProtectionAdmin"} <= set(with_history)
    assert [name for name, a in with_history.items() if not isinstance(a, ReadOnlyHistoryAdmin)] == []
