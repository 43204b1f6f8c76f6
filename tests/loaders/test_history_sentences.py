"""History pages read as sentences with local times: who did what, when, in the site's zone;
never "Deleted user (pk=None)" nor a raw "+00:00"."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from etl_monitor.humanize import local_time
from loaders import services
from tests.conftest import version


@pytest.fixture
def berlin(settings):
    settings.TIME_ZONE = "Europe/Berlin"


def _history(client, v) -> str:
    return client.get(f"/admin/loaders/loaderversion/{v.pk}/history/").content.decode()


def test_it_reads_as_sentences_in_the_local_time_zone(client, berlin, admin_user, pending_loader, approver2):
    v2 = services.loader_version_approve(user=approver2, version=version(pending_loader, 2), comment="ok")
    client.force_login(admin_user)
    html = _history(client, v2)
    when = local_time(v2.decided_at)
    assert when.endswith(" CET")
    assert f"Approved by alan-approver at {when}: “ok”" in html
    assert "Submitted for approval by eddie-editor at " in html
    assert "Changed max duration minutes by eddie-editor at " in html  # the label, not max_duration_minutes
    assert "Submitted by: (none) &rarr; eddie-editor" in html
    assert "Deleted user" not in html and "pk=None" not in html
    assert "+00:00" not in html


def test_a_deleted_author_is_named_as_such(client, admin_user, pending_loader, editor):
    v2 = version(pending_loader, 2)
    editor.delete()
    client.force_login(admin_user)
    html = _history(client, v2)
    assert "Submitted for approval by a deleted user at " in html


def test_local_time_names_the_zone_and_drops_the_offset(berlin):
    moment = dt.datetime(2026, 12, 3, 13, 2, tzinfo=dt.UTC)
    assert local_time(moment) == "3 Dec 2026, 14:02 CET"
    assert local_time(moment, "America/New_York") == "3 Dec 2026, 08:02 EST"
    assert local_time(None) == "—"


def test_the_version_page_says_who_submitted_it_and_when_in_local_time(client, berlin, approver, pending_loader):
    client.force_login(approver)
    v2 = version(pending_loader, 2)
    html = client.get(f"/admin/loaders/loaderversion/{v2.pk}/change/").content.decode()
    assert f"Submitted by eddie-editor at {local_time(v2.submitted_at)}." in html
    assert timezone.localtime(v2.submitted_at).tzname() == "CET"


def test_the_version_page_shows_its_times_in_local_time(client, berlin, approver, pending_loader):
    client.force_login(approver)
    v2 = version(pending_loader, 2)
    html = client.get(f"/admin/loaders/loaderversion/{v2.pk}/change/").content.decode()
    assert local_time(v2.created_at) in html and local_time(v2.created_at).endswith(" CET")
    assert "p.m." not in html and "a.m." not in html
