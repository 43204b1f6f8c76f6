"""A tiny, dependency-free client for ETL jobs (Python standard library only).

Copy this file into your ETL project or import it from the ETL Monitor package::

    from etl_monitor_client import Monitor   # or: from signals_app.client import Monitor

    monitor = Monitor("https://etl-monitor.example.com", token="etlm_…")  # or ETL_MONITOR_URL / ETL_MONITOR_TOKEN
    with monitor.run("SALES-DAILY") as run:
        rows = load_sales()
        run.signal("rows_loaded", len(rows), metric_type="ROW_COUNT")
        run.rows(read=len(rows), written=len(rows))

The context manager starts a run, finishes it SUCCEEDED when the block ends,
or FAILED (with the error) when it raises — and re-raises your exception.
Monitoring never breaks the ETL job: every call retries with backoff
(honouring ``Retry-After``), then gives up quietly and logs a warning.
Every signal carries an idempotency key, so a retried request is stored once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Monitor", "MonitoredRun"]

logger = logging.getLogger("etl_monitor_client")
RETRY_STATUSES = {429, 500, 502, 503, 504}


class Monitor:
    """Talks to ETL Monitor with one loader's ingest token."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = (base_url or os.environ.get("ETL_MONITOR_URL", "")).rstrip("/")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("ETL Monitor URL must start with http:// or https://")
        self.token = token or os.environ.get("ETL_MONITOR_TOKEN", "")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    # --- public ---------------------------------------------------------------------

    def signal(
        self,
        loader_code: str,
        key: str,
        value: Any = None,
        *,
        status: str = "SUCCESS",
        metric_type: str = "CUSTOM",
        **extra: Any,
    ) -> bool:
        """Send one signal. Returns True when the platform stored it."""
        item = {
            "loader_code": loader_code,
            "signal_key": key,
            "signal_value": value,
            "validation_status": status,
            "metric_type": metric_type,
            "idempotency_key": str(uuid.uuid4()),
            **extra,
        }
        return self._send("POST", "/api/v1/signals/", item) is not None

    def signals(self, items: list[dict[str, Any]]) -> bool:
        """Send a batch (all or nothing on the platform side)."""
        batch = [{"idempotency_key": str(uuid.uuid4()), **item} for item in items]
        return self._send("POST", "/api/v1/signals/", batch) is not None

    @contextmanager
    def run(self, loader_code: str, *, correlation_id: str | None = None) -> Iterator[MonitoredRun]:
        run = MonitoredRun(self, loader_code, correlation_id)
        run.start()
        try:
            yield run
        except BaseException as exc:
            run.finish("FAILED", error=exc)
            raise
        else:
            run.finish("SUCCEEDED")

    # --- plumbing ------------------------------------------------------------------------

    def _send(self, method: str, path: str, payload: Any) -> Any | None:
        """One request with retries; the parsed answer, or None after giving up (never raises)."""
        if not self.base_url or not self.token:
            logger.warning("ETL Monitor is not configured (ETL_MONITOR_URL / ETL_MONITOR_TOKEN); nothing sent")
            return None
        body = json.dumps(payload).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.base_url + path,
                data=body,
                method=method,
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - our URL
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode("utf-8", "replace")
                if exc.code not in RETRY_STATUSES:
                    logger.warning("ETL Monitor refused %s %s (%s): %s", method, path, exc.code, detail)
                    return None
                retry_after = exc.headers.get("Retry-After")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                logger.info("ETL Monitor unreachable (%s); attempt %s", type(exc).__name__, attempt + 1)
            if attempt < self.retries:
                delay = float(retry_after) if retry_after and retry_after.isdigit() else self.backoff * 2**attempt
                time.sleep(min(delay, 30.0) * (1 + random.random() / 4))
        logger.warning("ETL Monitor: giving up on %s %s after %s attempts", method, path, self.retries + 1)
        return None


class MonitoredRun:
    """One run of a loader, as seen from inside the ETL job."""

    def __init__(self, monitor: Monitor, loader_code: str, correlation_id: str | None) -> None:
        self.monitor = monitor
        self.loader_code = loader_code
        self.run_id = str(uuid.uuid4())  # ours, so retries of the start never create two runs
        self.correlation_id = correlation_id or self.run_id
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        self.monitor._send(
            "POST",
            "/api/v1/runs/",
            {"loader_code": self.loader_code, "run_id": self.run_id, "correlation_id": self.correlation_id},
        )

    def signal(self, key: str, value: Any = None, **kwargs: Any) -> bool:
        return self.monitor.signal(
            self.loader_code, key, value, run_id=self.run_id, correlation_id=self.correlation_id, **kwargs
        )

    def rows(self, *, read: int | None = None, written: int | None = None, rejected: int | None = None) -> None:
        """Row counts reported when the run finishes."""
        for name, value in (("rows_read", read), ("rows_written", written), ("rows_rejected", rejected)):
            if value is not None:
                self.counts[name] = int(value)

    def finish(self, status: str, *, error: BaseException | None = None) -> None:
        payload: dict[str, Any] = {"status": status, **self.counts}
        if error is not None:
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            payload["error_text"] = text[-4000:]
        self.monitor._send("PATCH", f"/api/v1/runs/{self.run_id}/", payload)
