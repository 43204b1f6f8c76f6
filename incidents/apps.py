from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Detection rules, incidents and silences (incident detection issue)."""

    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        # Built-in kinds register themselves on import.
        from etl_monitor.config import config_section_register
        from incidents.config import DetectionRulesSection
        from incidents.kinds import anomaly, etl, freshness  # noqa: F401
        from signals_app.services import failure_ingested

        config_section_register(DetectionRulesSection())

        failure_ingested.connect(_on_failure, dispatch_uid="incidents-fast-path")


def _on_failure(sender: object, loader_id: int, **kwargs: object) -> None:
    from incidents.tasks import failure_reported

    failure_reported(loader_id)
