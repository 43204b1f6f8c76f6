from django.apps import AppConfig


class OncallConfig(AppConfig):
    """On-call: schedules (rotations in layers, overrides), who is on call when, people's contact
    methods and paging preferences, calendar feeds, and the SMS / voice providers that page them.

    It sits between integrations (whose routing asks who is on call and whose SMS and voice
    channels page through its providers) and incidents: it imports loaders only."""

    name = "oncall"
    verbose_name = "On-call"
