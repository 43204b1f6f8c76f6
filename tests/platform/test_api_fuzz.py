"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): no 5xx, ever.

Each operation's Hypothesis strategy comes from the served schema; every
generated request (valid and invalid bodies, parameters and paths) goes through
the real WSGI application — the ingest endpoints with a real ingest token, the
registry endpoints with an Admin user's API token. FUZZ_EXAMPLES raises the
number of examples per operation for a longer local run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, given, settings

from etl_monitor.roles import Role
from etl_monitor.tokens import api_token_create
from etl_monitor.wsgi import application
from signals_app import services

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SCOPES = {
    # scope: (paths, which credentials, operations that must be covered)
    "ingest": (r"^/api/v1/(signals|runs|whoami)/", "ingest", {"POST /api/v1/signals/", "PATCH /api/v1/runs/{run_id}/"}),
    "registry": (r"^/api/v1/(loaders|auth)/", "user", {"PATCH /api/v1/loaders/{loader_code}/"}),
    "incidents": (r"^/api/v1/(rules|silences|incidents)/", "user", {"POST /api/v1/rules/", "POST /api/v1/silences/"}),
    "notifications": (
        r"^/api/v1/(notification-rules|channels|deliveries)/",
        "user",
        {"POST /api/v1/notification-rules/", "POST /api/v1/channels/", "POST /api/v1/deliveries/{id}/retry/"},
    ),
}


@pytest.fixture
def keep_test_connection():
    """Calling the WSGI app directly fires request_started/finished, whose handler would close
    the test's database connection mid-transaction; Django's own test client detaches it too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("scope", list(SCOPES))
def test_the_api_never_answers_5xx(scope, make_user, active_loader, editor, keep_test_connection):
    paths, credentials, must_cover = SCOPES[scope]
    _token, key = api_token_create(user=make_user(Role.ADMIN))
    _token, ingest = services.ingest_token_create(user=editor, loader=active_loader, name="fuzz")
    header = f"Bearer {ingest}" if credentials == "ingest" else f"Token {key}"
    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application, headers={"Authorization": f"Token {key}"})
    operations = [result.ok() for result in loaded.include(path_regex=paths).get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= must_cover
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": header})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r} → {response.status_code}")

        with override_settings(SIGNAL_INGEST_RATE="1000000/min"):
            check()
    assert failures == []
