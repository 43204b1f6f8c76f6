"""Whom a page may reach: verified phones only, the method's severities, quiet hours read in the
person's time zone (across midnight too), the model's defaults without a preference row."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from oncall.models import ContactKind, ContactMethod, PagingPreference
from oncall.paging import pageable_phones, phone_owner

UTC = dt.UTC
NOON = dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def phone(user, number: str, *, verified: bool = True) -> ContactMethod:
    return ContactMethod.objects.create(
        user=user, kind=ContactKind.PHONE, value=number, verified_at=NOON - dt.timedelta(days=1) if verified else None
    )


@pytest.fixture
def alice(make_user):
    user = make_user(username="alice")
    phone(user, "+14155550100")
    return user


@pytest.fixture
def bob(make_user):
    user = make_user(username="bob")
    phone(user, "+14155550111")
    return user


def test_it_pages_verified_phones_with_the_default_preferences(alice, bob, make_user):
    unverified = make_user(username="carol")
    phone(unverified, "+14155550122", verified=False)
    nobody = make_user(username="dave")

    ids = [alice.pk, bob.pk, unverified.pk, nobody.pk]

    # The defaults: SMS for CRITICAL and HIGH, calls for CRITICAL only, no quiet hours.
    assert pageable_phones(ids, "sms", "HIGH", NOON) == {alice.pk: "+14155550100", bob.pk: "+14155550111"}
    assert pageable_phones(ids, "voice", "HIGH", NOON) == {}
    assert pageable_phones(ids, "voice", "CRITICAL", NOON) == {alice.pk: "+14155550100", bob.pk: "+14155550111"}
    assert pageable_phones(ids, "sms", "LOW", NOON) == {}


def test_it_honours_each_persons_severities(alice, bob):
    PagingPreference.objects.create(user=alice, sms_severities=["CRITICAL", "HIGH", "MEDIUM"], voice_severities=[])

    assert pageable_phones([alice.pk, bob.pk], "sms", "MEDIUM", NOON) == {alice.pk: "+14155550100"}
    assert pageable_phones([alice.pk, bob.pk], "voice", "CRITICAL", NOON) == {bob.pk: "+14155550111"}


def test_quiet_hours_across_midnight_are_read_in_the_persons_zone(alice):
    # 22:00–07:00 in Berlin (UTC+1 in December): only CRITICAL then.
    PagingPreference.objects.create(
        user=alice,
        timezone="Europe/Berlin",
        quiet_start=dt.time(22, 0),
        quiet_end=dt.time(7, 0),
        quiet_severities=["CRITICAL"],
    )

    def paged(hour: int, minute: int = 0, severity: str = "HIGH") -> bool:
        at = dt.datetime(2026, 12, 5, hour, minute, tzinfo=UTC)
        return alice.pk in pageable_phones([alice.pk], "sms", severity, at)

    assert paged(20, 59)  # 21:59 in Berlin
    assert not paged(21, 0)  # 22:00: quiet from here
    assert not paged(3)  # 04:00
    assert not paged(5, 59)  # 06:59
    assert paged(6, 0)  # 07:00: the end is not quiet
    assert paged(3, severity="CRITICAL")  # what still pages in quiet hours


def test_quiet_hours_within_one_day(alice):
    PagingPreference.objects.create(
        user=alice, timezone="UTC", quiet_start=dt.time(12, 0), quiet_end=dt.time(14, 0), quiet_severities=[]
    )

    assert pageable_phones([alice.pk], "sms", "CRITICAL", NOON) == {}
    assert pageable_phones([alice.pk], "sms", "CRITICAL", NOON + dt.timedelta(hours=2)) == {alice.pk: "+14155550100"}


def test_it_reads_everyone_in_two_queries(alice, bob):
    PagingPreference.objects.create(user=alice)

    with CaptureQueriesContext(connection) as queries:
        pageable_phones([alice.pk, bob.pk], "sms", "CRITICAL", NOON)

    assert len(queries) == 2


def test_nobody_asked_reads_nothing(db):
    with CaptureQueriesContext(connection) as queries:
        assert pageable_phones([], "sms", "CRITICAL", NOON) == {}
    assert len(queries) == 0


def test_an_unknown_method_is_refused(alice):
    with pytest.raises(ValueError, match="'sms' or 'voice'"):
        pageable_phones([alice.pk], "email", "CRITICAL", NOON)


def test_the_owner_of_a_phone_is_its_verified_owner(alice, make_user):
    other = make_user(username="mallory")
    phone(other, "+14155550100", verified=False)  # claims alice's number, never verified it

    assert phone_owner("+14155550100") == alice
    assert phone_owner("+14155550199") is None
