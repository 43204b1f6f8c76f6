from django.urls import path

from integrations import views

urlpatterns = [
    path("jira/webhook/", views.jira_webhook, name="jira-webhook"),
    path("jira/webhook", views.jira_webhook),  # a POST cannot follow the slash redirect
    path("alertmanager/webhook/", views.alertmanager_webhook, name="alertmanager-webhook"),
    path("alertmanager/webhook", views.alertmanager_webhook),
]
