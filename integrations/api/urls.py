from rest_framework.routers import SimpleRouter

from integrations.api.views import (
    CaptureViewSet,
    ChannelViewSet,
    DataSourceViewSet,
    DeliveryViewSet,
    NotificationRuleViewSet,
)

router = SimpleRouter()
router.register("notification-rules", NotificationRuleViewSet, basename="notification-rule")
router.register("channels", ChannelViewSet, basename="channel")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("data-sources", DataSourceViewSet, basename="data-source")
router.register("captures", CaptureViewSet, basename="capture")

urlpatterns = router.urls
