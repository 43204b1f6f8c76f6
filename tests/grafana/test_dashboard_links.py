"""Every link of the dashboards that leads into ETL Monitor opens a real page there.

A link into ETL Monitor is ``${etl_monitor_url}/…`` (the hidden variable ``manage.py
grafana_dashboards`` sets to ETL_MONITOR_BASE_URL). Each one is filled in as Grafana would for a
row of real data (a loader code, an incident id, a run's correlation id, of objects created
here), resolved with Django's own URL resolver, and opened with the test client as an Admin and
as a Viewer: both get the page (200, not a redirect to the login or to the admin's "invalid
filter" ``?e=1``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import Resolver404, resolve
from django.utils import timezone

from incidents.models import Incident
from loaders.models import Loader
from signals_app.models import Run
from tests.grafana.dashboards import Link, dashboards, links
from tests.integrations.conftest import incident_open_for

ALL_LINKS = [link for uid, dashboard in dashboards().items() for link in links(uid, dashboard)]
INTO_ETL_MONITOR = "${etl_monitor_url}/"

# A data link names the row's field it takes (``${__data.fields.X}``); these are the fields that
# hold a loader code or an incident id. A link built on another field must be added here, with
# the value it stands for, so the test can open it.
LOADER_FIELDS = {"loader_code", "Loader", "loader"}
INCIDENT_FIELDS = {"id", "incident_id", "Incident"}
CORRELATION_FIELDS = {"correlation_id"}
CORRELATION_ID = "9f1c2e4a-run-of-sales-daily"
FIELD = re.compile(r"\$\{__data\.fields(?:\.(\w+)|\[\"([^\"]+)\"\])\}")


def _grafana_link(link: Link, uids: set[str]) -> bool:
    """A link that stays in Grafana: the tag-based dashboards drop-down, or one of our dashboards."""
    if link.link.get("type") == "dashboards":
        return not link.url
    return bool(re.match(r"/d/([\w-]+)", link.url)) and link.url.split("/")[2] in uids


def test_the_dashboards_link_to_loaders_and_incidents() -> None:
    # The issue: every panel that shows a loader or an incident links to it in the admin.
    urls = [link.url for link in ALL_LINKS]
    assert any("/admin/ops/loaders/${__data.fields." in url for url in urls)
    assert any("/admin/incidents/incident/${__data.fields." in url for url in urls)


@pytest.mark.parametrize("link", ALL_LINKS, ids=lambda link: f"{link.dashboard}: {link.where}")
def test_a_link_leads_into_etl_monitor_or_stays_in_grafana(link: Link) -> None:
    uids = set(dashboards())
    assert link.url.startswith(INTO_ETL_MONITOR) or _grafana_link(link, uids), (
        f"{link.url!r} is neither ${{etl_monitor_url}}/… nor one of our dashboards"
    )
    assert "://" not in link.url and not link.url.startswith("//"), f"a hard-coded host: {link.url!r}"


@pytest.mark.parametrize("uid", sorted(dashboards()))
def test_no_dashboard_names_a_host(uid: str) -> None:
    # Only the etl_monitor_url variable holds an address (the command replaces it); a host
    # anywhere else (a text panel, a link, a query) would point every site at ours.
    found = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str) and re.search(r"https?://", value):
            found.append(f"{where}: {value[:80]!r}")
        elif isinstance(value, dict):
            if value.get("name") == "etl_monitor_url" and value.get("type") == "textbox":
                return
            for key, inner in value.items():
                walk(inner, f"{where}/{key}")
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, f"{where}/{index}")

    walk(dashboards()[uid], "")
    assert not found, "\n".join(found)


@pytest.fixture
def incident(active_loader: Loader) -> Incident:
    return incident_open_for(active_loader)


@pytest.fixture
def run(active_loader: Loader) -> Run:
    return Run.objects.create(
        loader=active_loader, status="FAILED", started_at=timezone.now(), correlation_id=CORRELATION_ID
    )


def filled(url: str, *, loader: Loader, incident: Incident) -> str:
    """``url`` as Grafana makes it for a row showing ``loader`` and ``incident``, relative to
    ETL Monitor's address."""

    def field(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in LOADER_FIELDS:
            return loader.loader_code
        if name in INCIDENT_FIELDS:
            return str(incident.pk)
        if name in CORRELATION_FIELDS:
            return CORRELATION_ID
        raise AssertionError(f"{url!r}: the field {name!r} is not known to hold a loader code or an incident id")

    path = FIELD.sub(field, url.removeprefix("${etl_monitor_url}"))
    assert "$" not in path and "[[" not in path, f"{url!r}: a variable this test cannot fill: {path!r}"
    return path


INTO = [link for link in ALL_LINKS if link.url.startswith(INTO_ETL_MONITOR)]


@pytest.mark.django_db
@pytest.mark.parametrize("link", INTO, ids=lambda link: f"{link.dashboard}: {link.where}")
def test_a_link_into_etl_monitor_opens_its_page_for_admins_and_viewers(
    link: Link, active_loader: Loader, incident: Incident, run: Run, admin_user: Any, viewer: Any
) -> None:
    url = filled(link.url, loader=active_loader, incident=incident)
    path = urlsplit(url).path
    try:
        match = resolve(path)
    except Resolver404:
        pytest.fail(f"{link.url!r} → {path!r} is no page of ETL Monitor")
    assert path.startswith("/admin/") and match.namespace in ("operations", "admin"), (
        f"{path!r} is not an admin page ({match.view_name})"
    )
    for user in (admin_user, viewer):
        client = Client()
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200, f"{url} as {user.username}: {response.status_code}"


@pytest.mark.django_db
def test_a_link_to_a_loader_that_does_not_exist_is_not_a_page(admin_user: Any, active_loader: Loader) -> None:
    # What the 200s above are worth: the loader page answers for real loaders only.
    client = Client()
    client.force_login(admin_user)
    assert client.get("/admin/ops/loaders/NO-SUCH-LOADER/").status_code == 404
    assert client.get(f"/admin/ops/loaders/{active_loader.loader_code}/").status_code == 200
