"""Signal ingestion: scope, batches all-or-nothing, idempotency, validation users will hit."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from signals_app.models import IngestToken, Signal
from tests.conftest import redis_cache
from tests.signals_app.conftest import signal


def post(client: APIClient, payload, **extra):
    return client.post("/api/v1/signals/", json.dumps(payload), content_type="application/json", **extra)


def test_it_stores_one_signal(job, active_loader):
    response = post(job, signal(captured_at="2026-11-28T02:31:00Z", correlation_id="c-1"))
    assert response.status_code == 201, response.content
    assert response.json() == {"accepted": 1}
    stored = Signal.objects.get()
    assert (stored.loader, stored.value_number, stored.signal_value) == (active_loader, 1234.0, "1234")
    assert stored.captured_at == dt.datetime(2026, 11, 28, 2, 31, tzinfo=dt.UTC)
    assert (stored.correlation_id, stored.no_active_version) == ("c-1", False)


def test_text_values_keep_a_number_when_they_parse(job):
    post(job, [signal(signal_value="42.5"), signal(signal_value="n/a"), signal(signal_value=True)])
    values = sorted((s.signal_value, s.value_number) for s in Signal.objects.all())
    assert values == [("42.5", 42.5), ("n/a", None), ("true", 1.0)]


def test_a_batch_is_all_or_nothing_with_errors_by_index(job):
    batch = [signal(), signal(validation_status="MAYBE"), signal(), signal(signal_key="", captured_at="yesterday")]
    response = post(job, batch)
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"1", "3"}
    assert "validation_status" in errors["1"]
    assert set(errors["3"]) == {"signal_key", "captured_at"}
    assert not Signal.objects.exists()


def test_a_token_cannot_write_for_another_loader(job, new_loader):
    new_loader("OTHER-LOADER")
    response = post(job, [signal(), signal(loader_code="OTHER-LOADER")])
    assert response.status_code == 403
    assert "may not write for loader OTHER-LOADER" in response.json()["detail"]
    assert not Signal.objects.exists()


def test_tokens_are_stored_hashed_and_revocable(job, active_loader, editor):
    token = IngestToken.objects.get()
    assert len(token.token_hash) == 64 and token.prefix.startswith("etlm_")
    from signals_app import tokens

    tokens.ingest_token_revoke(user=editor, token=token)
    response = post(job, signal())
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_idempotent_retries_store_once_and_answer_the_same(job):
    batch = [signal(idempotency_key=f"k-{i}") for i in range(3)]
    first = post(job, batch)
    second = post(job, batch)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() == {"accepted": 3}
    assert Signal.objects.count() == 3


@pytest.mark.parametrize(
    ("count", "keyed"), [(1, False), (1, True), (25, False), (25, True)], ids=["one", "one-keyed", "many", "many-keyed"]
)
def test_attributes_are_stored_as_sent_whichever_way_the_batch_is_written(job, count, keyed):
    attributes = {"host": "etl-01", "rows": [1, 2], "nested": {"ok": True, "ratio": 0.5}, "note": "ünïcode"}
    batch = [
        signal(signal_key=f"k{i}", attributes=attributes, **({"idempotency_key": f"a-{i}"} if keyed else {}))
        for i in range(count)
    ]
    assert post(job, batch).json() == {"accepted": count}
    assert [s.attributes for s in Signal.objects.all()] == [attributes] * count


def test_the_same_key_twice_in_one_batch_is_an_error(job):
    response = post(job, [signal(idempotency_key="k"), signal(idempotency_key="k")])
    assert response.status_code == 400
    assert not Signal.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (signal(loader_code="NOPE"), "loader_code", "Unknown loader"),
        (signal(captured_at=(timezone.now() + dt.timedelta(hours=1)).isoformat()), "captured_at", "future"),
        (signal(captured_at="2026-11-28T02:31:00"), "captured_at", "time zone"),
        (signal(signal_value=[1, 2]), "signal_value", "number, a string"),
        (signal(bogus=1), "bogus", "Unknown field"),
        (signal(attributes="x"), "attributes", "JSON object"),
        (signal(run_id="00000000-0000-0000-0000-000000000000"), "run_id", "Unknown run"),
        (signal(validation_status=["SUCCESS"]), "validation_status", "Must be one of SUCCESS, FAILED"),
        (signal(metric_type={}), "metric_type", "Must be one of ROW_COUNT"),
        (signal(metric_source=[]), "metric_source", "Must be one of"),
    ],
)
def test_validation_names_the_field(job, payload, field, message):
    response = post(job, payload)
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


def test_non_finite_numbers_are_refused(job):
    response = job.post(
        "/api/v1/signals/",
        '{"loader_code": "SALES-DAILY", "signal_key": "x", "signal_value": NaN, "validation_status": "SUCCESS"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "finite" in response.json()["detail"]


def test_wrong_content_type_is_415(job):
    response = job.post("/api/v1/signals/", "loader_code=SALES-DAILY", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_oversized_bodies_are_413(job, settings):
    settings.SIGNAL_MAX_BODY_BYTES = 1000
    response = post(job, [signal() for _ in range(20)])
    assert response.status_code == 413


def test_batches_over_the_limit_are_refused(job, settings):
    settings.SIGNAL_BATCH_MAX = 5
    response = post(job, [signal() for _ in range(6)])
    assert response.status_code == 400
    assert "At most 5 signals" in response.json()["non_field_errors"][0]


def test_too_many_requests_get_429_with_retry_after(job, settings):
    from django.core.cache import cache

    cache.clear()
    settings.SIGNAL_INGEST_RATE = "2/min"
    assert post(job, signal()).status_code == 201
    assert post(job, signal()).status_code == 201
    response = post(job, signal())
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_the_rate_limit_on_redis_counts_in_one_key_per_window_that_expires(job, settings, require_redis):
    import redis
    from django.core.cache import cache

    settings.CACHES = redis_cache(require_redis)
    settings.SIGNAL_INGEST_RATE = "2/min"
    cache.clear()
    assert [post(job, signal()).status_code for _ in range(3)] == [201, 201, 429]
    server = redis.Redis.from_url(require_redis)
    keys = server.keys("*ingest-rate:*")
    assert len(keys) == 1 and int(server.get(keys[0])) == 3
    assert 0 < server.ttl(keys[0]) <= 65  # the window (60 s) and a margin, renewed with each count


def test_onboarding_loaders_are_accepted_and_marked(token_for, new_loader):
    loader = new_loader("NEW-ONE")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(loader)}")
    assert post(client, signal(loader_code="NEW-ONE")).status_code == 201
    assert Signal.objects.get().no_active_version is True


def test_paused_loaders_are_accepted_and_flagged(job, active_loader):
    active_loader.is_paused = True
    active_loader.save()
    assert post(job, signal()).status_code == 201
    assert Signal.objects.get().loader_paused is True


def test_users_with_the_right_role_may_ingest_with_their_own_token(editor, viewer, active_loader):
    client = APIClient()
    client.force_authenticate(editor)
    assert post(client, signal()).status_code == 201
    client.force_authenticate(viewer)
    assert post(client, signal()).status_code == 403


def test_reading_signals_with_filters_and_cursor_pages(job, viewer):
    post(job, [signal(signal_key=f"k{i}", validation_status="FAILED" if i % 2 else "SUCCESS") for i in range(5)])
    client = APIClient()
    client.force_authenticate(viewer)
    page = client.get("/api/v1/signals/?loader=SALES-DAILY&status=FAILED&page_size=1").json()
    assert len(page["results"]) == 1 and page["next"]
    second = client.get(page["next"]).json()
    assert len(second["results"]) == 1 and second["results"][0]["validation_status"] == "FAILED"
    assert job.get("/api/v1/signals/").status_code == 403  # ingest tokens write, they don't read


def test_huge_integers_and_upper_case_run_ids(job):
    response = post(job, signal(signal_value=10**400))
    assert response.status_code == 400 and "signal_value" in response.json()
    run_id = job.post(
        "/api/v1/runs/", json.dumps({"loader_code": "SALES-DAILY"}), content_type="application/json"
    ).json()["run_id"]
    assert post(job, signal(run_id=run_id.upper())).status_code == 201


def test_the_future_tolerance_message_counts_whole_days(job, settings):
    settings.SIGNAL_FUTURE_TOLERANCE_SECONDS = 2 * 86400
    response = post(job, signal(captured_at=(timezone.now() + dt.timedelta(days=3)).isoformat()))
    assert "172800 s in the future" in response.json()["captured_at"][0]
