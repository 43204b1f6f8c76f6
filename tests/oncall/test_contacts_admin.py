"""Contact methods and paging preferences in the admin, as people use them: a Viewer manages their
own phone (add, send the code through the fake Twilio, verify) and sees nobody else's; an Operator
sees everyone's and changes none; an Admin changes anyone's."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from oncall.contacts import contact_add
from oncall.models import ContactMethod, PagingPreference
from tests.integrations.twilio_fake import FakeTwilio, twilio_fixture  # noqa: F401 — fixture

PHONE = "+14155550100"
ADD = reverse("admin:oncall_contactmethod_add")
LIST = reverse("admin:oncall_contactmethod_changelist")


def change_url(method: ContactMethod) -> str:
    return reverse("admin:oncall_contactmethod_change", args=[method.pk])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def code_texted(twilio: FakeTwilio) -> str:
    return re.search(r"\d{6}", twilio.sms_to(PHONE)[-1]["body"]).group()


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_a_viewer_adds_sends_the_code_and_verifies_their_own_phone(twilio, viewer):
    client = logged_in(viewer)
    listing = client.get(LIST)  # phones are private, yet one's own are listed in the admin's menu
    oncall = next(app for app in listing.context["available_apps"] if app["app_label"] == "oncall")
    assert {"Contact methods", "Paging preferences"} <= {model["name"] for model in oncall["models"]}
    form = client.get(ADD)
    assert "user" not in form.context["adminform"].form.fields  # one's own, always

    response = client.post(ADD, {"kind": "PHONE", "value": "+1 415 555 0100"})
    assert response.status_code == 302
    phone = ContactMethod.objects.get()
    assert (phone.user, phone.value, phone.verified_at) == (viewer, PHONE, None)

    page = client.get(change_url(phone))
    assert b"Send verification code" in page.content and b"Not verified" in page.content
    sent = client.post(change_url(phone), {"_send_code": "1", "code": ""}, follow=True)
    assert any(f"A code was texted to {PHONE}" in m for m in page_messages(sent))
    assert len(twilio.sms_to(PHONE)) == 1

    verified = client.post(change_url(phone), {"_save": "Verify", "code": code_texted(twilio)}, follow=True)
    assert any("is verified" in m for m in page_messages(verified))
    phone.refresh_from_db()
    assert phone.verified_at is not None
    assert b"Send verification code" not in client.get(change_url(phone)).content


def test_a_wrong_code_in_the_admin_counts_and_says_so(twilio, viewer, settings):
    settings.ONCALL_VERIFY_MAX_ATTEMPTS = 5
    phone = contact_add(user=viewer, owner=viewer, kind="PHONE", value=PHONE)
    client = logged_in(viewer)
    client.post(change_url(phone), {"_send_code": "1"})
    wrong = f"{(int(code_texted(twilio)) + 1) % 10**6:06d}"

    response = client.post(change_url(phone), {"_save": "Verify", "code": wrong}, follow=True)

    assert any("Wrong code (4 tries left)" in m for m in page_messages(response))
    phone.refresh_from_db()
    assert (phone.verified_at, phone.code_attempts) == (None, 1)  # kept, not rolled back


def test_a_wrong_value_is_that_fields_error_and_nothing_is_added(viewer):
    response = logged_in(viewer).post(ADD, {"kind": "PHONE", "value": "0415 555 0100"})
    assert response.status_code == 200
    assert "E.164" in response.context["adminform"].form.errors["value"][0]
    assert not ContactMethod.objects.exists()


def test_a_viewer_sees_only_their_own_and_cannot_open_anyone_elses(viewer, editor):
    mine = contact_add(user=viewer, owner=viewer, kind="PHONE", value=PHONE)
    theirs = contact_add(user=editor, owner=editor, kind="PHONE", value="+14155550199")
    client = logged_in(viewer)

    listing = client.get(LIST).content.decode()
    assert mine.value in listing and theirs.value not in listing
    assert client.get(change_url(theirs)).status_code == 302  # "doesn't exist" for them
    assert client.post(change_url(theirs), {"_send_code": "1"}).status_code == 302
    theirs.refresh_from_db()
    assert theirs.code_sent_at is None
    history = "admin:oncall_contactmethod_history"
    assert client.get(reverse(history, args=[mine.pk])).status_code == 200
    assert client.get(reverse(history, args=[theirs.pk])).status_code == 403


def test_an_operator_sees_everyones_but_changes_none(viewer, operator, twilio):
    theirs = contact_add(user=viewer, owner=viewer, kind="PHONE", value=PHONE)
    client = logged_in(operator)

    assert PHONE in client.get(LIST).content.decode()
    page = client.get(change_url(theirs))
    assert page.status_code == 200 and b"Send verification code" not in page.content
    assert client.post(change_url(theirs), {"_send_code": "1"}).status_code == 403
    assert twilio.sms_to(PHONE) == []
    assert (
        client.post(reverse("admin:oncall_contactmethod_delete", args=[theirs.pk]), {"post": "yes"}).status_code == 403
    )
    assert ContactMethod.objects.filter(pk=theirs.pk).exists()


def test_an_admin_adds_an_email_for_someone_verified_at_once(admin_user, viewer):
    response = logged_in(admin_user).post(ADD, {"user": viewer.pk, "kind": "EMAIL", "value": "vera@example.com"})
    assert response.status_code == 302
    email = ContactMethod.objects.get()
    assert (email.user, email.verified_at is not None) == (viewer, True)


def test_a_person_deletes_their_own(viewer):
    mine = contact_add(user=viewer, owner=viewer, kind="EMAIL", value="vera@example.com")
    response = logged_in(viewer).post(reverse("admin:oncall_contactmethod_delete", args=[mine.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not ContactMethod.objects.exists()


# --- paging preferences --------------------------------------------------------------------------------

PREFS = reverse("admin:oncall_pagingpreference_changelist")


@pytest.fixture
def preference_form() -> dict[str, object]:
    return {
        "sms_severities": ["CRITICAL", "HIGH", "MEDIUM"],
        "voice_severities": ["CRITICAL"],
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "quiet_severities": ["CRITICAL"],
        "timezone": "Europe/Paris",
    }


def test_a_viewer_sets_my_paging_preferences(viewer, preference_form):
    client = logged_in(viewer)
    first = client.get(PREFS)
    assert first.status_code == 302 and first["Location"] == reverse("admin:oncall_pagingpreference_add")
    form = client.get(first["Location"])
    assert b"My paging preferences" in form.content and b'type="checkbox"' in form.content

    assert client.post(first["Location"], preference_form).status_code == 302
    preference = PagingPreference.objects.get(user=viewer)
    assert preference.sms_severities == ["CRITICAL", "HIGH", "MEDIUM"]
    assert preference.timezone == "Europe/Paris"
    # From now on the list is their own page.
    assert client.get(PREFS)["Location"] == reverse("admin:oncall_pagingpreference_change", args=[preference.pk])


def test_a_wrong_time_zone_is_refused_on_its_field_and_what_was_typed_stays(viewer, preference_form):
    response = logged_in(viewer).post(
        reverse("admin:oncall_pagingpreference_add"), {**preference_form, "timezone": "Mars/Olympus"}
    )
    assert response.status_code == 200  # the form again, not a redirect to an empty one
    form = response.context["adminform"].form
    assert form.errors["timezone"] == ["Unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Paris."]
    assert b'value="Mars/Olympus"' in response.content and b'value="22:00"' in response.content
    assert form["sms_severities"].value() == ["CRITICAL", "HIGH", "MEDIUM"]
    assert not PagingPreference.objects.exists()


def test_quiet_hours_with_one_end_are_refused_on_the_missing_end_and_nothing_changes(viewer, preference_form):
    client = logged_in(viewer)
    client.post(reverse("admin:oncall_pagingpreference_add"), preference_form)
    mine = PagingPreference.objects.get(user=viewer)
    response = client.post(
        reverse("admin:oncall_pagingpreference_change", args=[mine.pk]),
        {**preference_form, "quiet_start": "23:30", "quiet_end": "", "timezone": "America/New_York"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["quiet_end"] == ["Give both ends of the quiet hours, or neither."]
    assert b'value="23:30"' in response.content and b'value="America/New_York"' in response.content
    mine.refresh_from_db()
    assert (f"{mine.quiet_start:%H:%M}", mine.timezone) == ("22:00", "Europe/Paris")


def test_a_viewer_cannot_open_someone_elses_preferences(viewer, editor, preference_form):
    logged_in(editor).post(reverse("admin:oncall_pagingpreference_add"), preference_form)
    theirs = PagingPreference.objects.get(user=editor)
    client = logged_in(viewer)
    assert client.get(reverse("admin:oncall_pagingpreference_change", args=[theirs.pk])).status_code == 302
    client.post(
        reverse("admin:oncall_pagingpreference_change", args=[theirs.pk]), {**preference_form, "timezone": "UTC"}
    )
    theirs.refresh_from_db()
    assert theirs.timezone == "Europe/Paris"


def test_a_slack_id_someone_else_has_is_refused_with_a_message(viewer, editor):
    contact_add(user=editor, owner=editor, kind="SLACK", value="U024BE7LH")
    response = logged_in(viewer).post(ADD, {"kind": "SLACK", "value": "U024BE7LH"}, follow=True)
    assert any("already verified by another person" in m for m in page_messages(response))
    assert ContactMethod.objects.count() == 1
