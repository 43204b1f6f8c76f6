"""No role sees a stored secret in the admin of the running platform, Admins included.

Every secret field holds a value containing MARKER (channels' tokens, webhook URL and signing
secret, data sources' password and bearer token, a loader's connection password; Jira's API token
and webhook secret come from the environment). Each role logs in through /admin/login/ and opens
the list, change and history pages (and the history records) of every such object, and of the
deliveries of a real incident; no page may contain MARKER."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.harness import HTTP_TIMEOUT, MARKER, ROLES, Platform, wait_until

pytestmark = pytest.mark.services

MODELS = (
    "integrations/channel",
    "integrations/datasource",
    "integrations/jirasettings",
    "integrations/delivery",
    "loaders/loader",
    "loaders/loaderversion",
)
PER_MODEL = 4  # objects per model opened by every role
HISTORY_RECORDS = 2  # history records opened per object


def change_links(html: str, model: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf'href="(/admin/{model}/\d+/change/)[^"]*"', html)))


def history_record_links(html: str, model: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf'href="(/admin/{model}/\d+/history/\d+/)"', html)))


@pytest.fixture
def incident_with_deliveries(platform: Platform) -> str:
    """A failed run whose incident the worker has delivered (Slack, email, Jira)."""
    code = platform.loader_create("E2E-ADMIN-PAGES", connection_user="etl", connection_host="db.example.com")
    client = platform.ingest(platform.token_create(code))
    run_id = str(uuid.uuid4())
    client.post(platform.url("/api/v1/runs/"), json={"loader_code": code, "run_id": run_id}, timeout=HTTP_TIMEOUT)
    client.patch(platform.url(f"/api/v1/runs/{run_id}/"), json={"status": "FAILED"}, timeout=HTTP_TIMEOUT)
    [incident] = wait_until(lambda: platform.incidents(code), f"an incident for {code}", timeout=60)
    wait_until(
        lambda: platform.get("Admin", "/api/v1/deliveries/", params={"incident": incident["id"]}).json()["results"],
        "the incident's deliveries",
        timeout=60,
    )
    return code


def pages_to_scan(platform: Platform, code: str) -> list[str]:
    """The admin pages of every object with a secret, found the way an Admin would (the lists)."""
    admin = platform.admin_sessions["Admin"]
    pages = ["/admin/"]
    for model in MODELS:
        changelist = f"/admin/{model}/" + ("?q=" + code if model.startswith("loaders/") else "")
        listed = admin.get(platform.url(changelist), timeout=HTTP_TIMEOUT)
        assert listed.status_code == 200, f"{changelist}: {listed.status_code}"
        pages.append(changelist)
        found = change_links(listed.text, model)
        if not found and "/change/" in listed.url:  # a one-row model whose list opens the row
            found = [listed.url[len(platform.base) :]]
        assert found, f"no {model} objects listed for the Admin"
        for change in found[:PER_MODEL]:
            history = change.replace("/change/", "/history/")
            pages += [change, history]
            records = admin.get(platform.url(history), timeout=HTTP_TIMEOUT).text
            pages += history_record_links(records, model)[:HISTORY_RECORDS]
    return pages


def test_no_role_sees_a_stored_secret_on_any_admin_page(platform: Platform, incident_with_deliveries: str):
    pages = pages_to_scan(platform, incident_with_deliveries)

    def scan(role: str) -> list[tuple[str, str, int, bool]]:
        session = platform.admin_sessions[role]
        seen = []
        for page in pages:
            answer = session.get(platform.url(page), timeout=HTTP_TIMEOUT)
            seen.append((role, page, answer.status_code, MARKER in answer.text))
        return seen

    with ThreadPoolExecutor(max_workers=3) as pool:
        seen = [row for rows in pool.map(scan, ROLES) for row in rows]

    leaks = [(role, page) for role, page, _status, leaked in seen if leaked]
    errors = [(role, page, status) for role, page, status, _leaked in seen if status >= 500]
    assert leaks == [], f"secret shown on {len(leaks)} page(s)"
    assert errors == []
    # Every role may read these objects: the pages were really shown, not refused.
    opened = {(role, page) for role, page, status, _leaked in seen if status == 200}
    for role in ROLES:
        assert {(role, page) for page in pages if "/channel/" in page and "/change/" in page} <= opened
