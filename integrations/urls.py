from django.urls import path

from integrations import slack_app, views

urlpatterns = [
    path("jira/webhook/", views.jira_webhook, name="jira-webhook"),
    path("jira/webhook", views.jira_webhook),  # a POST cannot follow the slash redirect
    path("alertmanager/webhook/", views.alertmanager_webhook, name="alertmanager-webhook"),
    path("alertmanager/webhook", views.alertmanager_webhook),
    path("slack/interactivity/", slack_app.slack_interactivity, name="slack-interactivity"),
    path("slack/commands/", slack_app.slack_command, name="slack-command"),
]
