"""The running platform's logs (gunicorn's access and error log, the worker's, beat's) and the
emails it sent hold no credential: no ping key (it is in the URL), no ingest or user token, no webhook secret (Jira may
send it as ``?secret=``), no password, no MARKER of a stored secret."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, MARKER, Platform, wait_until

pytestmark = pytest.mark.services


def test_the_logs_hold_no_credentials(platform: Platform):
    code = platform.loader_create("E2E-LOGS")
    key = platform.token_create(code, kind="PING")
    token = platform.token_create(code)
    jira_secret = platform.env["JIRA_WEBHOOK_SECRET"]
    event = {"timestamp": int(time.time() * 1000), "webhookEvent": "comment_created", "issue": {"key": "OPS-404"}}
    body = json.dumps(event).encode()
    jira = platform.url("/integrations/jira/webhook/")
    headers = {"Content-Type": "application/json"}

    # Requests that carry a credential in the URL or a header, answered normally and refused.
    answers = [
        requests.get(platform.url(f"/ping/{key}/{code}/start"), timeout=HTTP_TIMEOUT),
        requests.post(platform.url(f"/ping/{key}/{code}/1"), data=b"boom", timeout=HTTP_TIMEOUT),
        requests.get(platform.url(f"/ping/{key}/{code}/999"), timeout=HTTP_TIMEOUT),
        requests.post(jira, params={"secret": jira_secret}, data=body, headers=headers, timeout=HTTP_TIMEOUT),
        requests.post(jira, data=body, headers={**headers, "X-ETL-Monitor-Secret": jira_secret}, timeout=30),
        platform.ingest(token).get(platform.url("/api/v1/whoami/"), timeout=HTTP_TIMEOUT),
        platform.get("Viewer", "/api/v1/whoami/"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 400, 200, 200, 200, 200]
    # The failed ping's incident and its deliveries go through the worker and are logged there.
    wait_until(lambda: platform.incidents(code), f"{code}'s incident", timeout=60)
    time.sleep(1)  # the last log lines are written

    logs = platform.logs()
    logs["emails"] = "\n".join(message.as_string() for message in platform.inbox.messages)
    assert f"/{code}/start" in logs["gunicorn"], "the access log records requests"
    leaked = sorted(
        (name, credential[:4] + "…")
        for name, text in logs.items()
        for credential in (MARKER, *platform.credentials)
        if credential in text
    )
    assert leaked == []
