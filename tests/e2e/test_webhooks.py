"""Inbound webhooks of the running platform: forged ones are refused and change nothing, and a
signed Jira event captured and replayed (with a new delivery identifier, which the signature does
not cover) is not applied a second time."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform, wait_until

pytestmark = pytest.mark.services

JIRA = "/integrations/jira/webhook/"
ALERTMANAGER = "/integrations/alertmanager/webhook/"


def jira_post(platform: Platform, body: bytes, headers: dict[str, str], query: str = "") -> requests.Response:
    headers = {"Content-Type": "application/json", **headers}
    return requests.post(platform.url(JIRA + query), data=body, headers=headers, timeout=HTTP_TIMEOUT)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alertmanager_payload(alertname: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    alert = {
        "status": "firing",
        "labels": {"alertname": alertname, "severity": "warning"},
        "annotations": {"summary": f"{alertname} is firing"},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": secrets.token_hex(8),
    }
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={alertname}}}",
        "status": "firing",
        "receiver": "etl-monitor",
        "groupLabels": {"alertname": alertname},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def incidents_titled(platform: Platform, text: str) -> list[dict[str, Any]]:
    answer = platform.get("Viewer", "/api/v1/incidents/", params={"page_size": 200})
    return [incident for incident in answer.json()["results"] if text in incident["title"]]


def test_forged_jira_webhooks_are_refused(platform: Platform):
    body = json.dumps({"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1"}}).encode()
    wrong = "not-the-secret"

    answers = {
        "no secret": jira_post(platform, body, {}),
        "wrong signature": jira_post(platform, body, {"X-Hub-Signature": signature(wrong, body)}),
        "malformed signature": jira_post(platform, body, {"X-Hub-Signature": "sha256=zz"}),
        "wrong query secret": jira_post(platform, body, {}, query=f"?secret={wrong}"),
        "wrong header secret": jira_post(platform, body, {"X-ETL-Monitor-Secret": wrong}),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 401)


def test_forged_alertmanager_webhooks_are_refused_and_open_nothing(platform: Platform):
    alertname = f"E2EForged{secrets.token_hex(4)}"
    body = alertmanager_payload(alertname)
    url = platform.url(ALERTMANAGER)
    token = platform.env["ALERTMANAGER_WEBHOOK_TOKEN"]

    forged = {
        "no token": requests.post(url, json=body, timeout=HTTP_TIMEOUT),
        "wrong token": requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=HTTP_TIMEOUT),
        "token as basic": requests.post(url, json=body, auth=("alertmanager", token), timeout=HTTP_TIMEOUT),
    }
    assert all(answer.status_code in (401, 403) for answer in forged.values()), {
        name: answer.status_code for name, answer in forged.items()
    }
    assert incidents_titled(platform, alertname) == []

    genuine = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)
    assert genuine.status_code == 200, genuine.text
    assert len(incidents_titled(platform, alertname)) == 1  # the check above could have seen it


def test_a_replayed_signed_jira_event_with_a_new_identifier_is_not_applied_again(platform: Platform):
    code = platform.loader_create("E2E-JIRA")
    client = platform.ingest(platform.token_create(code))

    def fail_a_run() -> None:
        run_id = str(uuid.uuid4())
        client.post(platform.url("/api/v1/runs/"), json={"loader_code": code, "run_id": run_id}, timeout=30)
        answer = client.patch(platform.url(f"/api/v1/runs/{run_id}/"), json={"status": "FAILED"}, timeout=30)
        assert answer.status_code == 200, answer.text

    def incident() -> dict[str, Any] | None:
        found = platform.incidents(code)
        return found[0] if found else None

    fail_a_run()
    ticket = wait_until(lambda: (incident() or {}).get("external_key"), f"a Jira ticket for {code}", timeout=90)
    platform.jira.set_status(ticket, "Done")
    body = json.dumps(platform.jira.webhook_payload("jira:issue_updated", ticket)).encode()
    secret = platform.env["JIRA_WEBHOOK_SECRET"]
    signed = {"X-Hub-Signature": signature(secret, body)}

    first = jira_post(platform, body, {**signed, "X-Atlassian-Webhook-Identifier": str(uuid.uuid4())})
    assert first.status_code == 200 and first.json()["status"] == "applied", first.text
    assert incident()["status"] == "RESOLVED"

    fail_a_run()  # it fails again within the reopen window: the same incident reopens
    wait_until(lambda: incident()["status"] == "OPEN", f"the incident of {code} to reopen", timeout=60)

    replayed = jira_post(platform, body, {**signed, "X-Atlassian-Webhook-Identifier": str(uuid.uuid4())})

    assert replayed.status_code < 500
    assert replayed.json().get("status") != "applied", replayed.text
    assert incident()["status"] == "OPEN"
