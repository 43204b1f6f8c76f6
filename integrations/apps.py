from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Outbound channels and inbound webhooks (Slack, email, Jira, Prometheus, Elasticsearch)."""

    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from etl_monitor.config import config_section_register
        from etl_monitor.protection import protection_register
        from incidents.events import incident_event_recorded, incident_events_recorded
        from integrations import approvals, jira, tasks  # noqa: F401 — tasks: the outbox queues its tasks by name
        from integrations.config import (
            CapturesSection,
            ChannelsSection,
            DataSourcesSection,
            NotificationRulesSection,
        )
        from integrations.metrics import OutboxCollector
        from integrations.models import Channel
        from integrations.notifications import routing
        from integrations.notifications.transports import transports_load
        from integrations.sources import kinds  # noqa: F401 — registers the rule kinds over the sources
        from loaders.services import loader_version_transitioned
        from signals_app.metrics import state_collector_register

        transports_load()  # one module per channel kind, each registering its transport (Jira's: jira.py)
        # Notifications first, then Jira: each routes the entry in a savepoint of its own.
        incident_event_recorded.connect(routing.on_incident_event, dispatch_uid="integrations.notifications")
        incident_event_recorded.connect(jira.on_incident_event, dispatch_uid="integrations.jira")
        # Entries written in bulk (a detection storm) are announced once, as a list.
        incident_events_recorded.connect(routing.on_incident_events, dispatch_uid="integrations.notifications")
        incident_events_recorded.connect(jira.on_incident_events, dispatch_uid="integrations.jira")
        loader_version_transitioned.connect(approvals.on_version_transitioned, dispatch_uid="integrations.approvals")
        protection_register(Channel, fields=(), secret_fields=("secret",))
        config_section_register(ChannelsSection())
        config_section_register(DataSourcesSection())
        config_section_register(CapturesSection())
        config_section_register(NotificationRulesSection())
        state_collector_register(OutboxCollector())  # the backlog on /metrics (signals_app cannot import us)
