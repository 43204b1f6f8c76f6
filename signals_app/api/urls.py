from django.urls import path
from rest_framework.routers import SimpleRouter

from signals_app.api.views import LoaderTokenViewSet, RunViewSet, SignalViewSet, WhoAmIView

router = SimpleRouter()
router.register("signals", SignalViewSet, basename="signal")
router.register("runs", RunViewSet, basename="run")
router.register("whoami", WhoAmIView, basename="whoami")

tokens = LoaderTokenViewSet.as_view({"get": "list", "post": "create"})
token_detail = LoaderTokenViewSet.as_view({"delete": "destroy"})

urlpatterns = [
    path("loaders/<str:loader_code>/tokens/", tokens, name="loader-tokens"),
    path("loaders/<str:loader_code>/tokens/<int:pk>/", token_detail, name="loader-token-detail"),
    *router.urls,
]
