"""Twilio's webhooks as Twilio sends them: form-encoded POSTs signed with X-Twilio-Signature,
computed here by Twilio's own ``RequestValidator.compute_signature`` over the public URL
(ETL_MONITOR_BASE_URL + path) and the parameters, as Twilio documents. Incidents are opened by
detection and routed by the seeded notification rules; the paged person's phone is verified."""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, EventKind, Incident
from incidents.services import incident_acknowledge
from integrations.models import NotificationRule, Page, PageMethod, TwilioWebhookReceipt
from oncall.models import ContactMethod
from oncall.providers import call_start, sms_send
from tests.conftest import at_once
from tests.incidents.conftest import add_signals
from tests.integrations.twilio_fake import AUTH_TOKEN, FakeTwilio, twilio_fixture  # noqa: F401 — fixture

BASE = "https://etl.example.com"
SMS, STATUS = "/integrations/twilio/sms/", "/integrations/twilio/status/"
PHONE = "+14155550100"
T0 = dt.datetime(2026, 12, 5, 22, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _twilio_webhooks_on(settings):
    settings.ETL_MONITOR_BASE_URL = BASE
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.SLACK_BOT_TOKEN = "xoxb-test"  # deliveries are only created (no after-commit send here)


def signed_post(path: str, params: dict[str, str], *, token: str = AUTH_TOKEN, signature: str | None = None) -> Any:
    """POST ``params`` form-encoded to ``path`` as Twilio does, signed over the public URL."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(BASE + path, params)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded", headers=headers)


def sms_params(body: str, sender: str = PHONE, sid: str = "SM" + "a" * 32) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def said(response: Any, tag: str = "Message") -> list[str]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return [element.text or "" for element in root.iter(tag)]


def assert_acknowledged(incident: Incident, page: Page, *, by: Any, source: str) -> None:
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("ACKNOWLEDGED", by)
    assert incident.events.get(kind=EventKind.ACKNOWLEDGED).data == {"source": source}
    page.refresh_from_db()
    assert page.answered_at is not None


@pytest.fixture
def fire(active_loader):
    """Detection opens a CRITICAL incident on SALES-DAILY; its rule has a tier to escalate to."""
    DetectionRule.objects.update(enabled=False)
    NotificationRule.objects.filter(severity="CRITICAL").update(
        escalation_tiers=[{"channels": ["email"], "recipients": ["lead@example.com"]}], escalation_repeat=0
    )

    def fire(name: str = "failures") -> Incident:
        rule = DetectionRule.objects.create(name=name, kind="signal_failure_rate", threshold=5.0, severity="CRITICAL")
        add_signals(active_loader, failed=5, ok=5, at=T0)
        rule_evaluate(rule=rule, now=T0)
        return Incident.objects.get(rule=rule)

    return fire


def phone_of(user: Any, phone: str = PHONE) -> ContactMethod:
    return ContactMethod.objects.create(user=user, kind="PHONE", value=phone, verified_at=timezone.now())


def sms_page(user: Any, *incidents: Incident, code: str = "4821", phone: str = PHONE) -> Page:
    page = Page.objects.create(method=PageMethod.SMS, user=user, phone=phone, code=code, status="sent")
    page.incidents.set(incidents)
    return page


@pytest.fixture
def paged(fire, operator):
    """Otto (an Operator) was paged by SMS, code 4821, about an open incident."""
    phone_of(operator)
    incident = fire()
    return sms_page(operator, incident), incident


# --- SMS replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["4821", "ACK 4821", "4821 A", " ack 4821 "])
def test_a_reply_with_the_code_acknowledges_the_pages_incidents(paged, operator, body):
    page, incident = paged

    response = signed_post(SMS, sms_params(body))

    [answer] = said(response)
    assert answer == f"Acknowledged #{incident.pk} {incident.title}."
    assert_acknowledged(incident, page, by=operator, source="sms")
    assert TwilioWebhookReceipt.objects.get().kind == "sms"


def test_code_then_e_escalates_to_the_next_tier(paged, operator):
    _page, incident = paged

    [answer] = said(signed_post(SMS, sms_params("4821 E")))

    assert answer == f"Escalated #{incident.pk} {incident.title} (tier 1 paged)."
    event = incident.events.get(kind=EventKind.ESCALATED)
    assert (event.actor, event.message) == (operator, f"Escalated by {operator} from sms: tier 1 notified.")
    incident.refresh_from_db()
    assert incident.status == "OPEN"


def test_only_the_incidents_still_open_are_acknowledged(fire, paged, operator, admin_user):
    page, first = paged
    second = fire("more failures")
    page.incidents.add(second)
    incident_acknowledge(user=admin_user, incident=first)

    [answer] = said(signed_post(SMS, sms_params("4821")))

    assert answer == f"Acknowledged #{second.pk} {second.title}. #{first.pk} is acknowledged."
    second.refresh_from_db()
    assert second.acknowledged_by == operator


def test_a_replayed_request_changes_nothing_the_second_time(paged):
    _page, incident = paged
    params = sms_params("4821 E")

    said(signed_post(SMS, params))
    replay = signed_post(SMS, params)

    assert said(replay) == []  # an empty <Response/>: nothing texted back twice
    assert incident.events.filter(kind=EventKind.ESCALATED).count() == 1
    assert TwilioWebhookReceipt.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_signed_request_sent_at_once_escalates_once(require_postgres, paged):
    _page, incident = paged
    params = sms_params("4821 E")

    answers = at_once(lambda: said(signed_post(SMS, params)), 4)

    assert sorted(len(answer) for answer in answers) == [0, 0, 0, 1]  # one answer, three empty replays
    assert incident.events.filter(kind=EventKind.ESCALATED).count() == 1
    assert TwilioWebhookReceipt.objects.count() == 1


@pytest.mark.parametrize(
    "signature",
    ["", "forged", RequestValidator("not-the-token").compute_signature(BASE + SMS, sms_params("4821"))],
    ids=["missing", "junk", "other-token"],
)
def test_an_unsigned_or_forged_request_is_refused_and_nothing_is_done(paged, caplog, signature):
    _page, incident = paged
    caplog.set_level(logging.INFO)

    response = signed_post(SMS, sms_params("4821"), signature=signature)

    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.status == "OPEN"
    assert not TwilioWebhookReceipt.objects.exists()
    assert "X-Twilio-Signature" in caplog.text
    assert PHONE not in caplog.text and "4821" not in caplog.text  # the body is not logged


def test_a_request_signed_for_another_url_is_refused(paged):
    params = sms_params("4821")
    signature = RequestValidator(AUTH_TOKEN).compute_signature("https://evil.example.com" + SMS, params)
    assert signed_post(SMS, params, signature=signature).status_code == 403


def test_a_changed_parameter_breaks_the_signature(paged):
    _page, incident = paged
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + SMS, sms_params("4821"))
    assert signed_post(SMS, sms_params("4821 E"), signature=signature).status_code == 403
    assert not incident.events.filter(kind=EventKind.ESCALATED).exists()


def test_without_twilio_configured_the_routes_do_not_exist(paged, settings):
    settings.TWILIO_AUTH_TOKEN = ""
    assert signed_post(SMS, sms_params("4821"), token="x").status_code == 404


def test_only_post_is_answered(db):
    assert Client().get(SMS).status_code == 405


@pytest.mark.parametrize("registered", ["nobody", "unverified"])
def test_an_unknown_number_is_told_so(paged, editor, registered):
    stranger = "+447700900123"
    if registered == "unverified":
        ContactMethod.objects.create(user=editor, kind="PHONE", value=stranger)
    sms_page(editor, paged[1], phone=stranger)

    [answer] = said(signed_post(SMS, sms_params("4821", sender=stranger)))

    assert answer == "This number is not registered with ETL Monitor."
    paged[1].refresh_from_db()
    assert paged[1].status == "OPEN"


def test_a_viewer_is_told_they_cannot(fire, viewer):
    phone_of(viewer)
    incident = fire()
    page = sms_page(viewer, incident)

    [answer] = said(signed_post(SMS, sms_params("4821")))

    assert answer == "Your role does not allow you to acknowledge incidents."
    incident.refresh_from_db()
    assert incident.status == "OPEN"
    page.refresh_from_db()
    assert page.answered_at is None


def test_help_and_unknown_words_and_codes_are_answered(paged):
    [help_text] = said(signed_post(SMS, sms_params("HELP", sid="SM1")))
    assert "4821 E" in help_text and "acknowledge" in help_text
    [unknown] = said(signed_post(SMS, sms_params("yes please", sid="SM2")))
    assert unknown.startswith("Not understood.")
    [wrong_code] = said(signed_post(SMS, sms_params("1234", sid="SM3")))
    assert wrong_code == "No page with code 1234 was sent to this number in the last 24 h."
    paged[1].refresh_from_db()
    assert paged[1].status == "OPEN"


# --- calls -------------------------------------------------------------------------------------------


@pytest.fixture
def called(fire, operator):
    incident = fire()
    page = Page.objects.create(method=PageMethod.VOICE, user=operator, phone=PHONE, status="in-progress")
    page.incidents.set([incident])
    return page, incident


def voice_params(digits: str | None = None) -> dict[str, str]:
    params = {"CallSid": "CA" + "b" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15005550006", "To": PHONE}
    params["CallStatus"] = "in-progress"
    if digits is not None:
        params["Digits"] = digits
    return params


def test_an_answered_call_says_the_incidents_and_gathers_one_key(called):
    page, incident = called

    response = signed_post(f"/integrations/twilio/voice/{page.pk}/", voice_params())

    root = ET.fromstring(response.content)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == f"{BASE}/integrations/twilio/voice/{page.pk}/gather/?attempt=1"
    speech = gather.find("Say").text
    assert f"Incident {incident.pk}, Critical: {incident.title}." in speech
    assert speech.endswith("Press 1 to acknowledge, 2 to escalate.")


def _press(page: Page, digits: str, attempt: int = 1) -> Any:
    return signed_post(f"/integrations/twilio/voice/{page.pk}/gather/?attempt={attempt}", voice_params(digits))


def test_pressing_1_acknowledges_as_the_paged_person(called, operator):
    page, incident = called

    [speech] = said(_press(page, "1"), "Say")

    assert speech == f"Acknowledged #{incident.pk} {incident.title}. Goodbye."
    assert_acknowledged(incident, page, by=operator, source="voice")


def test_pressing_2_escalates(called, operator):
    page, incident = called

    [speech] = said(_press(page, "2"), "Say")

    assert speech == f"Escalated #{incident.pk} {incident.title} (tier 1 paged). Goodbye."
    assert (
        incident.events.get(kind=EventKind.ESCALATED).message == f"Escalated by {operator} from voice: tier 1 notified."
    )


def test_another_key_repeats_the_prompt_then_says_goodbye(called):
    page, incident = called

    again = ET.fromstring(_press(page, "9").content)
    assert again.find("Gather").get("action").endswith("/gather/?attempt=2")
    assert again.find("Gather/Say").text.startswith("Sorry, that key does nothing.")
    # The same key on the next prompt is a new request (its own URL), not a replay.
    third = ET.fromstring(_press(page, "9", attempt=2).content)
    assert third.find("Gather").get("action").endswith("/gather/?attempt=3")
    [goodbye] = said(_press(page, "9", attempt=3), "Say")
    assert goodbye == "No valid key was pressed. Goodbye."
    incident.refresh_from_db()
    assert incident.status == "OPEN"


def test_a_call_for_an_unknown_page_says_so(db):
    [speech] = said(signed_post("/integrations/twilio/voice/999/", voice_params()), "Say")
    assert speech == "This page is not known to ETL Monitor, or has expired. Goodbye."


# --- status callbacks --------------------------------------------------------------------------------


def test_an_undelivered_sms_is_written_on_the_timeline_naming_the_person_and_the_error(twilio, paged, operator):
    page, incident = paged
    provider, sid = sms_send(
        PHONE, "[CRITICAL] SALES-DAILY failed. Reply 4821 to acknowledge", status_callback=BASE + STATUS
    )
    Page.objects.filter(pk=page.pk).update(provider=provider, external_id=sid)

    url, params, signature = twilio.status_callback_request(sid, "undelivered", error_code="30003")
    response = signed_post(urlsplit(url).path, params, signature=signature)

    assert response.status_code == 200
    page.refresh_from_db()
    assert (page.status, page.error_code) == ("undelivered", "30003")
    [failed] = incident.events.filter(kind=EventKind.NOTIFY_FAILED)
    assert failed.message == f"SMS to {operator.username} undelivered: 30003 unreachable destination handset"
    # Twilio's late "sent" (callbacks come out of order) does not undo it, nor add an entry.
    url, params, signature = twilio.status_callback_request(sid, "sent", error_code="")
    signed_post(urlsplit(url).path, params, signature=signature)
    page.refresh_from_db()
    assert page.status == "undelivered"
    assert incident.events.filter(kind=EventKind.NOTIFY_FAILED).count() == 1


def test_a_delivered_sms_is_recorded_without_a_timeline_entry(twilio, paged):
    page, incident = paged
    _, sid = sms_send(PHONE, "page", status_callback=BASE + STATUS)
    Page.objects.filter(pk=page.pk).update(external_id=sid)

    _url, params, signature = twilio.status_callback_request(sid, "delivered", error_code="")
    signed_post(STATUS, params, signature=signature)

    page.refresh_from_db()
    assert page.status == "delivered"
    assert not incident.events.filter(kind=EventKind.NOTIFY_FAILED).exists()


@pytest.mark.parametrize("status", ["no-answer", "busy"])
def test_an_unanswered_call_is_written_on_the_timeline(twilio, called, operator, status):
    page, incident = called
    sid = call_start(PHONE, url=f"{BASE}/integrations/twilio/voice/{page.pk}/", status_callback=BASE + STATUS)
    Page.objects.filter(pk=page.pk).update(external_id=sid, status="ringing")

    url, params, signature = twilio.status_callback_request(sid, status, error_code="")
    signed_post(urlsplit(url).path, params, signature=signature)

    [failed] = incident.events.filter(kind=EventKind.NOTIFY_FAILED)
    assert failed.message == f"Call to {operator.username} not answered ({status}); escalation goes on at the timeout"
    incident.refresh_from_db()
    assert incident.status == "OPEN"


def test_a_status_for_an_unknown_message_is_accepted_and_changes_nothing(db):
    params = {"MessageSid": "SM" + "c" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert signed_post(STATUS, params).status_code == 200
    assert TwilioWebhookReceipt.objects.get().outcome.startswith("no page sent as SM")


# --- expiry and the receipts' retention ----------------------------------------------------------


def test_a_page_older_than_page_answer_hours_can_no_longer_be_answered(paged, operator, settings):
    sms, incident = paged
    call = Page.objects.create(method=PageMethod.VOICE, user=operator, phone=PHONE, status="in-progress")
    call.incidents.set([incident])
    settings.PAGE_ANSWER_HOURS = 24
    Page.objects.filter(pk__in=[sms.pk, call.pk]).update(created_at=timezone.now() - dt.timedelta(hours=25))

    [answer] = said(signed_post(SMS, sms_params("4821")))
    [speech] = said(_press(call, "1"), "Say")

    assert answer == "No page with code 4821 was sent to this number in the last 24 h."
    assert speech == "This page is not known to ETL Monitor, or has expired. Goodbye."
    incident.refresh_from_db()
    assert incident.status == "OPEN"


def test_receipts_are_pruned_once_their_pages_can_no_longer_be_answered(paged, settings):
    settings.PAGE_ANSWER_HOURS = 24
    said(signed_post(SMS, sms_params("4821")))
    receipt = TwilioWebhookReceipt.objects.get()
    from integrations.twilio_webhooks import twilio_receipts_prune

    assert twilio_receipts_prune(now=receipt.received_at + dt.timedelta(hours=47)) == 0
    assert twilio_receipts_prune(now=receipt.received_at + dt.timedelta(hours=48, seconds=1)) == 1
    assert not TwilioWebhookReceipt.objects.exists()
