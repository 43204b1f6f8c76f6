from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """The operational read side: the overview of every loader's health and each loader's page.

    It only reads (loaders, runs, signals, incidents) and owns no model, so it sits above
    incidents in the import layers and nothing below imports it."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        # /metrics (signals_app) cannot import this app: it is handed the state collector instead.
        from operations.metrics import StateCollector
        from operations.platform_metrics import PlatformHealthCollector
        from signals_app.metrics import state_collector_register

        state_collector_register(StateCollector())
        state_collector_register(PlatformHealthCollector())
