from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Detection rules, incidents and silences (incident detection issue)."""

    name = "incidents"
    verbose_name = "Incidents"
