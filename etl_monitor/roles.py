"""The five roles of PRODUCT.md as Django groups, and the permissions each holds.

Groups (not hard-coded user flags) so that deployments map SSO/LDAP groups onto
them. Code checks *permissions* (``user.has_perm``), never group names, so a
site may also grant a single permission to a single user.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS


class Role:
    VIEWER = "Viewer"
    EDITOR = "Editor"
    APPROVER = "Approver"
    OPERATOR = "Operator"
    ADMIN = "Admin"

    ALL = (VIEWER, EDITOR, APPROVER, OPERATOR, ADMIN)


# The apps whose models the roles govern. Admin additionally holds every permission.
DOMAIN_APPS = ("loaders", "signals_app", "incidents", "integrations", "oncall")

# Views of the domain apps not every role has: people's phone numbers and paging preferences
# (each person manages their own through the on-call services; Operators see contact methods).
PRIVATE_VIEWS = {
    "oncall.view_contactmethod",
    "oncall.view_historicalcontactmethod",
    "oncall.view_pagingpreference",
    "oncall.view_historicalpagingpreference",
    "oncall.view_calendartoken",
}

# Explicit grants beyond "view everything in the domain apps" (which every role has).
ROLE_GRANTS: dict[str, set[str]] = {
    Role.VIEWER: set(),
    Role.EDITOR: {
        "loaders.add_loader",
        "loaders.change_loader",
        "loaders.add_loaderversion",
        "loaders.change_loaderversion",
        "loaders.submit_loaderversion",
        "loaders.add_team",
        "loaders.change_team",
        "loaders.add_tag",
        "loaders.change_tag",
        "signals_app.add_ingesttoken",
        "signals_app.change_ingesttoken",
        "signals_app.add_signal",
        "signals_app.add_run",
        "signals_app.change_run",
    },
    Role.APPROVER: {"loaders.approve_loaderversion"},
    Role.OPERATOR: {
        "incidents.change_incident",
        "incidents.add_incidentevent",
        "incidents.add_silence",
        "incidents.change_silence",
        "incidents.delete_silence",
        "integrations.change_delivery",  # retry a delivery that gave up
        # On-call: schedules, their layers and overrides; who can be reached how.
        "oncall.add_schedule",
        "oncall.change_schedule",
        "oncall.add_rotation",
        "oncall.change_rotation",
        "oncall.delete_rotation",
        "oncall.add_rotationmember",
        "oncall.change_rotationmember",
        "oncall.delete_rotationmember",
        "oncall.add_override",
        "oncall.change_override",
        "oncall.delete_override",
        "oncall.view_contactmethod",
    },
}


def _ensure_permissions(apps: Any, using: str) -> None:
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # Historical app configs carry no models_module; create_permissions skips those.
        had_module = getattr(app_config, "models_module", None)
        app_config.models_module = had_module or True
        create_permissions(app_config, verbosity=0, apps=apps, using=using)
        app_config.models_module = had_module


def roles_sync(apps: Any = global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the role groups and give each exactly its permissions (idempotent)."""
    _ensure_permissions(apps, using)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.using(using).select_related("content_type")
    by_name = {f"{p.content_type.app_label}.{p.codename}": p for p in permissions}
    views = {
        name for name in by_name if name.split(".")[0] in DOMAIN_APPS and ".view_" in name and name not in PRIVATE_VIEWS
    }

    for role in Role.ALL:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        if role == Role.ADMIN:
            wanted = set(by_name)
        else:
            wanted = views | {name for name in ROLE_GRANTS[role] if name in by_name}
        group.permissions.set([by_name[name] for name in sorted(wanted)])


def roles_sync_after_migrate(
    sender: Any, using: str = DEFAULT_DB_ALIAS, apps: Any = global_apps, **kwargs: Any
) -> None:
    roles_sync(apps=apps, using=using)


def users_staff_sync(user_ids: Any) -> None:
    """Staff status follows the roles: someone given a role may sign in to the admin (every
    page of it checks the role's permissions), someone left with none may not. Superusers keep
    theirs. Django's "staff status" box still refuses the admin to a person explicitly."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(pk__in=list(user_ids))
    users.filter(is_staff=False, groups__name__in=Role.ALL).update(is_staff=True)
    users.filter(is_staff=True, is_superuser=False).exclude(groups__name__in=Role.ALL).update(is_staff=False)


def user_groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """``m2m_changed`` of User.groups, from either side (a user's form or a group's)."""
    if reverse:  # ``instance`` is a group; ``pk_set`` its users (a clear: read them before)
        if instance.name not in Role.ALL:
            return
        if action == "pre_clear":
            instance._users_cleared = list(instance.user_set.values_list("pk", flat=True))
            return
        user_ids = instance.__dict__.pop("_users_cleared", []) if action == "post_clear" else pk_set
    else:
        user_ids = {instance.pk}
    if action in ("post_add", "post_remove", "post_clear") and user_ids:
        users_staff_sync(user_ids)
        if not reverse:
            instance.refresh_from_db(fields=["is_staff"])


def user_roles(user: Any) -> list[str]:
    return sorted(user.groups.filter(name__in=Role.ALL).values_list("name", flat=True))


def system_user_get(username: str, role: str) -> Any:
    """A non-login account that acts for the platform (config as code, demo data).

    It holds exactly one role, has no usable password, and is recorded in
    history like a person, so "who changed this?" always has an answer.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get(name=role))
    # Drop Django's per-instance permission cache so the new group counts at once.
    for attr in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(attr, None)
    return user
