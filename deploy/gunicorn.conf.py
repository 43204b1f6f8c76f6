"""gunicorn settings for ETL Monitor (``gunicorn -c deploy/gunicorn.conf.py etl_monitor.wsgi``)."""

import os
import re
from typing import Any

from gunicorn.glogging import Logger

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
# With LOG_FORMAT=json the app writes the request log itself, as JSON with the request id
# (etl_monitor.middleware.RequestContextMiddleware); gunicorn's plain access log would be a second line.
accesslog = None if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json" else "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
_var_dir = os.environ.get("ETL_MONITOR_VAR_DIR", "var")
# gunicornc's control socket goes to the writable var directory (the image's root filesystem is
# read-only; gunicorn's default is under $HOME, which the container user does not own).
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", os.path.join(_var_dir, "gunicorn.ctl"))


class RedactingLogger(Logger):
    """gunicorn's logger, with credentials masked in the access log: the request line, path and
    query (ping keys, ``?secret=``/``?token=``/``?key=`` values) and the referer go through
    ``etl_monitor.log_filters.log_redact``; header and environ atoms naming a credential
    (Authorization, Cookie, …) are masked whole. Only the atoms the format uses are touched."""

    CREDENTIAL_ATOM_RE = re.compile(r"(?i)authorization|cookie|secret|token|signature|api[-_]?key|password")

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict:
        # Imported here: the config file is read before gunicorn puts the project on sys.path.
        from etl_monitor.log_filters import MASK, log_redact

        atoms = super().atoms(resp, req, environ, request_time)
        used = {name.lower() for name in re.findall(r"%\(([^)]+)\)", self.cfg.access_log_format)}
        for name, value in atoms.items():
            if name.lower() not in used or not isinstance(value, str):
                continue
            if name.startswith("{") and self.CREDENTIAL_ATOM_RE.search(name):
                atoms[name] = MASK
            else:
                atoms[name] = log_redact(value)
        return atoms


logger_class = RedactingLogger

# Prometheus multiprocess mode: every worker writes its metric values under this
# directory and /metrics adds them up (see signals_app/metrics.py). The directory
# is emptied when gunicorn starts, so counters from a previous run don't linger.
_metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(_var_dir, "prometheus"))


def on_starting(server: object) -> None:
    import shutil

    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
