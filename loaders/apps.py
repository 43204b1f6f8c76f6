from django.apps import AppConfig


class LoadersConfig(AppConfig):
    """The loader registry with versioned four-eyes approval."""

    name = "loaders"
    verbose_name = "Loader registry"

    def ready(self) -> None:
        from etl_monitor.config import config_section_register
        from loaders.config import LoadersSection, TeamsSection

        config_section_register(TeamsSection())
        config_section_register(LoadersSection())
