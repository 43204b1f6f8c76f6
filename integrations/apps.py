from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Outbound channels and inbound webhooks (Slack, email, Jira, Prometheus, Elasticsearch)."""

    name = "integrations"
    verbose_name = "Integrations"
