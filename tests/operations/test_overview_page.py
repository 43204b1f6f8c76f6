"""The overview at /admin/ and /: who may see it, its filters, its figures, and a query count that
does not grow with the number of loaders."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from etl_monitor.models import FieldProtection
from incidents.models import Incident
from loaders.models import Loader, LoaderVersion, Tag, Team, VersionState
from operations.selectors import OverviewFilters, overview_read
from signals_app.models import Run, RunStatus, Signal
from tests.operations.conftest import make_run


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, db, path) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_staff_user_without_a_role_is_refused(make_user) -> None:
    response = client_for(make_user()).get("/admin/")
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_a_viewer_sees_every_loader_with_its_status_in_words(make_loader, viewer, path) -> None:
    now = timezone.now()
    ok = make_loader("HOURLY-OK", cron="", sla=None)
    make_run(ok, started=now - dt.timedelta(minutes=5))
    failed = make_loader("NIGHTLY-FAILED", cron="")
    make_run(failed, RunStatus.FAILED, started=now - dt.timedelta(minutes=30))
    make_loader("PAUSED-ONE", paused=True)
    make_loader("DRAFT-ONLY", active=False)

    response = client_for(viewer).get(path)
    page = response.content.decode()
    assert response.status_code == 200
    for code, word in [("HOURLY-OK", "OK"), ("NIGHTLY-FAILED", "Failed"), ("PAUSED-ONE", "Paused"),
                       ("DRAFT-ONLY", "No active version")]:  # fmt: skip
        tile = page.split(f'data-loader="{code}"')[1].split("</article>")[0]
        assert f">{word}</span>" in tile
    assert "5\xa0minutes ago" in page.split('data-loader="HOURLY-OK"')[1].split("</article>")[0]
    # Most urgent first: the failed loader's tile comes before the OK one.
    assert page.index('data-loader="NIGHTLY-FAILED"') < page.index('data-loader="HOURLY-OK"')


def test_the_status_filter_keeps_only_loaders_in_that_state_and_stays_in_the_url(make_loader, viewer) -> None:
    now = timezone.now()
    make_run(make_loader("A-FAILED", cron=""), RunStatus.FAILED, started=now - dt.timedelta(minutes=2))
    make_run(make_loader("B-OK", cron=""), started=now - dt.timedelta(minutes=2))
    page = client_for(viewer).get("/admin/?status=failed").content.decode()
    assert 'data-loader="A-FAILED"' in page
    assert 'data-loader="B-OK"' not in page
    assert '<option value="failed" selected>' in page


def test_team_and_tag_filters_narrow_the_grid(make_loader, viewer) -> None:
    other = Team.objects.create(slug="finance", name="Finance")
    make_loader("MINE-1")
    theirs = make_loader("THEIRS-1", team=other)
    tagged = make_loader("TAGGED-1")
    tagged.tags.add(Tag.objects.create(name="gdpr"))
    by_team = client_for(viewer).get("/admin/?team=finance").content.decode()
    assert 'data-loader="THEIRS-1"' in by_team and 'data-loader="MINE-1"' not in by_team
    by_tag = client_for(viewer).get("/admin/?tag=gdpr").content.decode()
    assert 'data-loader="TAGGED-1"' in by_tag and 'data-loader="THEIRS-1"' not in by_tag
    assert theirs.owner == other
    # The status badges filter within the chosen team.
    assert '<a href="?team=finance&amp;status=failed" data-status="failed"' in by_team


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("status=burning", "Status", "Unknown status &#x27;burning&#x27;"),
        ("team=nobody", "Team", "No team &#x27;nobody&#x27;."),
        ("tag=nope", "Tag", "No tag &#x27;nope&#x27;."),
        ("page=0", "Page", "A page is a whole number from 1."),
    ],
)
def test_a_bad_filter_is_refused_naming_the_field(make_loader, viewer, query, field, message) -> None:
    make_loader("STILL-SHOWN")
    response = client_for(viewer).get(f"/admin/?{query}")
    page = response.content.decode()
    assert response.status_code == 400
    errors = page.split('id="filter-errors"')[1].split("</ul>")[0]
    assert f"{field}: {message}" in errors
    assert 'data-loader="STILL-SHOWN"' in page  # the unfiltered overview below the error


def test_the_fleet_figures_count_runs_incidents_and_signals(make_loader, viewer) -> None:
    now = timezone.now()
    loader = make_loader("FIGURES-1", cron="")
    for minutes in (10, 20, 30):
        make_run(loader, started=now - dt.timedelta(minutes=minutes))
    make_run(loader, RunStatus.FAILED, started=now - dt.timedelta(minutes=40))
    make_run(loader, started=now - dt.timedelta(hours=30))  # older than 24 h: not counted
    Incident.objects.create(
        title="Run failed", severity="HIGH", category="TRANSACTION", loader=loader, subject="FIGURES-1",
        fingerprint="f1", first_seen=now, last_seen=now,
    )  # fmt: skip
    Signal.objects.bulk_create(
        Signal(loader=loader, signal_key="k", validation_status="SUCCESS", captured_at=now - dt.timedelta(minutes=m),
               received_at=now)
        for m in (1, 2, 90)
    )  # fmt: skip
    summary = overview_read(user=viewer, filters=OverviewFilters(), now=now).summary
    assert (summary["runs_succeeded"], summary["runs_finished"], summary["success_rate"]) == (3, 4, 75.0)
    assert summary["incidents_open"] == 1
    assert ("HIGH", "High", 1) in summary["incidents_by_severity"]
    assert summary["top_failed"] == [{"loader_id": loader.pk, "code": "FIGURES-1", "failures": 1}]
    assert summary["signals_last_hour"] == 2


def test_figure_tiles_link_to_the_matching_filtered_lists(make_loader, viewer, ops_team) -> None:
    loader = make_loader("LINKS-1")
    now = timezone.now()
    Incident.objects.create(
        title="x", severity="LOW", category="TRANSACTION", loader=loader, subject="LINKS-1", fingerprint="l1",
        first_seen=now, last_seen=now,
    )  # fmt: skip
    client = client_for(viewer)
    page = client.get("/admin/").content.decode()
    incidents_link = "/admin/incidents/incident/?q=LINKS-1&amp;status__in=OPEN,ACKNOWLEDGED"
    team_link = f"/admin/loaders/loader/?owner__id__exact={ops_team.pk}"
    assert f'<a href="{incidents_link}">1 open</a>' in page
    assert team_link in page
    # The lists answer those filters (an unknown lookup would redirect with ?e=1).
    assert client.get(incidents_link.replace("&amp;", "&")).status_code == 200
    assert client.get(team_link).status_code == 200
    assert "/admin/incidents/incident/?status__in=OPEN,ACKNOWLEDGED&amp;severity__exact=CRITICAL" in page
    assert "/admin/signals_app/run/?status__exact=FAILED" in page
    assert '<a href="/admin/models/" id="all-models">All models</a>' in page
    assert 'href="/admin/ops/loaders/LINKS-1/"' in page


def test_the_stock_model_index_is_one_click_away(viewer) -> None:
    response = client_for(viewer).get("/admin/models/")
    assert response.status_code == 200
    assert "/admin/loaders/loader/" in response.content.decode()


def test_a_hidden_loader_name_team_and_tags_never_reach_the_overview(make_loader, viewer) -> None:
    loader = make_loader("SECRETIVE-1")
    loader.tags.add(Tag.objects.create(name="top-secret-tag"))
    for name in ("name", "owner", "tags"):
        FieldProtection.objects.create(model_label="loaders.loader", field_name=name, level="HIDDEN")
    page = client_for(viewer).get("/admin/").content.decode()
    assert 'data-loader="SECRETIVE-1"' in page
    assert "SECRETIVE-1 job" not in page  # the name
    assert "Ops Data" not in page and "ops-data" not in page  # the team, in tiles and in the filter
    assert "top-secret-tag" not in page
    assert client_for(viewer).get("/admin/?team=ops-data").status_code == 400


def _bulk_loaders(team: Team, start: int, count: int, now: dt.datetime) -> None:
    loaders = Loader.objects.bulk_create(
        Loader(loader_code=f"BULK-{i:03d}", name=f"Bulk {i}", owner=team) for i in range(start, start + count)
    )
    LoaderVersion.objects.bulk_create(
        LoaderVersion(loader=loader, number=1, state=VersionState.ACTIVE, schedule_cron="*/15 * * * *",
                      decided_at=now - dt.timedelta(days=3))
        for loader in loaders
    )  # fmt: skip
    tag = Tag.objects.get_or_create(name="bulk")[0]
    Loader.tags.through.objects.bulk_create(Loader.tags.through(loader_id=x.pk, tag_id=tag.pk) for x in loaders)
    Run.objects.bulk_create(
        Run(loader=loader, status=status, started_at=now - dt.timedelta(minutes=m), finished_at=now,
            duration_seconds=30, rows_written=10)
        for loader in loaders
        for m, status in ((5, RunStatus.SUCCEEDED), (20, RunStatus.FAILED), (35, RunStatus.SUCCEEDED))
    )  # fmt: skip
    Incident.objects.bulk_create(
        Incident(title="x", severity="LOW", category="TRANSACTION", loader=loader, subject=loader.loader_code,
                 fingerprint=f"fp-{loader.pk}", first_seen=now, last_seen=now)
        for loader in loaders
    )  # fmt: skip


def test_the_overview_costs_the_same_queries_for_10_and_50_loaders(ops_team, viewer) -> None:
    now = timezone.now()
    client = client_for(viewer)
    client.get("/admin/")  # session and permission caches warm

    _bulk_loaders(ops_team, 0, 10, now)
    with CaptureQueriesContext(connection) as ten:
        assert client.get("/admin/").content.decode().count('class="ops-card ops-tile') == 10
    _bulk_loaders(ops_team, 10, 40, now)
    with CaptureQueriesContext(connection) as fifty:
        assert client.get("/admin/").content.decode().count('class="ops-card ops-tile') == 50
    assert len(fifty.captured_queries) == len(ten.captured_queries)
    assert len(ten.captured_queries) <= 25
