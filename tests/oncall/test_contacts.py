"""Contact methods and paging preferences through their services: validation naming the field,
one's own versus someone else's, and phone verification by a code texted through the real Twilio
client to the fake Twilio of tests/integrations/twilio_fake.py (on a controlled clock)."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest

from etl_monitor.errors import InvalidInput, PermissionRefused, StateConflict
from oncall.contacts import (
    contact_add,
    contact_delete,
    phone_verification_send,
    phone_verify,
    preference_save,
)
from oncall.models import ContactMethod, PagingPreference
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixture

ALICE_PHONE = "+14155550100"
T0 = dt.datetime(2026, 12, 5, 22, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


def texted_code(twilio: FakeTwilio, phone: str = ALICE_PHONE) -> str:
    body = twilio.sms_to(phone)[-1]["body"]
    assert re.fullmatch(r"ETL Monitor code: \d{6}", body), body
    return body.rsplit(" ", 1)[1]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


@pytest.fixture
def phone(viewer):
    return contact_add(user=viewer, owner=viewer, kind="PHONE", value="+1 415-555-0100")


# --- adding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("PHONE", "4155550100"),  # no country code
        ("PHONE", "+0155550100"),
        ("PHONE", "+1415555010012345"),  # 16 digits
        ("PHONE", "+1 (415) abc"),
        ("EMAIL", "alice@"),
        ("SLACK", "alice"),
        ("SLACK", "U12"),
        ("PHONE", "   "),
    ],
)
def test_a_wrong_value_is_refused_naming_the_field_value(viewer, kind, value):
    with pytest.raises(InvalidInput) as raised:
        contact_add(user=viewer, owner=viewer, kind=kind, value=value)
    assert list(raised.value.errors) == ["value"]
    assert ContactMethod.objects.count() == 0


def test_an_unknown_kind_is_refused_naming_the_field_kind(viewer):
    with pytest.raises(InvalidInput) as raised:
        contact_add(user=viewer, owner=viewer, kind="PAGER", value="123")
    assert list(raised.value.errors) == ["kind"]


def test_a_phone_is_stored_in_e164_and_waits_for_its_code(phone, viewer):
    assert (phone.user, phone.value, phone.verified_at) == (viewer, ALICE_PHONE, None)


def test_an_email_or_slack_id_added_by_its_owner_is_verified_at_once(viewer):
    email = contact_add(user=viewer, owner=viewer, kind="EMAIL", value=" vera@example.com ")
    slack = contact_add(user=viewer, owner=viewer, kind="SLACK", value="U024BE7LH")
    assert email.value == "vera@example.com" and email.verified_at is not None
    assert slack.verified_at is not None


def test_the_same_value_twice_is_refused_naming_the_field(phone, viewer):
    with pytest.raises(InvalidInput) as raised:
        contact_add(user=viewer, owner=viewer, kind="PHONE", value="+14155550100")
    assert list(raised.value.errors) == ["value"]


def test_a_slack_id_verified_by_someone_else_is_a_conflict(viewer, editor):
    contact_add(user=viewer, owner=viewer, kind="SLACK", value="U024BE7LH")
    with pytest.raises(StateConflict, match="already verified by another person"):
        contact_add(user=editor, owner=editor, kind="SLACK", value="U024BE7LH")


def test_only_an_admin_manages_someone_elses_contact_methods(viewer, operator, admin_user):
    with pytest.raises(PermissionRefused):
        contact_add(user=operator, owner=viewer, kind="EMAIL", value="vera@example.com")
    method = contact_add(user=admin_user, owner=viewer, kind="EMAIL", value="vera@example.com")
    assert method.user == viewer and method.verified_at is not None
    with pytest.raises(PermissionRefused):
        contact_delete(user=operator, method=method)
    contact_delete(user=viewer, method=method)
    assert not ContactMethod.objects.exists()


# --- verifying a phone --------------------------------------------------------------------------------


def test_the_right_code_verifies_the_phone(twilio, phone, viewer):
    phone_verification_send(user=viewer, method=phone, now=T0)
    code = texted_code(twilio)

    verified = phone_verify(user=viewer, method=phone, code=f" {code[:3]} {code[3:]} ", now=T0 + 60 * S)

    assert verified.verified_at == T0 + 60 * S
    phone.refresh_from_db()
    assert (phone.verified_at, phone.code_hash, phone.code_sent_at) == (T0 + 60 * S, "", None)
    with pytest.raises(StateConflict, match="verified already"):
        phone_verify(user=viewer, method=phone, code=code, now=T0 + 61 * S)


def test_the_code_is_kept_only_as_a_digest_and_never_logged(twilio, phone, viewer, caplog):
    caplog.set_level(logging.DEBUG)
    phone_verification_send(user=viewer, method=phone, now=T0)
    code = texted_code(twilio)
    phone.refresh_from_db()
    assert phone.code_hash and code not in phone.code_hash
    assert code not in caplog.text
    assert code not in str(phone.history.values_list())


def test_wrong_codes_count_and_the_last_allowed_one_needs_a_new_code(twilio, phone, viewer, settings):
    settings.ONCALL_VERIFY_MAX_ATTEMPTS = 3
    phone_verification_send(user=viewer, method=phone, now=T0)
    code = texted_code(twilio)

    for left in ("2 tries left", "1 try left"):
        with pytest.raises(InvalidInput, match=left) as raised:
            phone_verify(user=viewer, method=phone, code=wrong(code), now=T0 + S)
        assert list(raised.value.errors) == ["code"]
    with pytest.raises(InvalidInput, match="too many wrong tries: send a new code"):
        phone_verify(user=viewer, method=phone, code=wrong(code), now=T0 + S)
    # Even the right code is refused now: it is dead.
    with pytest.raises(InvalidInput, match="No code is waiting"):
        phone_verify(user=viewer, method=phone, code=code, now=T0 + 2 * S)
    phone.refresh_from_db()
    assert phone.verified_at is None

    phone_verification_send(user=viewer, method=phone, now=T0 + 61 * S)
    assert phone_verify(user=viewer, method=phone, code=texted_code(twilio), now=T0 + 62 * S).verified_at


def test_an_expired_code_is_refused(twilio, phone, viewer, settings):
    settings.ONCALL_VERIFY_CODE_MINUTES = 10
    phone_verification_send(user=viewer, method=phone, now=T0)
    code = texted_code(twilio)
    with pytest.raises(InvalidInput, match="expired"):
        phone_verify(user=viewer, method=phone, code=code, now=T0 + dt.timedelta(minutes=10, seconds=1))
    phone.refresh_from_db()
    assert (phone.verified_at, phone.code_hash) == (None, "")


def test_one_code_a_minute_and_a_new_code_replaces_the_old(twilio, phone, viewer):
    phone_verification_send(user=viewer, method=phone, now=T0)
    first = texted_code(twilio)
    with pytest.raises(StateConflict, match="wait 30 s"):
        phone_verification_send(user=viewer, method=phone, now=T0 + 30 * S)
    assert len(twilio.sms_to(ALICE_PHONE)) == 1

    phone_verification_send(user=viewer, method=phone, now=T0 + 60 * S)
    second = texted_code(twilio)
    if first != second:
        with pytest.raises(InvalidInput, match="Wrong code"):
            phone_verify(user=viewer, method=phone, code=first, now=T0 + 61 * S)
    assert phone_verify(user=viewer, method=phone, code=second, now=T0 + 62 * S).verified_at


def test_without_twilio_no_code_is_sent_and_the_error_says_why(phone, viewer, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(StateConflict, match="TWILIO_ACCOUNT_SID is not set"):
        phone_verification_send(user=viewer, method=phone, now=T0)
    phone.refresh_from_db()
    assert (phone.code_hash, phone.code_sent_at) == ("", None)


def test_a_code_twilio_refuses_to_send_leaves_no_code_and_no_wait(twilio, phone, viewer):
    twilio.fail(ALICE_PHONE, "21614", times=1)
    with pytest.raises(StateConflict, match=r"could not be sent.*not a valid mobile number"):
        phone_verification_send(user=viewer, method=phone, now=T0)
    phone.refresh_from_db()
    assert (phone.code_hash, phone.code_sent_at) == ("", None)
    phone_verification_send(user=viewer, method=phone, now=T0 + S)  # no minute to wait: nothing went
    assert len(twilio.sms_to(ALICE_PHONE)) == 1


def test_a_number_verified_by_another_person_is_a_conflict(twilio, phone, viewer, editor):
    theirs = contact_add(user=editor, owner=editor, kind="PHONE", value=ALICE_PHONE)
    phone_verification_send(user=viewer, method=phone, now=T0)
    phone_verify(user=viewer, method=phone, code=texted_code(twilio), now=T0 + S)

    phone_verification_send(user=editor, method=theirs, now=T0 + 2 * S)
    with pytest.raises(StateConflict, match="already verified by another person"):
        phone_verify(user=editor, method=theirs, code=texted_code(twilio), now=T0 + 3 * S)
    theirs.refresh_from_db()
    assert theirs.verified_at is None


def test_nobody_else_sends_or_enters_a_persons_code(twilio, phone, operator):
    with pytest.raises(PermissionRefused):
        phone_verification_send(user=operator, method=phone, now=T0)
    with pytest.raises(PermissionRefused):
        phone_verify(user=operator, method=phone, code="123456", now=T0)
    assert twilio.sms_to(ALICE_PHONE) == []


def test_an_email_is_not_verified_by_a_code(twilio, viewer):
    email = contact_add(user=viewer, owner=viewer, kind="EMAIL", value="vera@example.com")
    with pytest.raises(StateConflict, match="Only a phone"):
        phone_verification_send(user=viewer, method=email, now=T0)


# --- paging preference ---------------------------------------------------------------------------------


def test_a_person_saves_their_paging_preference(viewer):
    preference = preference_save(
        user=viewer,
        owner=viewer,
        data={
            "sms_severities": ["HIGH", "CRITICAL"],
            "voice_severities": [],
            "quiet_start": "22:00",
            "quiet_end": dt.time(7, 0),
            "quiet_severities": ["CRITICAL"],
            "timezone": "Europe/Paris",
        },
    )
    preference.refresh_from_db()
    assert preference.sms_severities == ["CRITICAL", "HIGH"]
    assert (preference.quiet_start, preference.quiet_end) == (dt.time(22), dt.time(7))
    assert preference.timezone == "Europe/Paris"
    # Fields left out keep their value.
    preference_save(user=viewer, owner=viewer, data={"voice_severities": ["CRITICAL"]})
    preference.refresh_from_db()
    assert (preference.voice_severities, preference.timezone) == (["CRITICAL"], "Europe/Paris")
    assert PagingPreference.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sms_severities": ["URGENT"]}, "sms_severities"),
        ({"voice_severities": "CRITICAL"}, "voice_severities"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"quiet_start": "22:00"}, "quiet_end"),
        ({"quiet_end": "07:00"}, "quiet_start"),
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start"),
        ({"quiet_start": "07:00", "quiet_end": "07:00"}, "quiet_end"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_wrong_preference_is_refused_naming_the_field_and_nothing_is_saved(viewer, data, field):
    with pytest.raises(InvalidInput) as raised:
        preference_save(user=viewer, owner=viewer, data=data)
    assert field in raised.value.errors
    assert not PagingPreference.objects.exists()


def test_only_an_admin_changes_someone_elses_paging_preference(viewer, operator, admin_user):
    with pytest.raises(PermissionRefused):
        preference_save(user=operator, owner=viewer, data={"voice_severities": []})
    preference_save(user=admin_user, owner=viewer, data={"voice_severities": []})
    assert PagingPreference.objects.get(user=viewer).voice_severities == []
    assert PagingPreference.objects.get(user=viewer).sms_severities == ["CRITICAL", "HIGH"]  # the default, kept
