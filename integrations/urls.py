from django.urls import path

from integrations import slack_app, twilio_webhooks, views

urlpatterns = [
    path("jira/webhook/", views.jira_webhook, name="jira-webhook"),
    path("jira/webhook", views.jira_webhook),  # a POST cannot follow the slash redirect
    path("alertmanager/webhook/", views.alertmanager_webhook, name="alertmanager-webhook"),
    path("alertmanager/webhook", views.alertmanager_webhook),
    # Twilio: replies to SMS pages, key presses on paging calls, delivery status (signed by Twilio).
    path("twilio/sms/", twilio_webhooks.sms_inbound, name="twilio-sms"),
    path("twilio/voice/<int:page_id>/", twilio_webhooks.voice_answer, name="twilio-voice"),
    path("twilio/voice/<int:page_id>/gather/", twilio_webhooks.voice_gather, name="twilio-voice-gather"),
    path("twilio/status/", twilio_webhooks.status_callback, name="twilio-status"),
    # Slack app: button clicks and the /etl-monitor command (signed with SLACK_SIGNING_SECRET).
    path("slack/interactivity/", slack_app.slack_interactivity, name="slack-interactivity"),
    path("slack/commands/", slack_app.slack_command, name="slack-command"),
]
