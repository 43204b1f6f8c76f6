"""Permissions: the API permission classes (every endpoint needs an authenticated user with the
model's permission) and the one check every service runs before it writes."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import DjangoModelPermissions

from etl_monitor.errors import PermissionRefused


class RoleModelPermissions(DjangoModelPermissions):
    """Like DRF's DjangoModelPermissions, but reading needs ``view_<model>`` too
    (a user without any role sees nothing)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class RoleViewPermission(RoleModelPermissions):
    """Only ``view_<model>`` whatever the method: for actions whose service checks the rest
    (submit, approve, reject…), so the refusal message comes from the business rule."""

    def get_required_permissions(self, method: str, model_cls: Any) -> list[str]:
        return super().get_required_permissions("GET", model_cls)


def permission_require(user: Any, perm: str, doing: str) -> None:
    """Refuse unless ``user`` is an active account holding ``perm`` (``"app.codename"``).

    ``doing`` finishes the sentence the user reads: "Your role does not allow you to <doing>."
    Services call this, so the admin, the API, the importer and config files all obey one rule."""
    if not (user and user.is_active and user.has_perm(perm)):
        raise PermissionRefused(f"Your role does not allow you to {doing}.")
