"""Cron pings on PostgreSQL with no test transaction around them, as gunicorn serves them.

A ``TestCase`` (or a plain ``django_db`` test) wraps every request in a transaction and SQLite
ignores row locks, so a locked read the service forgot to put in a transaction went unnoticed
there; here each request runs in autocommit, as in production.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from signals_app.models import IngestToken, Run, RunStatus, Signal
from tests.conftest import at_once

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("require_postgres"),
]


@pytest.fixture
def key(active_loader, token_for) -> str:
    return token_for(active_loader, IngestToken.Kind.PING)


def ping(key: str, tail: str = "", body: bytes | None = None) -> tuple[int, str]:
    url = f"/ping/{key}/SALES-DAILY{tail}"
    response = Client().post(url, data=body, content_type="text/plain") if body is not None else Client().get(url)
    return response.status_code, response.content.decode()


FINISHES = [  # (URL tail, status, exit status)
    ("", RunStatus.SUCCEEDED, 0),
    ("/success", RunStatus.SUCCEEDED, 0),
    ("/fail", RunStatus.FAILED, None),
    ("/0", RunStatus.SUCCEEDED, 0),
    ("/1", RunStatus.FAILED, 1),
    ("/255", RunStatus.FAILED, 255),
]


@pytest.mark.parametrize(("tail", "status", "exit_status"), FINISHES)
def test_it_closes_the_started_run_with_every_finishing_form(key, tail, status, exit_status):
    code, text = ping(key, "/start")
    assert code == 200, text
    started = Run.objects.get()
    assert started.status == RunStatus.RUNNING

    code, text = ping(key, tail, body=b"the end of the log")
    assert code == 200, text
    assert text == f"OK {started.run_id} {status}\n"
    run = Run.objects.get()
    assert (run.pk, run.status, run.exit_status, run.source) == (started.pk, status, exit_status, "PING")
    assert run.log_excerpt == "the end of the log"
    assert run.error_text == ("the end of the log" if status == RunStatus.FAILED else "")
    assert Signal.objects.filter(run=run, signal_key="run_status", signal_value=status).count() == 1


@pytest.mark.parametrize(("tail", "status", "exit_status"), FINISHES)
def test_a_finish_without_a_start_records_a_run_that_starts_and_ends_now(key, tail, status, exit_status):
    code, text = ping(key, tail)
    assert code == 200, text
    run = Run.objects.get()
    assert (run.status, run.exit_status, run.source) == (status, exit_status, "PING")
    assert run.started_at <= run.finished_at
    assert run.duration_seconds < 5


def test_rid_closes_exactly_its_run_and_a_repeated_finish_changes_nothing(key):
    night, noon = uuid.uuid4(), uuid.uuid4()
    for rid in (night, noon, night):  # two overlapping runs and a retried start of the first
        assert ping(key, f"/start?rid={rid}")[0] == 200
    assert Run.objects.filter(status=RunStatus.RUNNING).count() == 2

    assert ping(key, f"/1?rid={night}") == (200, f"OK {night} FAILED\n")
    assert ping(key, f"/1?rid={night}") == (200, f"OK {night} FAILED\n")  # curl --retry
    assert ping(key, f"/0?rid={night}") == (200, f"OK {night} FAILED\n")  # a closed run stays as it was
    assert ping(key, f"?rid={noon}") == (200, f"OK {noon} SUCCEEDED\n")
    assert ping(key, f"/fail?rid={noon}") == (200, f"OK {noon} SUCCEEDED\n")

    runs = {run.run_id: run for run in Run.objects.all()}
    assert set(runs) == {night, noon}
    assert (runs[night].status, runs[night].exit_status) == (RunStatus.FAILED, 1)
    assert (runs[noon].status, runs[noon].exit_status) == (RunStatus.SUCCEEDED, 0)
    assert Signal.objects.filter(signal_key="run_status").count() == 2  # the retries stored nothing


def test_a_finish_with_a_new_rid_records_its_own_run(key):
    rid = uuid.uuid4()
    assert ping(key, f"/255?rid={rid}") == (200, f"OK {rid} FAILED\n")
    run = Run.objects.get()
    assert (run.run_id, run.status, run.exit_status) == (rid, RunStatus.FAILED, 255)


def test_repeated_finishes_without_rid_close_the_newest_open_run_first(key):
    assert ping(key, "/start", body=b"first")[0] == 200
    assert ping(key, "/start", body=b"second")[0] == 200  # another body: not a retry, a second run
    older, newer = Run.objects.order_by("started_at")
    assert ping(key, "/0")[1] == f"OK {newer.run_id} SUCCEEDED\n"
    assert ping(key, "/fail")[1] == f"OK {older.run_id} FAILED\n"
    assert ping(key)[0] == 200  # nothing open any more: a run of its own
    assert Run.objects.count() == 3
    assert Run.objects.filter(status=RunStatus.RUNNING).count() == 0


def test_two_finishing_pings_at_once_each_close_one_run(key):
    """A success and a failure racing for one open run: one closes it, the other records its own
    run (as if it came a moment later) — neither is refused as a conflict nor fails."""
    assert ping(key, "/start")[0] == 200
    started = Run.objects.get()
    tails = iter(["/0", "/1"])
    answers = at_once(lambda: ping(key, next(tails)), 2)
    assert [code for code, _text in answers] == [200, 200], answers
    runs = list(Run.objects.order_by("started_at"))
    assert len(runs) == 2
    assert runs[0].pk == started.pk
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED, RunStatus.FAILED}
    assert not Run.objects.filter(status=RunStatus.RUNNING).exists()


def test_two_finishing_pings_at_once_close_two_open_runs(key):
    """Two open runs and two finishes at the same moment: both runs are closed (the second
    finish does not miss the older run because the newer one was taken a moment before)."""
    assert ping(key, "/start", body=b"first")[0] == 200
    assert ping(key, "/start", body=b"second")[0] == 200
    answers = at_once(lambda: ping(key, "/0"), 2)
    assert [code for code, _text in answers] == [200, 200], answers
    assert Run.objects.count() == 2
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}


def test_the_same_finish_at_once_with_a_rid_is_recorded_once(key):
    rid = uuid.uuid4()
    assert ping(key, f"/start?rid={rid}")[0] == 200
    answers = at_once(lambda: ping(key, f"/1?rid={rid}"), 3)
    assert answers == [(200, f"OK {rid} FAILED\n")] * 3
    assert Run.objects.get().status == RunStatus.FAILED
    assert Signal.objects.filter(signal_key="run_status").count() == 1


def test_identical_starts_at_once_without_rid_open_one_run(key):
    answers = at_once(lambda: ping(key, "/start", body=b"nightly"), 3)
    assert [code for code, _text in answers] == [200, 200, 200], answers
    assert len({text for _code, text in answers}) == 1
    assert Run.objects.count() == 1
