"""Paging the person on call, end to end on the running platform (gunicorn, worker and beat on
PostgreSQL and Redis; Slack and Twilio are local fakes speaking their wire formats): a CRITICAL
incident texts the on-call Operator through Twilio; a forged Twilio webhook and a Viewer's Slack
click and a Viewer's "escalate now" over the API change nothing; the Operator's signed SMS reply
acknowledges the incident, which the API shows and the Slack message says (chat.update, in place);
acknowledged, it is no longer escalated (409)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

import pytest
import requests
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from tests.e2e.harness import HTTP_TIMEOUT, Platform, wait_until
from tests.integrations.slack_requests import INTERACTIVITY, click
from tests.integrations.twilio_fake import FROM_NUMBER

pytestmark = pytest.mark.services

CODE = "E2E-ONCALL"
RULE = "E2E run failed (critical)"
PHONE = "+14155550142"  # the on-call Operator's verified phone
OPERATOR_SLACK, VIEWER_SLACK = "U0E2EOPS", "U0E2EVIEW"
SMS_WEBHOOK = "/integrations/twilio/sms/"

# The on-call set-up an Operator and each person make in the admin (schedules, contact methods
# verified by a code), written directly: the admin's flows have tests of their own.
ONCALL_SETUP = """
import datetime as dt, os
from django.contrib.auth.models import User
from django.utils import timezone
from incidents.models import DetectionRule
from integrations.models import Channel, NotificationRule
from loaders.models import Loader
from oncall.models import ContactMethod, Rotation, RotationMember, Schedule
now = timezone.now()
operator = User.objects.get(username="e2e-operator")
viewer = User.objects.get(username="e2e-viewer")
ContactMethod.objects.create(user=operator, kind="PHONE", value=os.environ["E2E_PHONE"], verified_at=now)
ContactMethod.objects.create(user=operator, kind="SLACK", value=os.environ["E2E_OPERATOR_SLACK"], verified_at=now)
ContactMethod.objects.create(user=viewer, kind="SLACK", value=os.environ["E2E_VIEWER_SLACK"], verified_at=now)
schedule = Schedule.objects.create(name="E2E on call", slug="e2e-oncall", timezone="UTC")
rotation = Rotation.objects.create(
    schedule=schedule, name="Primary", handoff="DAILY", handoff_time=dt.time(9),
    start_date=now.date() - dt.timedelta(days=7),
)
RotationMember.objects.create(rotation=rotation, user=operator, position=0)
Channel.objects.update_or_create(name="sms", defaults={"kind": "SMS", "enabled": True})
NotificationRule.objects.filter(severity="CRITICAL", team=None, tag=None).update(
    channels=["slack", "sms"], slack_channel="#alerts-critical", oncall=["e2e-oncall"]
)
rule = DetectionRule.objects.create(
    name=os.environ["E2E_RULE"], kind="run_failed", operator="GT", threshold=0.0, window_seconds=900,
    severity="CRITICAL", interval_seconds=10, scope="LOADERS",
    message="{subject}: {value} failed run(s) in the last 15 minutes",
)
rule.scope_loaders.set(Loader.objects.filter(loader_code=os.environ["E2E_CODE"]))
"""


def twilio_post(platform: Platform, path: str, params: dict[str, str], signature: str) -> requests.Response:
    """POST as Twilio does: form-encoded, X-Twilio-Signature over the public URL and the params."""
    return requests.post(
        platform.url(path),
        data=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        timeout=HTTP_TIMEOUT,
    )


def slack_post(platform: Platform, fields: dict[str, str]) -> requests.Response:
    """POST as Slack does: form-encoded, signed with the app's signing secret (v0, now)."""
    body = urlencode(fields)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(platform.slack_signing_secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }
    return requests.post(platform.url(INTERACTIVITY), data=body, headers=headers, timeout=HTTP_TIMEOUT)


def acknowledgements(platform: Platform) -> list:
    """The chat.update calls Slack received that say an incident was acknowledged."""
    calls = platform.slack.calls_to("chat.update")
    return [c for c in calls if "Acknowledged by e2e-operator" in json.dumps(c.body, ensure_ascii=False)]


def incident_read(platform: Platform, pk: int) -> dict:
    answer = platform.get("Viewer", f"/api/v1/incidents/{pk}/")
    answer.raise_for_status()
    return answer.json()


def test_the_person_on_call_is_texted_and_acknowledges_by_replying(platform: Platform):
    platform.loader_create(CODE)
    platform.shell(
        ONCALL_SETUP,
        E2E_PHONE=PHONE,
        E2E_OPERATOR_SLACK=OPERATOR_SLACK,
        E2E_VIEWER_SLACK=VIEWER_SLACK,
        E2E_RULE=RULE,
        E2E_CODE=CODE,
    )
    platform.run_failed(CODE, platform.token_create(CODE), "ORA-01555: snapshot too old")

    # CRITICAL: the Operator on call gets an SMS at Twilio, and #alerts-critical a message.
    [incident] = wait_until(lambda: platform.incidents(CODE, rule=RULE), f"a CRITICAL incident for {CODE}", timeout=60)
    assert incident["severity"] == "CRITICAL" and incident["status"] == "OPEN"
    [sms] = wait_until(
        lambda: [m for m in platform.twilio.sms_to(PHONE) if f"#{incident['id']}" in m["body"]],
        "the SMS to the person on call at the fake Twilio",
        timeout=60,
    )
    assert sms["from"] == FROM_NUMBER
    code = re.search(r"Reply (\d{4}) to acknowledge", sms["body"]).group(1)
    [post] = wait_until(
        lambda: [m for m in platform.slack.posts() if incident["title"] in json.dumps(m, ensure_ascii=False)],
        "the incident's message in #alerts-critical",
        timeout=60,
    )
    assert post["channel"] == "C0CRIT"

    reply = {
        "MessageSid": "SM" + "e2e0" * 8,
        "SmsSid": "SM" + "e2e0" * 8,
        "AccountSid": platform.twilio.account_sid,
        "From": PHONE,
        "To": FROM_NUMBER,
        "Body": f"ACK {code}",
        "NumMedia": "0",
    }
    validator = RequestValidator(platform.twilio.auth_token)

    # A forged webhook (signed with another token, or not signed): 403, nothing acknowledged.
    forged = RequestValidator("not-the-auth-token").compute_signature(platform.url(SMS_WEBHOOK), reply)
    assert twilio_post(platform, SMS_WEBHOOK, reply, forged).status_code == 403
    assert twilio_post(platform, SMS_WEBHOOK, reply, "").status_code == 403

    # A Viewer's click on Acknowledge: refused to them alone (ephemeral), nothing changes.
    platform.slack.user_add(VIEWER_SLACK, "viewer@example.com")
    viewer_click = click(platform.slack, VIEWER_SLACK, "etl_ack", incident["id"], ts=post["ts"])
    assert slack_post(platform, viewer_click).status_code == 200
    refusal = wait_until(lambda: platform.slack.responses, "the ephemeral refusal at the response_url", timeout=10)
    assert refusal[0]["text"] == "Your role does not allow you to acknowledge incidents."
    assert incident_read(platform, incident["id"])["status"] == "OPEN"
    refused_at = time.time()
    assert acknowledgements(platform) == []

    # A Viewer's "escalate now" over the API: refused, nothing changes.
    escalate = f"/api/v1/incidents/{incident['id']}/escalate/"
    denied = platform.post("Viewer", escalate, None)
    assert denied.status_code == 403 and "not allow you to escalate" in denied.text
    assert not [e for e in incident_read(platform, incident["id"])["events"] if e["kind"] == "ESCALATED"]

    # The Operator replies "ACK <code>": acknowledged by them, from the SMS.
    answer = twilio_post(platform, SMS_WEBHOOK, reply, validator.compute_signature(platform.url(SMS_WEBHOOK), reply))
    assert answer.status_code == 200 and "acknowledged" in answer.text.lower(), answer.text
    acknowledged = incident_read(platform, incident["id"])
    assert acknowledged["status"] == "ACKNOWLEDGED" and acknowledged["acknowledged_by"] == "e2e-operator"
    assert next(e for e in acknowledged["events"] if e["kind"] == "ACKNOWLEDGED")["data"] == {"source": "sms"}

    # The worker updates the Slack message in place (other updates, such as the Jira link, may
    # come too): it says who acknowledged; the Viewer's click had made no such update.
    [update] = wait_until(
        lambda: [c for c in acknowledgements(platform) if c.body.get("ts") == post["ts"]],
        "chat.update of the incident's Slack message saying who acknowledged",
        timeout=30,
    )
    assert update.body["channel"] == "C0CRIT" and update.at > refused_at
    assert len([m for m in platform.slack.posts() if m["ts"] == post["ts"]]) == 1
    assert len(platform.twilio.sms_to(PHONE)) == 1  # the reply pages nobody again

    # Acknowledged, it can no longer be escalated: 409 saying why, to the Operator too.
    late = platform.post("Operator", escalate, None)
    assert late.status_code == 409 and "only an open one can be escalated" in late.text
