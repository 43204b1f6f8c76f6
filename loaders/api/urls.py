from rest_framework.routers import SimpleRouter

from loaders.api.views import LoaderViewSet

router = SimpleRouter()
router.register("loaders", LoaderViewSet, basename="loader")

urlpatterns = router.urls
