from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.api.views import (
    CaptureViewSet,
    ChannelViewSet,
    DataSourceViewSet,
    DeliveryViewSet,
    IncidentEscalateView,
    NotificationRuleViewSet,
)

router = SimpleRouter()
router.register("notification-rules", NotificationRuleViewSet, basename="notification-rule")
router.register("channels", ChannelViewSet, basename="channel")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("data-sources", DataSourceViewSet, basename="data-source")
router.register("captures", CaptureViewSet, basename="capture")

urlpatterns = [
    # An incident's action that routing owns, beside the incidents API's own (acknowledge, resolve…).
    path("incidents/<int:pk>/escalate/", IncidentEscalateView.as_view(), name="incident-escalate"),
    *router.urls,
]
