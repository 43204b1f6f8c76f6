"""The operations pages live under /admin/ (they are admin pages: its login, header and look) and
are matched before the admin's own URLs, so /admin/ itself is the overview."""

from django.urls import path

from operations import views

admin_urlpatterns = [
    path("", views.overview_view, name="overview"),
    path("models/", views.models_index_view, name="models"),
    path("ops/loaders/<str:loader_code>/", views.loader_page_view, name="loader"),
    path("ops/loaders/<str:loader_code>/chart.json", views.loader_chart, name="loader-chart"),
    path("ops/loaders/<str:loader_code>/anomaly/<int:rule_id>.json", views.loader_band, name="loader-band"),
]
