"""Four-eyes after a rejection: a draft that revises rejected versions carries their authors.

The authors of every version a draft copies since the last ACTIVE one count as its authors, so
the author of a rejected version cannot approve it back in after someone else's trivial edit —
on every path, since the admin, the API, import and apply_config all ask the same service.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from etl_monitor.errors import PermissionRefused
from loaders import services
from loaders.models import Loader, LoaderVersion, VersionState
from tests.conftest import version

REVISES = "You wrote v2, which this version revises after its rejection; another approver must approve it."


def submit(user, loader: Loader) -> LoaderVersion:
    return services.loader_version_submit(user=user, version=Loader.objects.get(pk=loader.pk).open_version)


@pytest.fixture
def revised(active_loader: Loader, maker_checker, editor2, approver) -> Loader:
    """SALES-DAILY: v2 written and submitted by the maker-checker, rejected by ``approver``; v3 revises
    it with one trivial edit by ``editor2``, who submits it."""
    services.loader_edit(user=maker_checker, loader=active_loader, data={"max_duration_minutes": 90})
    services.loader_version_reject(user=approver, version=submit(maker_checker, active_loader), reason="too long")
    services.loader_edit(user=editor2, loader=active_loader, data={"grace_minutes": 21})
    submit(editor2, active_loader)
    v3 = version(active_loader, 3)
    assert v3.based_on == version(active_loader, 2) and v3.max_duration_minutes == 90  # copies A's content
    return active_loader


def test_the_author_of_a_rejected_version_cannot_approve_its_revision(revised, maker_checker):
    v3 = version(revised, 3)

    with pytest.raises(PermissionRefused) as refused:
        services.loader_version_approve(user=maker_checker, version=v3)

    assert refused.value.message == REVISES
    assert version(revised, 3).state == VersionState.PENDING_APPROVAL


def test_a_third_person_can_approve_it_and_so_can_whoever_rejected_it(revised, approver, approver2):
    v3 = version(revised, 3)

    assert "approve" in services.loader_version_allowed_actions(user=approver2, version=v3)
    assert "approve" in services.loader_version_allowed_actions(user=approver, version=v3)  # decided, wrote nothing
    assert services.loader_version_approve(user=approver2, version=v3).state == VersionState.ACTIVE


def test_allowed_actions_and_the_admin_page_agree_with_the_service(revised, maker_checker, approver2, client):
    v3 = version(revised, 3)
    url = reverse("admin:loaders_loaderversion_change", args=[v3.pk])
    approve = reverse("admin:loaders_loaderversion_transition", args=[v3.pk, "approve"])

    assert "approve" not in services.loader_version_allowed_actions(user=maker_checker, version=v3)
    client.force_login(maker_checker)
    page = client.get(url).content.decode()
    assert approve not in page and REVISES in page
    client.post(approve, {"comment": "lgtm"})
    assert version(revised, 3).state == VersionState.PENDING_APPROVAL

    client.force_login(approver2)
    assert approve in client.get(url).content.decode()


def test_the_api_refuses_it_with_403_and_says_why(revised, maker_checker):
    client = APIClient()
    client.force_authenticate(maker_checker)

    response = client.post("/api/v1/loaders/SALES-DAILY/approve/", {}, format="json")

    assert response.status_code == 403
    assert REVISES in str(response.json())


def test_authors_are_carried_through_several_rejections(revised, maker_checker, editor, editor2, approver, approver2):
    services.loader_version_reject(user=approver2, version=version(revised, 3), reason="still too long")
    services.loader_edit(user=editor, loader=revised, data={"grace_minutes": 22})
    v4 = submit(editor, revised)

    for author in (maker_checker, editor2):
        assert "approve" not in services.loader_version_allowed_actions(user=author, version=v4)
    assert services.loader_version_approve(user=approver, version=v4).state == VersionState.ACTIVE


def test_authors_of_content_approved_since_count_no_more(revised, maker_checker, editor2, approver2):
    services.loader_version_approve(user=approver2, version=version(revised, 3))  # A's content, checked by another
    services.loader_edit(user=editor2, loader=revised, data={"grace_minutes": 30})
    v4 = submit(editor2, revised)

    assert v4.based_on == version(revised, 3)
    assert services.loader_version_approve(user=maker_checker, version=v4).state == VersionState.ACTIVE
