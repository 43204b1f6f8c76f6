from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Detection rules, incidents and silences (incident detection issue)."""

    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        # Built-in kinds register themselves on import.
        from incidents.kinds import etl  # noqa: F401
