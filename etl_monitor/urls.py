from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from etl_monitor import health
from etl_monitor.auth_api import ApiTokenViewSet, TokenView
from etl_monitor.schema import SchemaView
from operations import views as operations_views
from operations.urls import admin_urlpatterns as operations_urls
from signals_app.api.views import ping
from signals_app.views import metrics_view

admin.site.site_title = settings.ETL_MONITOR_SITE_TITLE
admin.site.site_header = settings.ETL_MONITOR_SITE_HEADER
admin.site.index_title = "Registry, runs and incidents"


auth_router = SimpleRouter()
auth_router.register("auth/tokens", ApiTokenViewSet, basename="api-token")

api_v1 = [
    path("auth/token/", TokenView.as_view(), name="auth-token"),
    *auth_router.urls,
    path("", include("signals_app.api.urls")),
    path("", include("incidents.api.urls")),
    path("", include("integrations.api.urls")),
    path("", include("loaders.api.urls")),
    path("", include("oncall.api.urls")),
]

urlpatterns = [
    path("", operations_views.overview_view, name="home"),
    # Before the admin's own URLs: /admin/ is the operations overview, the stock index is /admin/models/.
    path("admin/", include((operations_urls, "operations"), namespace="operations")),
    path("admin/onboarding/", include("onboarding.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/auth/", include("rest_framework.urls")),  # login for the browsable API
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("api/redoc/", login_required(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
    path("ping/<str:key>/<str:loader_code>", ping, name="ping"),
    path("ping/<str:key>/<str:loader_code>/<str:action>", ping, name="ping-action"),
    # The same with a trailing slash, as people and tools often write URLs (no redirect:
    # curl -X POST would lose its body).
    path("ping/<str:key>/<str:loader_code>/", ping),
    path("ping/<str:key>/<str:loader_code>/<str:action>/", ping),
    path("integrations/", include("integrations.urls")),
    path("oncall/", include("oncall.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
