"""Schedules read in words on the loader and version pages (never for a role the schedule is
hidden from)."""

from __future__ import annotations

from etl_monitor.models import FieldProtection
from tests.conftest import version


def test_the_loader_page_says_the_schedule_in_words(client, viewer, active_loader):
    client.force_login(viewer)
    html = client.get(f"/admin/loaders/loader/{active_loader.pk}/change/").content.decode()
    assert "At 02:30, Europe/Berlin time" in html
    assert "<code>30 2 * * * Europe/Berlin</code>" in html


def test_the_version_page_says_the_schedule_in_words(client, viewer, active_loader):
    client.force_login(viewer)
    html = client.get(f"/admin/loaders/loaderversion/{version(active_loader, 1).pk}/change/").content.decode()
    assert "Schedule in words" in html and "At 02:30, Europe/Berlin time" in html


def test_a_hidden_schedule_is_not_told_in_words(client, viewer, active_loader):
    FieldProtection.objects.create(model_label="loaders.loaderversion", field_name="schedule_cron", level="HIDDEN")
    client.force_login(viewer)
    for url in (
        f"/admin/loaders/loader/{active_loader.pk}/change/",
        f"/admin/loaders/loaderversion/{version(active_loader, 1).pk}/change/",
    ):
        html = client.get(url).content.decode()
        assert "At 02:30" not in html, url
