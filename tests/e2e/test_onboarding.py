"""The Get started checklist on the running platform (gunicorn and the worker on PostgreSQL + Redis).

What a new team does over HTTP — a loader approved by a second person, a ping key, a cron ping,
a loader page opened — turns the checklist's steps done on the overview and on ``/metrics``,
with no test transaction around any of it. The skip button is a real form post (CSRF from the
page) that only an Admin may send. The platform is shared by the whole suite, so each test only
asserts what its own requests make true."""

from __future__ import annotations

import itertools
import re

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform, wait_until

pytestmark = pytest.mark.services
_codes = itertools.count(1)


def overview(platform: Platform, role: str) -> str:
    answer = platform.admin_sessions[role].get(platform.url("/admin/"), timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.status_code
    return answer.text


def step_done(html: str, step: str) -> bool | None:
    """The checklist's word on ``step`` (None: no checklist on the page)."""
    found = re.search(rf'id="onboarding-step-{step}" data-step="{step}" data-done="(true|false)"', html)
    return None if found is None else found.group(1) == "true"


def gauges(platform: Platform) -> dict[str, float]:
    """``onboarding_step_done{step}`` as Prometheus scrapes it."""
    text = requests.get(platform.url("/metrics"), timeout=HTTP_TIMEOUT).text
    return {m[0]: float(m[1]) for m in re.findall(r'^onboarding_step_done\{step="(\w+)"\} (\S+)$', text, re.M)}


def post_form(
    platform: Platform, role: str, path: str, data: dict[str, str] | None = None, *, page: str = "/admin/"
) -> requests.Response:
    """A form posted as the browser does: with the CSRF token of the ``page`` it is on."""
    session = platform.admin_sessions[role]
    html = session.get(platform.url(page), timeout=HTTP_TIMEOUT).text
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    token = found.group(1) if found else session.cookies.get("csrftoken", "")
    form = {"csrfmiddlewaretoken": token, **(data or {})}
    headers = {"Referer": platform.url(page)}
    return session.post(platform.url(path), data=form, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False)


def test_a_team_a_loader_approved_given_a_ping_key_and_pinged_turn_the_first_four_steps_done(platform: Platform):
    # The suite's own team was written straight to the database; a person creates one in the admin.
    number = next(_codes)
    team = {"slug": f"e2e-onb-{number}", "name": f"Onboarding team {number}", "email": "onb@example.com"}
    added = post_form(platform, "Editor", "/admin/loaders/team/add/", team, page="/admin/loaders/team/add/")
    assert added.status_code == 302, added.text[:2000]
    code = platform.loader_create(f"E2E-ONB-{number}", owner=team["slug"])  # Editor drafts, Approver approves
    key = platform.token_create(code, kind="PING")
    answer = requests.get(platform.url(f"/ping/{key}/{code}"), timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text

    html = overview(platform, "Admin")
    for step in ("team", "loader", "token", "first_run"):
        assert step_done(html, step) is True, step
    assert re.search(r"\d of 7 done|All 7 steps done", html)
    scraped = gauges(platform)
    assert set(scraped) == {"team", "loader", "token", "first_run", "channel", "protection", "dashboards"}
    assert all(scraped[step] == 1 for step in ("team", "loader", "token", "first_run")), scraped


def test_opening_a_loader_page_sets_up_the_dashboards_step(platform: Platform):
    code = platform.loader_create(f"E2E-ONB-{next(_codes)}")
    page = platform.admin_sessions["Viewer"].get(platform.url(f"/admin/ops/loaders/{code}/"), timeout=HTTP_TIMEOUT)
    assert page.status_code == 200

    assert step_done(overview(platform, "Admin"), "dashboards") is True
    assert gauges(platform)["dashboards"] == 1


def test_only_an_admin_skips_field_protection_with_the_pages_form(platform: Platform):
    refused = post_form(platform, "Editor", "/admin/onboarding/steps/protection/skip/")
    assert refused.status_code == 403

    skipped = post_form(platform, "Admin", "/admin/onboarding/steps/protection/skip/")
    assert skipped.status_code == 302, skipped.status_code
    assert step_done(overview(platform, "Admin"), "protection") is True
    wait_until(lambda: gauges(platform)["protection"] == 1 or None, "the protection step on /metrics", timeout=10)

    undone = post_form(platform, "Admin", "/admin/onboarding/steps/protection/undo-skip/")
    assert undone.status_code == 302
    assert "Skipped by" not in overview(platform, "Admin")


def test_hiding_the_checklist_hides_it_for_that_person_only(platform: Platform):
    assert step_done(overview(platform, "Editor"), "team") is not None
    try:
        assert post_form(platform, "Editor", "/admin/onboarding/hide/").status_code == 302
        assert step_done(overview(platform, "Editor"), "team") is None
        assert step_done(overview(platform, "Admin"), "team") is not None
    finally:
        assert post_form(platform, "Editor", "/admin/onboarding/show/").status_code == 302
    assert step_done(overview(platform, "Editor"), "team") is not None


def test_roles_that_cannot_act_on_it_see_no_checklist(platform: Platform):
    for role in ("Viewer", "Operator", "Approver"):
        assert step_done(overview(platform, role), "team") is None, role
