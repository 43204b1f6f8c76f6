"""gunicorn settings for ETL Monitor (``gunicorn -c deploy/gunicorn.conf.py etl_monitor.wsgi``)."""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus multiprocess mode: every worker writes its metric values under this
# directory and /metrics adds them up (see signals_app/metrics.py). The directory
# is emptied when gunicorn starts, so counters from a previous run don't linger.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(os.environ.get("ETL_MONITOR_VAR_DIR", "var"), "prometheus")
)


def on_starting(server: object) -> None:
    import shutil

    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
