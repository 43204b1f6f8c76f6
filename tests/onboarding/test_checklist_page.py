"""The checklist on the overview (/admin/): who sees it, its links and snippets, and its buttons —
skip and undo (Admin only), hide and show again (each person for themself), all POST with CSRF."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from etl_monitor.roles import Role
from onboarding.models import ChecklistDismissal, Step, StepRecord
from onboarding.selectors import STEP_PERMISSIONS, STEP_ROLES
from signals_app.models import IngestToken
from signals_app.tokens import ingest_token_create

pytestmark = pytest.mark.django_db

OVERVIEW = "/admin/"
CHECKLIST = 'id="onboarding"'
SKIP = "/admin/onboarding/steps/protection/skip/"
UNDO = "/admin/onboarding/steps/protection/undo-skip/"


def signed_in(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def overview(user: User) -> str:
    response = signed_in(user).get(OVERVIEW)
    assert response.status_code == 200
    return response.content.decode()


def csrf_post(user: User, path: str) -> Any:
    """A POST as the browser sends it: the CSRF token from the overview's form."""
    client = signed_in(user, csrf=True)
    client.get(OVERVIEW)
    return client.post(path, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})


@pytest.mark.parametrize("role", [Role.ADMIN, Role.EDITOR])
def test_admins_and_editors_see_the_checklist(make_user: Any, role: str) -> None:
    html = overview(make_user(role))
    assert CHECKLIST in html and "0 of 7 done" in html
    for step in Step:
        assert f'id="onboarding-step-{step.value}"' in html


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.APPROVER])
def test_viewers_operators_and_approvers_do_not(make_user: Any, role: str) -> None:
    assert CHECKLIST not in overview(make_user(role))


def test_each_step_names_the_roles_that_hold_its_permission(make_user: Any) -> None:
    for step in Step:
        holders = {role for role in Role.ALL if any(make_user(role).has_perm(p) for p in STEP_PERMISSIONS[step])}
        assert holders == set(STEP_ROLES[step]), step


def test_the_links_go_to_the_screens_that_do_each_step(admin_user: User) -> None:
    html = overview(admin_user)
    for url in (
        "/admin/loaders/team/add/",
        "/admin/loaders/loader/add/",
        "/admin/integrations/channel/",
        "/admin/etl_monitor/fieldprotection/add/",
        "/admin/loaders/loader/",
    ):
        assert f'href="{url}"' in html, url
        assert signed_in(admin_user).get(url).status_code == 200, url


def test_the_snippets_show_a_placeholder_never_a_stored_secret(admin_user: User, active_loader: Any) -> None:
    _, raw = ingest_token_create(user=admin_user, loader=active_loader, name="job", kind=IngestToken.Kind.API)
    _, ping = ingest_token_create(user=admin_user, loader=active_loader, name="cron", kind=IngestToken.Kind.PING)
    html = overview(admin_user)
    assert "3 of 7 done" in html  # team, loader, token
    assert "$ETL_MONITOR_TOKEN" in html and "/ping/$PING_KEY/SALES-DAILY/start" in html
    assert raw not in html and ping not in html


def test_a_step_first_seen_done_keeps_its_time_when_it_is_undone_later(admin_user: User, editor: User) -> None:
    from loaders import services

    team, _ = services.team_upsert(user=editor, slug="finance", data={"name": "Finance"})
    overview(admin_user)
    first = StepRecord.objects.get(step=Step.TEAM).first_done_at
    assert first is not None and StepRecord.objects.get(step=Step.LOADER).first_done_at is None
    team.delete()
    assert "0 of 7 done" in overview(admin_user)
    assert StepRecord.objects.get(step=Step.TEAM).first_done_at == first


def test_an_admin_skips_field_protection_and_undoes_it(admin_user: User) -> None:
    response = csrf_post(admin_user, SKIP)
    assert (response.status_code, response["Location"]) == (302, "/admin/#onboarding")
    record = StepRecord.objects.get(step=Step.PROTECTION)
    assert record.skipped_by == admin_user and record.skipped_at is not None
    html = overview(admin_user)
    assert "1 of 7 done" in html and "Skipped by ada-admin" in html and "Undo the skip" in html
    assert csrf_post(admin_user, UNDO).status_code == 302
    assert StepRecord.objects.get(step=Step.PROTECTION).skipped_at is None
    assert [r.history_change_reason for r in record.history.order_by("history_date")] == ["Skipped", "Skip undone"]


def test_an_editor_may_neither_skip_nor_undo(editor: User, admin_user: User) -> None:
    assert "Skip: nothing needs protecting" not in overview(editor)
    assert csrf_post(editor, SKIP).status_code == 403
    assert not StepRecord.objects.filter(skipped_at__isnull=False).exists()
    csrf_post(admin_user, SKIP)
    assert csrf_post(editor, UNDO).status_code == 403
    assert StepRecord.objects.get(step=Step.PROTECTION).skipped_at is not None


def test_only_field_protection_can_be_skipped(admin_user: User) -> None:
    assert csrf_post(admin_user, "/admin/onboarding/steps/team/skip/").status_code == 404
    assert csrf_post(admin_user, "/admin/onboarding/steps/nonsense/skip/").status_code == 404
    assert not StepRecord.objects.filter(skipped_at__isnull=False).exists()


@pytest.mark.parametrize("path", [SKIP, UNDO, "/admin/onboarding/hide/", "/admin/onboarding/show/"])
def test_the_buttons_need_post_and_a_csrf_token(admin_user: User, path: str) -> None:
    assert signed_in(admin_user).get(path).status_code == 405
    assert signed_in(admin_user, csrf=True).post(path).status_code == 403  # no token
    assert not ChecklistDismissal.objects.exists()
    assert not StepRecord.objects.filter(skipped_at__isnull=False).exists()


@pytest.mark.parametrize("path", [SKIP, "/admin/onboarding/hide/"])
def test_anonymous_visitors_are_sent_to_the_login(path: str) -> None:
    response = Client().post(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_hiding_the_checklist_hides_it_for_that_person_only(editor: User, admin_user: User) -> None:
    assert csrf_post(editor, "/admin/onboarding/hide/").status_code == 302
    assert CHECKLIST not in overview(editor)
    assert CHECKLIST in overview(admin_user)
    models_index = signed_in(editor).get("/admin/models/").content.decode()
    assert "Show the Get started checklist again" in models_index
    assert "Show the Get started checklist again" not in signed_in(admin_user).get("/admin/models/").content.decode()
    assert csrf_post(editor, "/admin/onboarding/show/").status_code == 302
    assert CHECKLIST in overview(editor)


def test_when_every_step_is_done_it_collapses_to_one_line(
    admin_user: User, active_loader: Any, settings: Any, mailoutbox: Any
) -> None:
    from integrations.models import Channel
    from integrations.notifications import outbox
    from onboarding import services
    from signals_app import services as signals
    from signals_app.tokens import Writer

    token, _ = ingest_token_create(user=admin_user, loader=active_loader, name="job")
    signals.run_start(writer=Writer(token=token), data={"loader_code": active_loader.loader_code})
    outbox.channel_test(user=admin_user, channel=Channel.objects.get(name="email"), target="ops@example.com")
    services.step_skip(user=admin_user, step=Step.PROTECTION)
    html = overview(admin_user)
    assert "6 of 7 done" in html and '<details class="onb" id="onboarding" open' in html
    settings.GRAFANA_URL = "https://grafana.example.com"
    html = overview(admin_user)
    assert "All 7 steps done" in html
    assert '<details class="onb onb-all-done" id="onboarding"\n' in html  # closed: one line
    assert all(r.first_done_at for r in StepRecord.objects.all())


def test_the_checklist_costs_the_same_queries_for_one_loader_or_many(
    admin_user: User, new_loader: Any, editor: User
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from onboarding.selectors import checklist_read

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            checklist_read(base_url="https://etl.example.com")
        return len(captured)

    new_loader("FIRST")
    one = queries()
    for n in range(8):
        loader = new_loader(f"MORE-{n}")
        ingest_token_create(user=editor, loader=loader, name="job")
    assert queries() == one <= 15


def test_admins_read_the_step_records_and_nobody_edits_them(admin_user: User, editor: User) -> None:
    from loaders import services

    services.team_upsert(user=editor, slug="finance", data={"name": "Finance"})
    overview(admin_user)
    page = signed_in(admin_user).get("/admin/onboarding/steprecord/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Create a team" in html and "Review field protection" in html
    record = StepRecord.objects.get(step=Step.TEAM)
    assert signed_in(admin_user).post(f"/admin/onboarding/steprecord/{record.pk}/change/", {}).status_code == 403
    assert signed_in(admin_user).get("/admin/onboarding/steprecord/add/").status_code == 403
    assert signed_in(editor).get("/admin/onboarding/steprecord/").status_code == 403
