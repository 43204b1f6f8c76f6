from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """The operational read side: the overview of every loader's health and each loader's page.

    It only reads (loaders, runs, signals, incidents) and owns no model, so it sits above
    incidents in the import layers and nothing below imports it."""

    name = "operations"
    verbose_name = "Operations"
