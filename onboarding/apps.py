from django.apps import AppConfig


class OnboardingConfig(AppConfig):
    """The "Get started" checklist on the overview: seven steps read from live state, the first
    time each was seen done, who hid the checklist, and the ``onboarding_step_done`` gauge.

    It reads every app and no app imports it: the top import layer. The overview shows it through
    this app's template tag, and the loader page's visits reach it through this app's middleware."""

    name = "onboarding"
    verbose_name = "Onboarding"

    def ready(self) -> None:
        # /metrics (signals_app) cannot import this app: it is handed the collector instead.
        from onboarding.metrics import OnboardingCollector
        from signals_app.metrics import state_collector_register

        state_collector_register(OnboardingCollector())
