from rest_framework.routers import SimpleRouter

from incidents.api.views import IncidentViewSet, RuleViewSet, SilenceViewSet

router = SimpleRouter()
router.register("rules", RuleViewSet, basename="rule")
router.register("silences", SilenceViewSet, basename="silence")
router.register("incidents", IncidentViewSet, basename="incident")

urlpatterns = router.urls
