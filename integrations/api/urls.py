from rest_framework.routers import SimpleRouter

from integrations.api.views import ChannelViewSet, DeliveryViewSet, NotificationRuleViewSet

router = SimpleRouter()
router.register("notification-rules", NotificationRuleViewSet, basename="notification-rule")
router.register("channels", ChannelViewSet, basename="channel")
router.register("deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = router.urls
