from django.apps import AppConfig


class SignalsAppConfig(AppConfig):
    """Runs and signals sent by ETL jobs (signal ingestion issue)."""

    name = "signals_app"
    verbose_name = "Runs and signals"
