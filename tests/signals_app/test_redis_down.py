"""Ingestion while Redis is away: the database is the record, so runs, signals and pings are stored
and answered as usual whether or not the cache (ingest rate limit) or the broker (the fast
detection path, notification sends) answers — quickly, with a warning in the log and a metric.

The broker tests run with eager Celery off, so kombu really tries to publish, and outside a test
transaction, so the post-commit enqueue runs as it does in production.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from etl_monitor import outage
from etl_monitor.celery import app
from signals_app.models import IngestToken, Run, RunStatus, Signal
from tests.conftest import redis_cache
from tests.processes import RedisServer
from tests.signals_app.conftest import signal

FAST_PATH_TASK = "incidents.tasks.rules_evaluate_for_loader"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rate_limit_unavailable() -> float:
    return sample("ingest_rate_limit_unavailable_total")


def publish_failed(task: str = FAST_PATH_TASK) -> float:
    return sample("broker_publish_failed_total", task=task)


def post(client: APIClient, url: str, payload: Any, method: str = "post") -> tuple[int, Any, float]:
    """Send JSON; return the status, the answer and how long it took."""
    started = time.monotonic()
    response = getattr(client, method)(url, json.dumps(payload), content_type="application/json")
    body = response.json() if response.content else None
    return response.status_code, body, time.monotonic() - started


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "etl_monitor.outage" and r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def _outages_forgotten() -> Iterator[None]:
    # Outages are remembered per process: one test's Redis outage must not carry over to the next.
    outage.outages_reset()
    yield
    outage.outages_reset()


@pytest.fixture
def never_answers() -> Iterator[str]:
    """A Redis address that accepts connections and never answers (a hung or overloaded Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


# --- (a) the cache is down: the rate limit fails open ---------------------------------------------


def test_signals_runs_and_tokens_are_stored_while_the_cache_is_down(cache_down, job, editor, active_loader):
    before = rate_limit_unavailable()
    assert post(job, "/api/v1/signals/", signal())[:2] == (201, {"accepted": 1})
    assert post(job, "/api/v1/signals/", [signal(signal_key=f"k{i}") for i in range(3)])[:2] == (201, {"accepted": 3})
    code, run, _ = post(job, "/api/v1/runs/", {"loader_code": "SALES-DAILY"})
    assert code == 201, run
    code, finished, _ = post(job, f"/api/v1/runs/{run['run_id']}/", {"status": "SUCCEEDED"}, method="patch")
    assert (code, finished["status"]) == (200, "SUCCEEDED")

    people = APIClient()
    people.force_authenticate(editor)
    code, token, _ = post(people, "/api/v1/loaders/SALES-DAILY/tokens/", {"name": "second job"})
    assert code == 201, token

    assert Signal.objects.filter(signal_key__in=["rows_loaded", "k0", "k1", "k2"]).count() == 4
    assert Run.objects.get().status == RunStatus.SUCCEEDED
    assert IngestToken.objects.filter(name="second job").exists()
    assert rate_limit_unavailable() - before == 4  # every rate-limited request that went through unlimited


def test_a_person_gets_an_api_token_while_the_cache_is_down_and_the_lockout_still_counts(cache_down, editor, settings):
    settings.AXES_FAILURE_LIMIT = 3  # the lockout keeps its count in the database, not in the cache
    client = APIClient()

    def login(password: str) -> Any:
        return client.post("/api/v1/auth/token/", {"username": editor.username, "password": password}, format="json")

    answer = login("pw-for-tests-123")
    assert answer.status_code == 200, answer.content
    assert answer.json()["token"]
    assert [login(f"guess-{n}").status_code for n in range(3)] == [400, 400, 429]  # locked at the third
    assert login("pw-for-tests-123").status_code == 429


def test_the_cache_outage_is_logged_once_not_per_request(cache_down, job, caplog):
    caplog.set_level(logging.INFO)
    before = rate_limit_unavailable()
    started = time.monotonic()
    for i in range(10):
        assert post(job, "/api/v1/signals/", signal(signal_key=f"k{i}"))[0] == 201
    assert time.monotonic() - started < 5  # no request waits for the cache
    assert Signal.objects.count() == 10
    assert rate_limit_unavailable() - before == 10
    warnings = outage_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cache" in warnings[0].getMessage() and "rate limit" in warnings[0].getMessage()


def test_a_hung_cache_costs_one_request_its_timeout_and_the_next_ones_nothing(settings, never_answers, job):
    settings.CACHES = redis_cache(never_answers, timeout=0.5)
    settings.REDIS_RETRY_SECONDS = 60
    code, _body, first = post(job, "/api/v1/signals/", signal())
    assert code == 201
    assert first < 3
    later = [post(job, "/api/v1/signals/", signal(signal_key=f"k{i}")) for i in range(5)]
    assert [code for code, _body, _took in later] == [201] * 5
    assert sum(took for _code, _body, took in later) < 1.5  # the cache is not asked again for a while
    assert Signal.objects.count() == 6


def test_the_rate_limit_applies_again_once_the_cache_is_back(settings, nothing_listens, job):
    from django.core.cache import cache

    settings.SIGNAL_INGEST_RATE = "2/min"
    settings.REDIS_RETRY_SECONDS = 0
    healthy = settings.CACHES
    settings.CACHES = redis_cache(nothing_listens)
    for i in range(4):  # over the limit, but nothing can count: all accepted
        assert post(job, "/api/v1/signals/", signal(signal_key=f"k{i}"))[0] == 201
    settings.CACHES = healthy
    cache.clear()
    assert [post(job, "/api/v1/signals/", signal())[0] for _ in range(3)] == [201, 201, 429]


# --- (b) the broker is down: what was stored is answered as stored ------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_signal_is_stored_and_answered_201_while_the_broker_is_down(broker_down, job, caplog):
    caplog.set_level(logging.INFO)
    before = publish_failed()
    answers = [post(job, "/api/v1/signals/", signal(validation_status="FAILED", signal_key=f"k{i}")) for i in range(3)]
    assert [code for code, _body, _took in answers] == [201, 201, 201], answers
    assert max(took for _code, _body, took in answers) < 1.0, answers
    assert Signal.objects.filter(validation_status="FAILED").count() == 3
    assert publish_failed() - before == 3
    assert len(outage_warnings(caplog)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_and_a_failing_ping_are_recorded_while_the_broker_is_down(
    broker_down, job, token_for, active_loader
):
    before = publish_failed()
    code, run, _ = post(job, "/api/v1/runs/", {"loader_code": "SALES-DAILY"})
    assert code == 201
    code, finished, took = post(job, f"/api/v1/runs/{run['run_id']}/", {"status": "FAILED"}, method="patch")
    assert (code, finished["status"]) == (200, "FAILED")
    assert took < 1.0

    key = token_for(active_loader, IngestToken.Kind.PING)
    rid = uuid.uuid4()
    response = APIClient().post(f"/ping/{key}/SALES-DAILY/1?rid={rid}", b"disk full", content_type="text/plain")
    assert (response.status_code, response.content.decode()) == (200, f"OK {rid} FAILED\n")
    assert Run.objects.filter(status=RunStatus.FAILED).count() == 2
    assert publish_failed() - before == 2


@pytest.mark.django_db(transaction=True)
def test_the_failure_left_by_the_fast_path_is_caught_at_the_next_detection_tick(broker_down, job, monkeypatch):
    from incidents.models import DetectionRule, Incident
    from incidents.tasks import detection_tick

    DetectionRule.objects.update_or_create(
        name="Run failed", defaults={"kind": "run_failed", "threshold": 0.0, "window_seconds": 900, "enabled": True}
    )
    _code, run, _ = post(job, "/api/v1/runs/", {"loader_code": "SALES-DAILY"})
    assert post(job, f"/api/v1/runs/{run['run_id']}/", {"status": "FAILED"}, method="patch")[0] == 200
    assert not Incident.objects.exists()  # the fast path could not be queued

    monkeypatch.setitem(app.conf, "task_always_eager", True)  # the broker is back; the beat's tick runs
    detection_tick()
    assert Incident.objects.filter(rule__name="Run failed", loader__loader_code="SALES-DAILY").exists()


@pytest.mark.django_db(transaction=True)
def test_a_notification_not_queued_while_the_broker_is_down_is_sent_by_the_sweep(
    active_loader, operator, settings, monkeypatch, broker_at, nothing_listens
):
    from django.utils import timezone

    from incidents.detection import rule_evaluate
    from incidents.models import DetectionRule, Incident
    from integrations.models import Channel, Delivery, DeliveryStatus, NotificationRule
    from integrations.notifications.outbox import deliveries_recover
    from tests.incidents.conftest import add_signals
    from tests.integrations.fakes import FakeSlack, serve

    slack = FakeSlack()
    stop = serve(slack)
    try:
        settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
        Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
        NotificationRule.objects.update_or_create(
            severity="MEDIUM", team=None, tag=None, defaults={"channels": ["slack"], "slack_channel": "#alerts-medium"}
        )
        rule = DetectionRule.objects.create(
            name="broker-down", kind="signal_failure_rate", threshold=5.0, severity="MEDIUM"
        )
        now = timezone.now()
        add_signals(active_loader, failed=5, ok=5, at=now)
        rule_evaluate(rule=rule, now=now)  # eager: the opening message goes out at once
        incident = Incident.objects.get(rule=rule)
        assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 1

        broker_at(nothing_listens)
        unqueued = publish_failed("integrations.tasks.deliveries_send")
        people = APIClient()
        people.force_authenticate(operator)
        code, body, took = post(people, f"/api/v1/incidents/{incident.pk}/acknowledge/", {"comment": "on it"})
        assert code == 200, body
        assert took < 1.0
        waiting = Delivery.objects.get(status=DeliveryStatus.PENDING)
        assert publish_failed("integrations.tasks.deliveries_send") - unqueued == 1

        monkeypatch.setitem(app.conf, "task_always_eager", True)  # the broker is back; the beat's sweep runs
        settings.NOTIFY_SWEEP_GRACE_SECONDS = 0
        assert deliveries_recover()["enqueued"] == 1
        waiting.refresh_from_db()
        assert waiting.status == DeliveryStatus.SENT
        assert slack.calls_to("chat.update")  # the opening message now says it was acknowledged
    finally:
        stop()


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_never_answers_costs_one_request_its_timeout_and_the_next_ones_nothing(
    broker_at, never_answers, settings, job
):
    settings.REDIS_TIMEOUT_SECONDS = 0.5
    settings.REDIS_RETRY_SECONDS = 60
    broker_at(never_answers)
    code, _body, first = post(job, "/api/v1/signals/", signal(validation_status="FAILED"))
    assert code == 201
    assert first < 3
    later = [post(job, "/api/v1/signals/", signal(validation_status="FAILED", signal_key=f"k{i}")) for i in range(5)]
    assert [code for code, _body, _took in later] == [201] * 5
    assert sum(took for _code, _body, took in later) < 1.5
    assert Signal.objects.count() == 6


# --- a real Redis stopped and started again --------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_ingestion_goes_on_while_redis_restarts_and_recovers_without_a_restart(
    own_redis: RedisServer, broker_at, settings, job
):
    settings.CACHES = redis_cache(own_redis.url, timeout=1)
    settings.SIGNAL_INGEST_RATE = "3/min"
    settings.REDIS_RETRY_SECONDS = 0  # ask again at once: the recovery is seen by the next request
    broker_at(own_redis.url)

    def failed(i: int) -> tuple[int, Any, float]:
        return post(job, "/api/v1/signals/", signal(validation_status="FAILED", signal_key=f"k{i}"))

    assert failed(0)[0] == 201
    assert own_redis.queued() == 1  # the fast path was queued

    own_redis.stop()
    limited, unqueued = rate_limit_unavailable(), publish_failed()
    away = [failed(i) for i in range(1, 6)]  # more than the rate allows: nothing can count them
    assert [code for code, _body, _took in away] == [201] * 5
    assert max(took for _code, _body, took in away) < 1.0
    assert rate_limit_unavailable() - limited == 5
    assert publish_failed() - unqueued == 5

    own_redis.start()  # empty: the counters and the queue start again
    assert [failed(i)[0] for i in range(6, 10)] == [201, 201, 201, 429]
    assert own_redis.queued() == 3  # the same web process queues again, no restart needed
    assert Signal.objects.filter(validation_status="FAILED").count() == 9
