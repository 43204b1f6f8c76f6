"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): no 5xx, ever.

Every operation of the served schema is fuzzed as an Admin and as a Viewer (user API tokens), and
the ingest operations also with a loader's ingest token; each operation's Hypothesis strategy comes
from the schema, and every generated request (valid and invalid bodies, parameters and paths) goes
through the real WSGI application; the first few are sent again with a NUL character in each text
field in turn (PostgreSQL's 500 that random generation rarely hits). The operations called are
compared with the schema's, so a new endpoint cannot escape. No test transaction wraps the
requests (``transactional_db``): they commit as in production, where PostgreSQL shows locking and
NUL bugs a transaction would hide.

FUZZ_EXAMPLES (examples per operation and credential, default 20: about two minutes in CI) raises the
number for a longer local run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, given, settings

from etl_monitor.models import ApiToken
from etl_monitor.roles import Role
from etl_monitor.tokens import api_token_create
from signals_app.tokens import ingest_token_create

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "20"))
NUL_PROBED_EXAMPLES = 3  # per operation: these are sent again with a NUL in each text field
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
INGEST_PATHS = r"^/api/v1/(signals|runs|whoami)/"
# Operations a Viewer may perform successfully although they are not reads.
VIEWER_WRITES = {"POST /api/v1/auth/token/", "DELETE /api/v1/auth/tokens/{id}/"}  # a token, revoking one's own
CREDENTIALS = {
    # who: (the operations fuzzed, the Authorization header's scheme)
    "admin": ("", "Token"),
    "viewer": ("", "Token"),
    "ingest-token": (INGEST_PATHS, "Bearer"),
}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def keep_test_connection() -> Iterator[None]:
    """Calling the WSGI app directly fires request_started/finished, whose handler would close
    the test's database connection; Django's own test client detaches it too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def operation_name(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def with_nul(value: Any) -> Any:
    """``value`` with a NUL character in it (a string, or each string of a list); None if it holds no text."""
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return [item + "\x00" for item in value]
    return None


def nul_variants(case: schemathesis.Case) -> Iterator[tuple[str, Any, Any]]:
    """The generated request again with a NUL in one text field at a time (body fields, lists of
    strings, query parameters): PostgreSQL refuses NUL in text, so a field nobody checked answers 500
    there, while random generation rarely puts a NUL exactly where a lookup reads it."""
    body = case.body if isinstance(case.body, dict) else {}
    for key, value in body.items():
        if (poisoned := with_nul(value)) is not None:
            yield f"body.{key}", {**body, key: poisoned}, case.query
    for key, value in (case.query or {}).items():
        if isinstance(value, str):
            yield f"query.{key}", case.body, {**case.query, key: value + "\x00"}


def operation_fuzz(operation: Any, *, who: str, header: str, called: set[str], problems: list[str]) -> None:
    """Send EXAMPLES_PER_OPERATION generated requests for ``operation`` (the first NUL_PROBED_EXAMPLES
    also with a NUL in each text field in turn); note it in ``called`` and every wrong answer in
    ``problems``."""
    name = operation_name(operation.method, operation.path)
    write = operation.method.lower() != "get"
    examples = [0]

    def call(case: schemathesis.Case, what: str = "") -> None:
        response = case.call(headers={"Authorization": header})
        called.add(name)
        request = f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r}{what}"
        if response.status_code >= 500:
            problems.append(f"{request} → {response.status_code}")
        elif who == "viewer" and write and response.status_code < 300 and name not in VIEWER_WRITES:
            problems.append(f"a Viewer was allowed to write: {request} → {response.status_code}")
        if name == "DELETE /api/v1/auth/tokens/{id}/" and response.status_code < 300:
            # Revoking one's own token is allowed; un-revoke the fuzzers' tokens so the operations
            # fuzzed after this one are not all answered 401 (which would pass and test nothing).
            ApiToken.objects.filter(name="fuzz").update(revoked_at=None, revoked_by=None)

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case: schemathesis.Case) -> None:
        call(case)
        examples[0] += 1
        if who == "viewer" or examples[0] > NUL_PROBED_EXAMPLES:
            return  # a Viewer's writes stop at the permission check; the first examples suffice
        generated = case.body, case.query
        for field, body, query in list(nul_variants(case)):
            case.body, case.query = body, query
            call(case, f" (NUL in {field})")
        case.body, case.query = generated

    try:
        check()
    except Exception as exc:  # noqa: BLE001 — e.g. Hypothesis found no example: report it, fuzz the rest
        problems.append(f"{name}: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("who", list(CREDENTIALS))
def test_the_api_never_answers_5xx(who, make_user, active_loader, editor, keep_test_connection):
    paths, scheme = CREDENTIALS[who]
    admin_key = api_token_create(user=make_user(Role.ADMIN), name="fuzz")[1]
    keys = {
        "admin": admin_key,
        "viewer": api_token_create(user=make_user(Role.VIEWER), name="fuzz")[1],
        "ingest-token": ingest_token_create(user=editor, loader=active_loader, name="fuzz")[1],
    }
    header = f"{scheme} {keys[who]}"
    # Django's WSGI handler itself (etl_monitor.wsgi adds only the start-up refusals, tested elsewhere);
    # the schema is served to any signed-in user, the Admin's token reads it.
    application = get_wsgi_application()
    schema_reader = {"Authorization": f"Token {admin_key}"}
    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application, headers=schema_reader)
    if paths:
        loaded = loaded.include(path_regex=paths)
    served = {
        operation_name(method, path)
        for path, item in loaded.raw_schema["paths"].items()
        for method in item
        if method in HTTP_METHODS and (not paths or re.match(paths, path))
    }
    called: set[str] = set()
    problems: list[str] = []
    for result in loaded.get_all_operations():
        try:
            operation = result.ok()
        except Exception as exc:  # noqa: BLE001 — a schema schemathesis cannot use is a finding too
            problems.append(f"unusable operation: {exc}")
            continue
        with override_settings(SIGNAL_INGEST_RATE="1000000/min"):
            operation_fuzz(operation, who=who, header=header, called=called, problems=problems)
    assert problems == []
    assert called == served, f"operations never called: {sorted(served - called)}"
