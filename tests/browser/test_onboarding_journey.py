"""The "Get started" checklist in Chromium, on a fresh database: an Admin follows it step by step
through the real screens — clicking the checklist's own links, filling the real admin forms — and an
Approver, a second person, approves the loader. After each step the checklist shows that step done
and the later ones not; a screenshot of the overview is taken at each step."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail

from loaders.models import Team
from onboarding.models import Step
from tests.browser.conftest import PHONE, Page

STEPS = [s.value for s in Step]


@pytest.fixture(autouse=True)
def _no_grafana(settings: Any) -> None:
    settings.GRAFANA_URL = ""


def _checklist(page: Page) -> dict[str, bool]:
    page.open("/admin/")
    page.wait_for(lambda d: d.find_element("id", "onboarding"))
    return {el.get_attribute("data-step"): el.get_attribute("data-done") == "true" for el in page.find_all(".onb-step")}


def _expect_done_through(page: Page, count: int, shot: str) -> None:
    """Steps 1..count done, the later ones not; the summary says so; a screenshot of it."""
    states = _checklist(page)
    assert states == {step: i < count for i, step in enumerate(STEPS)}, states
    summary = page.find("#onboarding-count").text
    assert summary == (f"All {len(STEPS)} steps done" if count == len(STEPS) else f"{count} of {len(STEPS)} done")
    page.screenshot(shot)


def _type(page: Page, name: str, value: str) -> None:
    field = page.find(f"[name={name}]")
    field.clear()
    field.send_keys(value)


def _save(page: Page, css: str = "input[name=_save]") -> None:
    page.click(css)
    page.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")


def _follow(page: Page, step: str) -> None:
    """Click the checklist's link of ``step``."""
    page.click(f"#onboarding-step-{step} [data-step-link={step}]")
    page.wait_for(lambda d: d.execute_script("return document.readyState") == "complete")


def _choose_autocomplete(page: Page, name: str, value: int, label: str) -> None:
    """Pick a value in the admin's autocomplete (select2) box, as choosing from its list does."""
    page.js(
        "const s = document.querySelector(`select[name=${arguments[0]}]`);"
        "s.append(new Option(arguments[2], arguments[1], true, true));"
        "s.dispatchEvent(new Event('change', {bubbles: true}));",
        name,
        str(value),
        label,
    )


def test_an_admin_follows_the_checklist_to_the_end(
    page: Page, live_server: Any, admin_user: User, approver: User
) -> None:
    page.login(admin_user)
    _expect_done_through(page, 0, "0-fresh")
    assert page.find("#onboarding").get_attribute("open") is not None

    # 1. A team, on the team form the checklist links to.
    _follow(page, "team")
    assert "/admin/loaders/team/add/" in page.driver.current_url
    _type(page, "name", "Data Platform")
    _type(page, "slug", "data-platform")
    _save(page)
    page.wait_for_text("was added successfully")
    _expect_done_through(page, 1, "1-team")

    # 2. A loader: the Admin creates and submits it; the checklist then points at the review.
    _follow(page, "loader")
    _type(page, "loader_code", "SALES-DAILY")
    _type(page, "name", "Daily sales")
    _choose_autocomplete(page, "owner", Team.objects.get(slug="data-platform").pk, "Data Platform")
    _save(page)
    page.wait_for_text("created with draft v1")
    _type(page, "submit_comment", "Our first loader")
    _save(page, "button[name=_submit_for_approval]")
    page.wait_for_text("submitted for approval")
    assert "waits for an Approver" in page.open("/admin/").find("#onboarding-step-loader").text
    _expect_done_through(page, 1, "2a-loader-waits-for-approval")
    review_url = page.find("#onboarding-step-loader [data-step-link=loader]").get_attribute("href")

    # …and a second person, an Approver, approves it (the checklist is not theirs to see).
    page.driver.delete_all_cookies()
    page.login(approver).open("/admin/")
    assert not page.find_all("#onboarding")
    page.click("#pending-approvals")
    page.driver.get(review_url)
    page.click("form[action*='/approve/'] button[type=submit]")
    page.wait_for_text("approved; it is now the active version")
    page.driver.delete_all_cookies()
    page.login(admin_user)
    _expect_done_through(page, 2, "2b-loader-approved")

    # 3. A ping key, on the token form with the loader already chosen; its secret shows once.
    _follow(page, "token")
    assert page.find("select[name=loader] option:checked").text == "SALES-DAILY"
    page.find("select[name=kind] option[value=PING]").click()
    _type(page, "name", "nightly cron")
    _save(page)
    page.wait_for_text("it will not be shown again")
    ping_key = re.search(r"it will not be shown again: (\S+)", page.text()).group(1)
    _expect_done_through(page, 3, "3-token")
    step = page.find("#onboarding-step-first_run")
    assert ping_key not in page.text()
    assert step.find_element("css selector", ".onb-snippets").get_attribute("open") is not None  # the next step
    assert "/ping/$PING_KEY/SALES-DAILY/start" in step.text
    page.screenshot("3b-snippets", docs="onboarding-checklist")

    # 4. The job pings: the first run arrives.
    with urllib.request.urlopen(f"{live_server.url}/ping/{ping_key}/SALES-DAILY/start", timeout=10) as answer:
        assert answer.status == 200
    _expect_done_through(page, 4, "4-first-run")

    # 5. A channel, tested from its own page.
    _follow(page, "channel")
    email_row = [a for a in page.find_all("#result_list tbody th a") if a.text == "email"]
    email_row[0].click()
    page.wait_for(lambda d: d.find_element("name", "_test_target"))
    _type(page, "_test_target", "ops@example.com")
    page.click("button[formaction*='/test/']")
    page.wait_for_text("test notification sent to ops@example.com")
    assert len(mail.outbox) == 1
    _expect_done_through(page, 5, "5-channel")

    # 6. Field protection: the Admin skips it, takes the skip back, then adds a rule after all.
    page.click("[data-skip=protection]")
    page.wait_for_text("skipped for everyone")
    _expect_done_through(page, 6, "6a-protection-skipped")
    assert "Skipped by ada-admin" in page.find("#onboarding-step-protection").text
    page.click("[data-undo-skip=protection]")
    page.wait_for_text("no longer skipped")
    _expect_done_through(page, 5, "6b-skip-undone")
    _follow(page, "protection")
    page.find("select[name=model_label] option[value='loaders.loaderversion']").click()
    page.find("select[name=field_name] option[value=connection_host]").click()
    page.find("select[name=level] option[value=MASKED]").click()
    _save(page)
    page.wait_for_text("was added successfully")
    _expect_done_through(page, 6, "6c-protection-rule")

    # 7. The dashboards: the loader's page, opened from the checklist.
    _follow(page, "dashboards")
    assert page.driver.current_url.endswith("/admin/ops/loaders/SALES-DAILY/")
    _expect_done_through(page, 7, "7-all-done")
    assert page.find("#onboarding").get_attribute("open") is None  # collapsed to one line

    # Hidden by the Admin, and brought back from the models index.
    page.click("#onboarding summary")
    page.click("#onboarding-dismiss button")
    page.wait_for_text("checklist is hidden")
    assert not page.find_all("#onboarding")
    page.open("/admin/models/").click("#onboarding-restore button")
    page.wait_for(lambda d: d.find_element("id", "onboarding"))
    page.screenshot("8-shown-again")


def test_the_checklist_fits_a_phone(page: Page, admin_user: User, editor: User, approver: User) -> None:
    from loaders import services
    from signals_app.tokens import ingest_token_create

    team, _ = services.team_upsert(user=editor, slug="data-platform", data={"name": "Data Platform"})
    loader = services.loader_create(user=editor, data={"loader_code": "SALES-DAILY", "name": "x", "owner": team.slug})
    services.loader_version_approve(
        user=approver, version=services.loader_version_submit(user=editor, version=loader.open_version)
    )
    ingest_token_create(user=editor, loader=loader, name="job")
    page.viewport(PHONE).login(admin_user)
    states = _checklist(page)
    assert [states[s] for s in STEPS] == [True, True, True, False, False, False, False]
    assert page.find("#onboarding-step-first_run .onb-snippets").get_attribute("open") is not None
    page.screenshot("phone")
    assert page.horizontal_overflow() == 0
