from rest_framework.routers import SimpleRouter

from incidents.api.views import BacktestJobViewSet, IncidentViewSet, RuleViewSet, SilenceViewSet

router = SimpleRouter()
router.register("rules", RuleViewSet, basename="rule")
router.register("silences", SilenceViewSet, basename="silence")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("backtests", BacktestJobViewSet, basename="backtest")

urlpatterns = router.urls
