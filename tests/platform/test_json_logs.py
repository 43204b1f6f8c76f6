"""LOG_FORMAT=json: one JSON object per line with the request id and correlation id, secrets
scrubbed, and the request log written by the app (gunicorn's access log is off then)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from celery import shared_task

from etl_monitor.log_filters import CORRELATION_ID, REQUEST_ID, JsonFormatter, RequestContextFilter


@pytest.fixture
def json_log(settings):
    """The root logger writing JSON lines into a buffer, as the console handler does in production."""
    settings.LOG_FORMAT = "json"
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_request_is_logged_as_one_json_line_with_its_ids(client, db, json_log):
    response = client.get("/healthz/nope", HTTP_X_REQUEST_ID="ingress-42", HTTP_X_CORRELATION_ID="run-7")
    assert response["X-Request-ID"] == "ingress-42"
    lines = [line for line in json_log() if line["logger"] == "etl_monitor.requests"]
    assert len(lines) == 1
    line = lines[0]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz/nope", 404)
    assert (line["request_id"], line["correlation_id"]) == ("ingress-42", "run-7")
    assert line["level"] == "INFO" and line["time"].endswith("+00:00") and line["duration_ms"] >= 0


def test_a_request_without_an_id_gets_a_new_one_and_a_forged_one_is_replaced(client, db, json_log):
    fresh = client.get("/api/v1/loaders/")["X-Request-ID"]
    forged = client.get("/api/v1/loaders/", HTTP_X_REQUEST_ID='x" , "level": "CRITICAL')["X-Request-ID"]
    assert len(fresh) == 32 and len(forged) == 32 and fresh != forged
    assert {line["request_id"] for line in json_log() if line["logger"] == "etl_monitor.requests"} == {fresh, forged}


def test_credentials_in_the_path_and_in_exceptions_are_scrubbed_and_the_line_stays_json(client, db, json_log):
    client.get("/ping/sEcReTkEy123/SOME-LOADER?secret=hunter2")
    try:
        raise ValueError('connect to postgres://app:pa55word@db/etl failed "quoted"')
    except ValueError:
        logging.getLogger("etl_monitor.test").exception("boom")
    text = json.dumps(json_log())
    assert "sEcReTkEy123" not in text and "hunter2" not in text and "pa55word" not in text
    failure = next(line for line in json_log() if line["logger"] == "etl_monitor.test")
    assert "ValueError" in failure["exception"] and '"quoted"' in failure["exception"]


def test_ids_do_not_leak_from_one_request_into_the_next_log_line(client, db, json_log):
    client.get("/healthz", HTTP_X_REQUEST_ID="first")
    logging.getLogger("etl_monitor.test").info("between requests")
    between = next(line for line in json_log() if line["message"] == "between requests")
    assert (between["request_id"], between["correlation_id"]) == ("-", "-")
    assert REQUEST_ID.get() == "-" and CORRELATION_ID.get() == "-"


@shared_task(name="tests.platform.log_something")
def log_something() -> None:
    logging.getLogger("etl_monitor.test").info("inside the task")


def test_a_task_logs_under_its_own_id(db, json_log):
    result = log_something.apply()  # the same task_prerun/postrun signals as in a worker
    logging.getLogger("etl_monitor.test").info("after the task")
    lines = {line["message"]: line for line in json_log()}
    assert lines["inside the task"]["request_id"] == f"task-{result.id}"
    assert lines["after the task"]["request_id"] == "-"


SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'etl_monitor.settings'; django.setup()"


def test_an_unknown_log_format_stops_the_settings(tmp_path):
    import subprocess
    import sys

    from tests.platform.test_startup_refusal import ROOT

    env = {"PATH": "/usr/bin:/bin", "LOG_FORMAT": "xml", "ETL_MONITOR_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='etl_monitor.settings'; django.setup()",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json, not 'xml'." in result.stderr
