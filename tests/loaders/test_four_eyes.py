"""Four-eyes: nobody approves a version they created, edited or submitted — on every path."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from etl_monitor.errors import PermissionRefused
from loaders import services
from loaders.models import Loader, VersionState
from tests.conftest import version


def test_the_submitter_cannot_approve_even_with_the_approver_role(new_loader, maker_checker, team):
    loader = services.loader_create(
        user=maker_checker, data={"loader_code": "OWN-WORK", "name": "own", "owner": team.slug}
    )
    pending = services.loader_version_submit(user=maker_checker, version=loader.open_version)
    with pytest.raises(PermissionRefused, match="You submitted this version"):
        services.loader_version_approve(user=maker_checker, version=pending)
    assert version(loader, 1).state == VersionState.PENDING_APPROVAL


def test_an_editor_of_the_draft_cannot_approve_it(new_loader, editor, maker_checker, approver):
    loader = new_loader()
    services.loader_version_update(user=maker_checker, version=loader.open_version, data={"grace_minutes": 30})
    pending = services.loader_version_submit(user=editor, version=loader.open_version)
    with pytest.raises(PermissionRefused, match="created or edited"):
        services.loader_version_approve(user=maker_checker, version=pending)
    assert services.loader_version_approve(user=approver, version=pending).state == VersionState.ACTIVE


def test_the_creator_who_did_not_submit_cannot_approve(team, maker_checker, editor, approver):
    loader = services.loader_create(user=maker_checker, data={"loader_code": "MINE", "name": "m", "owner": team.slug})
    pending = services.loader_version_submit(user=editor, version=loader.open_version)
    with pytest.raises(PermissionRefused, match="created or edited"):
        services.loader_version_approve(user=maker_checker, version=pending)


def test_the_submitter_withdraws_instead_of_rejecting(new_loader, maker_checker, team):
    loader = services.loader_create(user=maker_checker, data={"loader_code": "MINE", "name": "m", "owner": team.slug})
    pending = services.loader_version_submit(user=maker_checker, version=loader.open_version)
    with pytest.raises(PermissionRefused, match="withdraw it instead"):
        services.loader_version_reject(user=maker_checker, version=pending, reason="oops")


def test_allowed_actions_match_the_rules(pending_loader, editor, approver, viewer):
    v2 = version(pending_loader, 2)
    assert services.loader_version_allowed_actions(user=editor, version=v2) == ["withdraw"]  # the submitter
    assert services.loader_version_allowed_actions(user=approver, version=v2) == ["approve", "reject"]
    assert services.loader_version_allowed_actions(user=viewer, version=v2) == []


def test_the_api_refuses_self_approval_with_403_and_says_why(team, maker_checker):
    client = APIClient()
    client.force_authenticate(maker_checker)
    created = client.post(
        "/api/v1/loaders/", {"loader_code": "SELF-APPROVE", "name": "s", "owner": team.slug}, format="json"
    )
    assert created.status_code == 201, created.content
    assert client.post("/api/v1/loaders/SELF-APPROVE/submit/", {}, format="json").status_code == 200
    response = client.post("/api/v1/loaders/SELF-APPROVE/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "You submitted this version; another approver must approve it."
    assert Loader.objects.get(loader_code="SELF-APPROVE").active_version is None


def test_the_admin_refuses_self_approval_with_a_message(client, team, maker_checker):
    loader = services.loader_create(
        user=maker_checker, data={"loader_code": "ADM-SELF", "name": "s", "owner": team.slug}
    )
    pending = services.loader_version_submit(user=maker_checker, version=loader.open_version)
    client.force_login(maker_checker)
    page = client.get(f"/admin/loaders/loaderversion/{pending.pk}/change/")
    assert page.status_code == 200
    assert b"/do/approve/" not in page.content  # no Approve button offered
    assert "You submitted this version; another approver must approve it." in page.content.decode()
    response = client.post(f"/admin/loaders/loaderversion/{pending.pk}/do/approve/", follow=True)
    assert "You submitted this version; another approver must approve it." in response.content.decode()
    assert version(loader, 1).state == VersionState.PENDING_APPROVAL
