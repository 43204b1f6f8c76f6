from django.apps import AppConfig


class LoadersConfig(AppConfig):
    """The loader registry with versioned four-eyes approval."""

    name = "loaders"
    verbose_name = "Loader registry"

    def ready(self) -> None:
        from etl_monitor.config import config_section_register
        from etl_monitor.protection import protection_register
        from loaders.config import LoadersSection, TeamsSection
        from loaders.models import Loader, LoaderVersion

        protection_register(
            LoaderVersion, fields=LoaderVersion.CONTRACT_FIELDS, secret_fields=LoaderVersion.SECRET_FIELDS
        )
        protection_register(Loader, fields=("name", "owner", "tags", "is_paused"))
        config_section_register(TeamsSection())
        config_section_register(LoadersSection())
