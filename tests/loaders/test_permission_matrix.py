"""Each role × each loader endpoint and admin action (PRODUCT.md's role table)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from etl_monitor.roles import Role
from loaders.models import VersionState
from tests.conftest import version

ROLES = [Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN, None]

# What each role may do through the API; anything not listed must be refused with 403.
ALLOWED = {
    "list": {Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN},
    "detail": {Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN},
    "versions": {Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN},
    "create": {Role.EDITOR, Role.ADMIN},
    "patch": {Role.EDITOR, Role.ADMIN},
    "submit": {Role.EDITOR, Role.ADMIN},
    "withdraw": {Role.ADMIN},  # others' submissions: only an admin (the submitter is tested elsewhere)
    "approve": {Role.APPROVER, Role.ADMIN},
    "reject": {Role.APPROVER, Role.ADMIN},
}


def _call(client: APIClient, action: str, team_slug: str):
    return {
        "list": lambda: client.get("/api/v1/loaders/"),
        "detail": lambda: client.get("/api/v1/loaders/SALES-DAILY/"),
        "versions": lambda: client.get("/api/v1/loaders/SALES-DAILY/versions/"),
        "create": lambda: client.post(
            "/api/v1/loaders/", {"loader_code": "NEW-ONE", "name": "n", "owner": team_slug}, format="json"
        ),
        "patch": lambda: client.patch("/api/v1/loaders/SALES-DAILY/", {"grace_minutes": 3}, format="json"),
        "submit": lambda: client.post("/api/v1/loaders/SALES-DAILY/submit/", {}, format="json"),
        "withdraw": lambda: client.post("/api/v1/loaders/SALES-DAILY/withdraw/", {}, format="json"),
        "approve": lambda: client.post("/api/v1/loaders/SALES-DAILY/approve/", {}, format="json"),
        "reject": lambda: client.post("/api/v1/loaders/SALES-DAILY/reject/", {"reason": "no"}, format="json"),
    }[action]()


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
@pytest.mark.parametrize("action", list(ALLOWED))
def test_api_permission_matrix(action, role, make_user, active_loader, editor, team):
    if action in ("approve", "reject", "withdraw"):
        from loaders import services

        draft = services.loader_draft_start(user=editor, loader=active_loader)
        services.loader_version_update(user=editor, version=draft, data={"grace_minutes": 2})
        services.loader_version_submit(user=editor, version=draft)
    elif action == "submit":
        from loaders import services

        draft = services.loader_draft_start(user=editor, loader=active_loader)
        services.loader_version_update(user=editor, version=draft, data={"grace_minutes": 2})
    user = make_user(*([role] if role else []))
    client = APIClient()
    client.force_authenticate(user)
    response = _call(client, action, team.slug)
    if role in ALLOWED[action]:
        assert response.status_code in (200, 201), (role, action, response.content)
    else:
        assert response.status_code == 403, (role, action, response.status_code, response.content)


ADMIN_PAGES = {
    # page: roles that may open it (others get 403)
    "/admin/loaders/loader/": {Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN},
    "/admin/loaders/loader/add/": {Role.EDITOR, Role.ADMIN},
    "/admin/loaders/loaderversion/": {Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OPERATOR, Role.ADMIN},
    "/admin/loaders/pendingapproval/": {Role.APPROVER, Role.ADMIN},
    "/admin/auth/user/": {Role.ADMIN},
}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
@pytest.mark.parametrize("page", list(ADMIN_PAGES))
def test_admin_page_matrix(client, make_user, role, page, active_loader):
    client.force_login(make_user(*([role] if role else [])))
    response = client.get(page)
    expected = 200 if role in ADMIN_PAGES[page] else 403
    assert response.status_code == expected, (role, page, response.status_code)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
def test_admin_version_buttons_per_role(client, make_user, pending_loader, role):
    v2 = version(pending_loader, 2)
    client.force_login(make_user(*([role] if role else [])))
    page = client.get(f"/admin/loaders/loaderversion/{v2.pk}/change/")
    if role is None:
        assert page.status_code == 403
        return
    html = page.content.decode()
    may_decide = role in (Role.APPROVER, Role.ADMIN)
    assert ("/do/approve/" in html) is may_decide
    assert ("/do/reject/" in html) is may_decide
    assert ("/do/withdraw/" in html) is (role == Role.ADMIN)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-role")
def test_admin_approve_action_per_role(client, make_user, pending_loader, role):
    v2 = version(pending_loader, 2)
    client.force_login(make_user(*([role] if role else [])))
    response = client.post(f"/admin/loaders/loaderversion/{v2.pk}/do/approve/")
    state = version(pending_loader, 2).state
    if role in (Role.APPROVER, Role.ADMIN):
        assert state == VersionState.ACTIVE
    else:
        assert state == VersionState.PENDING_APPROVAL
        assert response.status_code in (302, 403)


def test_a_user_without_a_role_cannot_use_the_admin(client, make_user):
    client.force_login(make_user(staff=False))
    response = client.get("/admin/loaders/loader/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
