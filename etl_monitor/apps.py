from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EtlMonitorConfig(AppConfig):
    """The platform itself: roles, health, declarative config, management commands."""

    name = "etl_monitor"
    verbose_name = "Platform"

    def ready(self) -> None:
        from etl_monitor import checks, roles  # noqa: F401 - checks registers the deploy check

        # Permissions of every app exist only after migrate; syncing the role
        # groups then keeps them complete as later apps add models.
        post_migrate.connect(roles.roles_sync_after_migrate, sender=self)

        from django.db.models.signals import m2m_changed, post_delete, post_save

        from etl_monitor.models import FieldProtection
        from etl_monitor.protection import protection_rules_changed

        post_save.connect(protection_rules_changed, sender=FieldProtection)
        post_delete.connect(protection_rules_changed, sender=FieldProtection)
        m2m_changed.connect(protection_rules_changed, sender=FieldProtection.exempt_groups.through)

        from django.contrib.auth import get_user_model

        # A role is enough to sign in to the admin: staff status follows the roles.
        m2m_changed.connect(
            roles.user_groups_changed, sender=get_user_model().groups.through, dispatch_uid="roles.staff"
        )
