"""Every periodic task of the platform, declared in one place.

django-celery-beat's DatabaseScheduler copies these entries into its tables at
start-up, so admins see (and may pause) them under "Periodic tasks". Each entry
says why it exists; later capabilities add their ticks here.
"""

from datetime import timedelta

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    # Proves the worker and the scheduler are alive end to end; /readyz reports
    # the age of the last beat so an operator sees a stuck scheduler at once.
    "platform-heartbeat": {
        "task": "etl_monitor.tasks.platform_heartbeat",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
    # Detection: every 15 s, enqueue the rules whose own interval has elapsed, in batches
    # (DETECTION_BATCH_SIZE); each rule is claimed with SKIP LOCKED so it never runs twice at once.
    "detection-tick": {
        "task": "incidents.tasks.detection_tick",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    # Signals: partitions for the coming days (PostgreSQL) and the retention limit
    # (SIGNAL_RETENTION_DAYS). Hourly rather than daily so a missed run costs little;
    # both steps are idempotent and cheap when there is nothing to do.
    "signals-maintenance": {
        "task": "signals_app.tasks.signals_maintenance",
        "schedule": timedelta(hours=1),
    },
    # Previews never confirmed keep their checked rows (encrypted; they may hold
    # secrets) only for a day; finished exports keep their file LOADER_EXPORT_KEEP_HOURS.
    "loader-import-cleanup": {
        "task": "loaders.tasks.loader_import_cleanup",
        "schedule": timedelta(hours=1),
    },
    # Rule backtests run as jobs: fail those the queue lost (never left RUNNING for ever) and delete
    # those that ended BACKTEST_JOB_KEEP_DAYS ago (their results can be large).
    "backtest-jobs-cleanup": {
        "task": "incidents.tasks.backtest_jobs_cleanup",
        "schedule": timedelta(hours=1),
    },
    # Notifications: the outbox sweep resumes deliveries whose worker died mid-send and
    # sends due ones whose task was lost; escalation notifies the next tier of incidents
    # nobody acknowledged within their rule's escalation timeout.
    "notifications-recover": {
        "task": "integrations.tasks.deliveries_recover",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
    "notifications-escalate": {
        "task": "integrations.tasks.escalations_run",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
    # Jira webhook receipts: kept JIRA_WEBHOOK_RECEIPT_DAYS for the admin and as replay protection
    # (a body seen is a duplicate); pruned only once their event is outside the accepted window.
    "jira-webhook-receipts-prune": {
        "task": "integrations.tasks.jira_receipts_prune",
        "schedule": timedelta(hours=1),
    },
    # Twilio webhook receipts (replay protection): kept twice PAGE_ANSWER_HOURS, after which a
    # replayed request names a page that can no longer be answered.
    "twilio-webhook-receipts-prune": {
        "task": "integrations.tasks.twilio_receipts_prune",
        "schedule": timedelta(hours=1),
    },
    # Statistics capture: on the wall clock's 5-minute marks, 30 s late so the sources have
    # ingested the bucket's last samples; each capture stores the bucket that just ended
    # (CAPTURE_BUCKET_SECONDS), keyed so a rerun or a second scheduler stores nothing twice.
    "statistics-capture": {
        "task": "integrations.tasks.captures_run",
        "schedule": crontab(minute="*/5"),
        "options": {"countdown": 30, "expires": 240},
    },
}
