from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EtlMonitorConfig(AppConfig):
    """The platform itself: roles, health, declarative config, management commands."""

    name = "etl_monitor"
    verbose_name = "Platform"

    def ready(self) -> None:
        from etl_monitor import roles

        # Permissions of every app exist only after migrate; syncing the role
        # groups then keeps them complete as later apps add models.
        post_migrate.connect(roles.roles_sync_after_migrate, sender=self)
