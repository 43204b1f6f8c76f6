"""The notifications wing: who is told about an incident, through which channel, and how.

Flow: every incident timeline entry is recorded with ``incident_event_recorded`` inside its
transaction; ``routing.on_incident_event`` routes it (severity → notification rule
(``rules``) → tier → channels and targets) and queues one Delivery per message in the
``outbox`` in that same transaction, its payload rendered then (``payloads`` says what a
message holds; each channel's transport renders it for its medium). After commit a Celery
task sends the deliveries (``outbox.deliveries_send``) through their channel's transport
(``transports``: one module per channel kind); failures retry with exponential backoff and
jitter, permanent errors stop at once and mark the channel unhealthy (``channels``: every
write of a channel). ``outbox.deliveries_recover`` (beat) picks up deliveries whose task was
lost or whose worker died mid-send; ``routing.escalations_run`` (beat) notifies the next tier
of incidents nobody acknowledged in time.
"""
