"""The checklist's buttons, under /admin/onboarding/ (admin pages: its login and session)."""

from django.urls import path

from onboarding import views

app_name = "onboarding"
urlpatterns = [
    path("steps/<str:step>/skip/", views.skip_view, name="skip"),
    path("steps/<str:step>/undo-skip/", views.skip_undo_view, name="skip-undo"),
    path("hide/", views.dismiss_view, name="dismiss"),
    path("show/", views.restore_view, name="restore"),
]
