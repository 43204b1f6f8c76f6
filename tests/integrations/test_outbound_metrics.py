"""ETL Monitor's own calls to other services (``http_client_request_duration_seconds``): each
transport's send and each source query, with its real client against a local server speaking the
receiver's protocol, records exactly one observation, labelled by the kind of receiver and how the
call ended — never by a URL, host or name an admin typed."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pytest_httpserver import HTTPServer
from werkzeug import Response

from etl_monitor.metrics import HTTP_CLIENT_REQUEST_SECONDS, Outcome, TargetService, http_client_call
from incidents.kinds import SourceUnavailable
from incidents.services import incident_acknowledge
from integrations.models import Channel, ChannelKind, DataSource, DeliveryStatus, SourceKind
from integrations.notifications.outbox import channel_test
from integrations.sources.clients import es_search, prom_query
from tests.integrations.conftest import FakeSlack, WebhookReceiver
from tests.integrations.jira_fake import FakeJira, serve
from tests.integrations.test_elasticsearch import ES, es_answer
from tests.mailbox import Mailbox
from tests.net import free_port

NAME = "http_client_request_duration_seconds"


def observations() -> Counter[tuple[str, str]]:
    """Observations so far, by (target_service, outcome); every one labelled service=etl-monitor."""
    counts: Counter[tuple[str, str]] = Counter()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == f"{NAME}_count":
                assert sample.labels["service"] == "etl-monitor"
                counts[(sample.labels["target_service"], sample.labels["outcome"])] += int(sample.value)
    return counts


def recorded(action: Callable[[], Any]) -> Counter[tuple[str, str]]:
    """The observations ``action`` adds (what raised is the caller's to check)."""
    before = observations()
    with contextlib.suppress(SourceUnavailable):
        action()
    after = observations()
    return Counter({key: after[key] - before[key] for key in after if after[key] != before[key]})


def one(target: TargetService, outcome: Outcome) -> Counter[tuple[str, str]]:
    return Counter({(str(target), str(outcome)): 1})


# --- the measurement itself ---------------------------------------------------------------------------


def test_a_target_outside_the_vocabulary_is_refused_before_anything_is_recorded():
    before = observations()
    with pytest.raises(ValueError), http_client_call("https://hooks.example.com/T0/secret"):  # type: ignore[arg-type]
        pass
    assert observations() == before


def test_the_outcome_follows_the_status_the_block_saw_or_the_exception_it_raised():
    def status(code: int) -> None:
        with http_client_call(TargetService.WEBHOOK) as call:
            call.status = code

    def refused() -> None:
        with http_client_call(TargetService.WEBHOOK):
            raise ConnectionRefusedError(111, "Connection refused")

    assert recorded(lambda: status(204)) == one(TargetService.WEBHOOK, Outcome.SUCCESS)
    assert recorded(lambda: status(404)) == one(TargetService.WEBHOOK, Outcome.CLIENT_ERROR)
    assert recorded(lambda: status(503)) == one(TargetService.WEBHOOK, Outcome.SERVER_ERROR)
    with pytest.raises(ConnectionRefusedError):
        refused()
    assert observations()[("webhook", "error")] >= 1


def test_the_buckets_reach_the_clients_timeouts():
    bounds = HTTP_CLIENT_REQUEST_SECONDS._upper_bounds
    assert bounds[0] <= 0.01 and 60 in bounds  # a 10 ms answer and a 30 s timeout both land in a finite bucket


# --- notification channels -------------------------------------------------------------------------------


def test_an_email_records_one_smtp_call_per_send_by_what_the_server_answered(admin_user, mailbox: Mailbox):
    email = Channel.objects.get(name="email")
    send = lambda to: channel_test(user=admin_user, channel=email, target=to)  # noqa: E731

    assert recorded(lambda: send("ada@example.com")) == one(TargetService.SMTP, Outcome.SUCCESS)
    mailbox.refused.add("gone@example.com")
    assert recorded(lambda: send("gone@example.com")) == one(TargetService.SMTP, Outcome.CLIENT_ERROR)
    mailbox.stop()
    assert recorded(lambda: send("ada@example.com")) == one(TargetService.SMTP, Outcome.ERROR)


def test_email_through_an_in_memory_backend_calls_nobody(admin_user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email = Channel.objects.get(name="email")
    added = recorded(lambda: channel_test(user=admin_user, channel=email, target="ada@example.com"))
    assert added == Counter()


def test_a_slack_post_records_one_call_by_slacks_answer(admin_user, slack: FakeSlack):
    channel = Channel.objects.get(name="slack")
    post = lambda: channel_test(user=admin_user, channel=channel, target="#alerts-low")  # noqa: E731

    assert recorded(post) == one(TargetService.SLACK, Outcome.SUCCESS)
    slack.fail_next("chat.postMessage", "invalid_auth")  # HTTP 200, {"ok": false}: Slack says no
    assert recorded(post) == one(TargetService.SLACK, Outcome.CLIENT_ERROR)
    channel.healthy = True
    channel.save()
    slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=1)
    assert recorded(post) == one(TargetService.SLACK, Outcome.CLIENT_ERROR)
    slack.fail_next("chat.postMessage", "internal_error", status=500)
    assert recorded(post) == one(TargetService.SLACK, Outcome.SERVER_ERROR)


def test_an_opened_incident_records_one_call_per_message_and_an_update_with_its_thread_reply_one(
    open_incident, mailbox: Mailbox, slack: FakeSlack, operator, django_capture_on_commit_callbacks
):
    incident = None

    def open_() -> None:
        nonlocal incident
        incident = open_incident()

    opened = recorded(open_)
    assert opened == one(TargetService.SMTP, Outcome.SUCCESS) + one(TargetService.SLACK, Outcome.SUCCESS)

    def acknowledge() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            incident_acknowledge(user=operator, incident=incident)

    assert recorded(acknowledge) == one(TargetService.SLACK, Outcome.SUCCESS)
    [post] = slack.posts("#alerts-high")
    assert "*Acknowledged*" in json.dumps(post["blocks"], ensure_ascii=False)  # updated in place
    assert len(slack.replies(post)) == 1  # two requests (chat.update, a reply in the thread), one send


def test_a_slack_incoming_webhook_records_one_slack_call(admin_user, httpserver: HTTPServer):
    httpserver.expect_ordered_request("/services/T0/B0/ok", method="POST").respond_with_data("ok")
    httpserver.expect_ordered_request("/services/T0/B0/ok", method="POST").respond_with_data(
        "service_unavailable", status=503
    )
    channel = Channel.objects.create(
        name="slack-hook", kind=ChannelKind.SLACK_WEBHOOK, secret=httpserver.url_for("/services/T0/B0/ok")
    )
    assert recorded(lambda: channel_test(user=admin_user, channel=channel)) == one(TargetService.SLACK, Outcome.SUCCESS)
    failed = recorded(lambda: channel_test(user=admin_user, channel=channel))
    assert failed == one(TargetService.SLACK, Outcome.SERVER_ERROR)


def test_a_webhook_records_one_call_by_its_status_or_error(admin_user, webhook: WebhookReceiver):
    hook = Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=webhook.SECRET)
    send = lambda: channel_test(user=admin_user, channel=hook)  # noqa: E731

    assert recorded(send) == one(TargetService.WEBHOOK, Outcome.SUCCESS)
    webhook.failures_left = 1
    assert recorded(send) == one(TargetService.WEBHOOK, Outcome.SERVER_ERROR)
    Channel.objects.filter(pk=hook.pk).update(secret="wrong")  # the receiver answers 401
    hook.refresh_from_db()
    assert recorded(send) == one(TargetService.WEBHOOK, Outcome.CLIENT_ERROR)
    Channel.objects.filter(pk=hook.pk).update(url=f"http://127.0.0.1:{free_port()}/hook", healthy=True)
    hook.refresh_from_db()
    delivery = None

    def refused() -> None:
        nonlocal delivery
        delivery = channel_test(user=admin_user, channel=hook)

    assert recorded(refused) == one(TargetService.WEBHOOK, Outcome.ERROR)
    assert delivery.status == DeliveryStatus.FAILED and "unreachable" in delivery.last_error


def test_a_jira_send_is_one_observation_however_many_requests_it_takes(admin_user, settings):
    fake = FakeJira()
    stop = serve(fake)
    try:
        settings.JIRA_ENABLED = True
        settings.JIRA_BASE_URL = fake.url
        settings.JIRA_USERNAME, settings.JIRA_API_TOKEN = "bot@example.com", "jira-token"
        settings.JIRA_PROJECT = "OPS"
        channel = Channel.objects.get(kind=ChannelKind.JIRA)
        # The channel's test runs the connection checks: server info, myself, project, fields… (several requests).
        assert recorded(lambda: channel_test(user=admin_user, channel=channel)) == one(
            TargetService.JIRA, Outcome.SUCCESS
        )
        assert len(fake.calls()) > 1
        settings.JIRA_PROJECT = "NOPE"  # Jira answers, and the check finds no such project: Jira refuses
        assert recorded(lambda: channel_test(user=admin_user, channel=channel)) == one(
            TargetService.JIRA, Outcome.CLIENT_ERROR
        )
        settings.JIRA_PROJECT = "OPS"
        Channel.objects.filter(pk=channel.pk).update(healthy=True)
        settings.JIRA_API_TOKEN = "revoked"  # a new client: Jira answers 401 to its first request
        assert recorded(lambda: channel_test(user=admin_user, channel=channel)) == one(
            TargetService.JIRA, Outcome.CLIENT_ERROR
        )
    finally:
        stop()


# --- data sources ------------------------------------------------------------------------------------------


def prometheus_answer(status: int = 200) -> Response:
    """Prometheus's HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/)."""
    if status == 200:
        body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}}
    else:
        body = {"status": "error", "errorType": "bad_data" if status == 400 else "unavailable", "error": "no"}
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, Outcome.SUCCESS), (400, Outcome.CLIENT_ERROR), (503, Outcome.SERVER_ERROR)]
)
def test_a_prometheus_query_records_one_call(httpserver: HTTPServer, db, status: int, outcome: Outcome):
    httpserver.expect_request("/api/v1/query").respond_with_response(prometheus_answer(status))
    source = DataSource(name=f"prom-{status}", kind=SourceKind.PROMETHEUS, url=httpserver.url_for("/"))
    added = recorded(lambda: prom_query(source, "up", dt.datetime.now(dt.UTC).timestamp()))
    assert added == one(TargetService.PROMETHEUS, outcome)


def test_an_unreachable_prometheus_is_an_error(db):
    source = DataSource(name="prom-down", kind=SourceKind.PROMETHEUS, url=f"http://127.0.0.1:{free_port()}")
    added = recorded(lambda: prom_query(source, "up", dt.datetime.now(dt.UTC).timestamp()))
    assert added == one(TargetService.PROMETHEUS, Outcome.ERROR)


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, Outcome.SUCCESS), (403, Outcome.CLIENT_ERROR), (503, Outcome.SERVER_ERROR)]
)
def test_an_elasticsearch_search_records_one_call(httpserver: HTTPServer, db, status: int, outcome: Outcome):
    body = es_answer(3, []) if status == 200 else {"error": {"type": "x", "reason": "no"}, "status": status}
    httpserver.expect_request("/logs-*/_search").respond_with_response(
        Response(json.dumps(body), status=status, headers=ES)
    )
    source = DataSource(name=f"es-{status}", kind=SourceKind.ELASTICSEARCH, url=httpserver.url_for("/"))
    added = recorded(lambda: es_search(source, "logs-*", {"size": 0, "query": {"match_all": {}}}))
    assert added == one(TargetService.ELASTICSEARCH, outcome)


def test_no_label_carries_a_url_host_or_name(admin_user, webhook: WebhookReceiver, db):
    hook = Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=webhook.SECRET)
    channel_test(user=admin_user, channel=hook)
    allowed = {"service": {"etl-monitor"}, "target_service": set(TargetService), "outcome": set(Outcome)}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name.startswith(NAME):
                labels = {k: v for k, v in sample.labels.items() if k != "le"}
                assert all(value in allowed[name] for name, value in labels.items()), labels
                assert not any("127.0.0.1" in value or "/" in value for value in labels.values())
