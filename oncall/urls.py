from django.urls import path

from oncall import views

app_name = "oncall"

urlpatterns = [
    path("calendar/<str:token>.ics", views.calendar_feed_view, name="calendar-feed"),
]
