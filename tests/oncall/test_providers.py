"""The SMS and voice providers with the real Twilio client against a local server speaking Twilio's
REST API (and a generic SMS gateway): Twilio first, the gateway when Twilio fails in a way that may
pass, never for a wrong number; off until configured."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from oncall.providers import ProviderError, call_start, sms_send, twilio_configured
from tests.integrations.twilio_fake import (  # noqa: F401 — fixtures
    FROM_NUMBER,
    FakeSmsGateway,
    FakeTwilio,
    sms_gateway_fixture,
    twilio_fixture,
)

ALICE = "+14155550100"
CALLBACK = "https://etl.example.com/integrations/twilio/status/"


def test_it_sends_an_sms_through_twilio(twilio: FakeTwilio):
    provider, sid = sms_send(ALICE, "[HIGH] SALES: run failed", status_callback=CALLBACK)

    [message] = twilio.sms_to(ALICE)
    assert (provider, sid) == ("twilio", message["sid"])
    assert sid.startswith("SM") and len(sid) == 34
    assert (message["from"], message["body"], message["status_callback"]) == (
        FROM_NUMBER,
        "[HIGH] SALES: run failed",
        CALLBACK,
    )


def test_an_invalid_number_is_permanent_and_does_not_fail_over(twilio: FakeTwilio, sms_gateway: FakeSmsGateway):
    twilio.fail(ALICE, "21211")

    with pytest.raises(ProviderError) as raised:
        sms_send(ALICE, "hello")

    assert (raised.value.code, raised.value.permanent, raised.value.transient) == ("21211", True, False)
    assert "is not a valid phone number" in raised.value.reason
    assert sms_gateway.requests == []


@pytest.mark.parametrize("code", ["20429", "20500", "20503"])
def test_a_passing_twilio_failure_fails_over_to_the_gateway(twilio: FakeTwilio, sms_gateway: FakeSmsGateway, code):
    twilio.fail(ALICE, code, times=1)

    provider, message_id = sms_send(ALICE, "hello", status_callback=CALLBACK)

    assert (provider, message_id) == ("gateway", "gw-1")
    assert sms_gateway.sent[0] | {"at": 0} == {"id": "gw-1", "to": ALICE, "from": FROM_NUMBER, "body": "hello", "at": 0}
    assert sms_gateway.requests[0].headers["Authorization"] == f"Bearer {sms_gateway.token}"


def test_twilio_unreachable_fails_over_to_the_gateway(twilio: FakeTwilio, sms_gateway: FakeSmsGateway, settings):
    twilio.stop()

    assert sms_send(ALICE, "hello")[0] == "gateway"


def test_without_a_gateway_a_rate_limit_stays_a_passing_error(twilio: FakeTwilio):
    twilio.fail(ALICE, "20429")

    with pytest.raises(ProviderError) as raised:
        sms_send(ALICE, "hello")

    assert (raised.value.rate_limited, raised.value.transient, raised.value.code) == (True, True, "20429")


def test_both_failing_is_a_passing_error_naming_both(twilio: FakeTwilio, sms_gateway: FakeSmsGateway):
    twilio.fail(ALICE, "20503")
    sms_gateway.statuses = [502]

    with pytest.raises(ProviderError) as raised:
        sms_send(ALICE, "hello")

    assert raised.value.transient
    assert raised.value.reason == "Twilio 20503: Service Unavailable; SMS gateway: HTTP 502"


def test_refused_credentials_are_a_misconfiguration_not_failed_over(
    twilio: FakeTwilio, sms_gateway: FakeSmsGateway, settings
):
    settings.TWILIO_AUTH_TOKEN = "wrong"

    with pytest.raises(ProviderError) as raised:
        sms_send(ALICE, "hello")

    assert (raised.value.code, raised.value.misconfigured, raised.value.permanent) == ("20003", True, False)
    assert sms_gateway.requests == [] and twilio.messages == []


def test_it_is_off_until_twilio_is_configured(settings, sms_gateway: FakeSmsGateway):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC1", "token", ""

    assert twilio_configured() == "Twilio is not configured (TWILIO_FROM_NUMBER is not set)"
    with pytest.raises(ProviderError, match="TWILIO_FROM_NUMBER") as raised:
        sms_send(ALICE, "hello")
    assert raised.value.misconfigured and sms_gateway.requests == []


def test_the_gateways_refusal_of_a_number_is_permanent(twilio: FakeTwilio, sms_gateway: FakeSmsGateway):
    twilio.fail("0800-NOT-E164", "20500")

    with pytest.raises(ProviderError) as raised:
        sms_send("0800-NOT-E164", "hello")

    assert raised.value.permanent and "HTTP 400" in raised.value.reason


def test_it_starts_a_call_through_twilio(twilio: FakeTwilio):
    url = "https://etl.example.com/integrations/twilio/voice/7/"

    sid = call_start(ALICE, url=url, status_callback=CALLBACK)

    [call] = twilio.calls_to(ALICE)
    assert sid == call["sid"] and sid.startswith("CA")
    assert (call["url"], call["status_callback"], call["from"]) == (url, CALLBACK, FROM_NUMBER)


def test_a_call_to_a_rate_limited_twilio_is_a_passing_error(twilio: FakeTwilio):
    twilio.fail(ALICE, "20429")

    with pytest.raises(ProviderError) as raised:
        call_start(ALICE, url="https://etl.example.com/v/", status_callback=CALLBACK)

    assert raised.value.rate_limited and raised.value.transient


def test_the_fake_signs_its_status_callbacks_like_twilio(twilio: FakeTwilio):
    _provider, sid = sms_send(ALICE, "hello", status_callback=CALLBACK)

    url, params, signature = twilio.status_callback_request(sid)

    assert url == CALLBACK
    assert (params["MessageStatus"], params["ErrorCode"], params["MessageSid"]) == ("undelivered", "30003", sid)
    assert RequestValidator(twilio.auth_token).validate(url, params, signature)


def test_each_provider_call_is_measured_once(twilio: FakeTwilio, sms_gateway: FakeSmsGateway):
    from etl_monitor.metrics import Outcome, TargetService
    from tests.integrations.test_outbound_metrics import one, recorded

    assert recorded(lambda: sms_send(ALICE, "hello")) == one(TargetService.TWILIO, Outcome.SUCCESS)
    twilio.fail(ALICE, "20503", times=1)
    assert recorded(lambda: sms_send(ALICE, "hello")) == one(TargetService.TWILIO, Outcome.SERVER_ERROR) + one(
        TargetService.SMS_GATEWAY, Outcome.SUCCESS
    )
    twilio.fail(ALICE, "21211")

    def refused() -> None:
        with pytest.raises(ProviderError):
            call_start(ALICE, url=CALLBACK, status_callback=CALLBACK)

    assert recorded(refused) == one(TargetService.TWILIO, Outcome.CLIENT_ERROR)
